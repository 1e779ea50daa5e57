"""The version rule: a document's version is (primary_term, seq_no), in that order; the newer one wins.

Both forms of it live here side by side: the SQL test of an incoming version against the stored
row (the page's lookup and the upsert's guard) and the newest version of a document in one page.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Callable, TypeVar

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
