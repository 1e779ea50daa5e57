"""The version rule: a document's version is (primary_term, seq_no), in that order; the newer one wins.

Both forms of it live here side by side: the SQL test of an incoming version against the stored
row (the page's lookup and the upsert's guard) and the newest version of a document in one page.
The lookup itself is here too: one statement that tells, per document, whether it is new, newer
than the stored row, or unchanged.
"""

from __future__ import annotations

import operator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, TypeVar, cast

import orjson
import psycopg

from rtarf_sync.engine.hits import Hit, hit_key

if TYPE_CHECKING:
    from rtarf_sync.engine.target.documents import EventRow

T = TypeVar("T")
_KEY = operator.itemgetter(0, 1)  # an EventRow's es_index, es_id
_VERSION = operator.itemgetter(5, 4)  # an EventRow's primary_term, seq_no
# An EventRow's key and version as the lookup takes them: es_index, es_id, primary_term, seq_no.
KEY_AND_VERSION: Callable[[EventRow], tuple[str, str, int, int]] = operator.itemgetter(0, 1, 5, 4)


def stored_is_older(stored: str, term: str, seq_no: str) -> str:
    """SQL: the stored row `stored` must take the incoming version (`term`, `seq_no`).

    A soft-deleted or versionless row takes whatever version comes, also after its index was
    deleted and re-created with versions counting from 0 again; otherwise only a newer one.
    """
    return (
        f"{stored}.deleted_at IS NOT NULL OR {stored}.es_primary_term IS NULL OR {stored}.es_seq_no IS NULL "
        f"OR ({stored}.es_primary_term, {stored}.es_seq_no) < ({term}, {seq_no})"
    )


def send_lookup(
    cursor: psycopg.Cursor[Any], target: str, documents: list[tuple[str, str, int, int]], seen: str | None = None
) -> None:
    """Ask, for each (index, id, primary term, seq_no) of `documents`, what the quoted `target` holds of it.

    `lookup_answer` then reads one letter per document, in order: n(ew), w(rite: a newer version)
    or - (unchanged), and the newest stored cursor value of the unchanged ones. Every key and
    version goes over as one JSON text and one letter per document comes back, so an unchanged
    document costs a key-and-version lookup and nothing more. Given a `seen` table, the same
    statement records the keys in it.
    """
    record = f", recorded AS (INSERT INTO {seen} (es_index, es_id) SELECT es_index, es_id FROM k)" if seen else ""
    cursor.execute(
        "WITH k AS (SELECT n, e->>0 AS es_index, e->>1 AS es_id, "
        "(e->>2)::bigint AS term, (e->>3)::bigint AS seq_no "
        f"FROM json_array_elements(%s::json) WITH ORDINALITY AS a(e, n)){record} "
        "SELECT string_agg(verdict, '' ORDER BY n), max(event_timestamp) FILTER (WHERE verdict = '-') "
        "FROM (SELECT k.n, t.event_timestamp, CASE WHEN t.es_id IS NULL THEN 'n' "
        f"WHEN {stored_is_older('t', 'k.term', 'k.seq_no')} THEN 'w' ELSE '-' END AS verdict "
        f"FROM k LEFT JOIN {target} t ON t.es_index = k.es_index AND t.es_id = k.es_id) f",
        (orjson.dumps(documents).decode(),),
    )


def lookup_answer(cursor: psycopg.Cursor[Any]) -> tuple[str, datetime | None]:
    """The answer of `send_lookup` on `cursor`: the letters, and the newest stored cursor value of the unchanged."""
    verdicts, newest = cast("tuple[str | None, datetime | None]", cursor.fetchone())  # an aggregate: one row
    return verdicts or "", newest


def row_version(row: EventRow) -> tuple[int, int]:
    """A row's version: (primary_term, seq_no)."""
    return _VERSION(row)  # type: ignore[no-any-return]  # itemgetter is untyped


def newest_per_key(rows: list[EventRow]) -> tuple[list[EventRow], int]:
    """Keep the newest version of each document in a page; return them and how many were dropped."""
    return newest_versions(rows, _KEY, _VERSION)


def newest_hits(hits: list[Hit]) -> tuple[list[Hit], int]:
    """`newest_per_key` for hits not converted yet."""
    return newest_versions(hits, hit_key, lambda hit: (hit._primary_term, hit._seq_no))  # noqa: SLF001 - the engine's field names


def newest_versions(items: list[T], key: Callable[[T], Any], version: Callable[[T], Any]) -> tuple[list[T], int]:
    """Keep the item of the highest version for each key, in first-seen order; return them and how many were dropped."""
    if len(set(map(key, items))) == len(items):
        return items, 0  # the usual page: every document once
    newest: dict[Any, T] = {}
    for item in items:
        kept = newest.get(key(item))
        if kept is None or version(item) > version(kept):
            newest[key(item)] = item
    return list(newest.values()), len(items) - len(newest)
