"""Writing pages into PostgreSQL: one transaction per page.

A page first asks PostgreSQL which of its documents are new or carry a newer
version than the stored one (versions.py); the row writer (writer.py) copies
the new ones straight in and upserts the newer ones, version-guarded, and the
rest are unchanged and cost nothing more. The same transaction checks the
lease (fencing), stores rejected documents, advances the cursor and adds the
page's counts to the run's history row. Statements whose answers the page need
not wait for go out together (psycopg's pipeline mode): the fence with the
lookup, and the page's keys (a reconciling run) with its counts and cursor, so
a page that writes nothing costs four round trips, pool check included. A page
PostgreSQL refuses a row of is written again row by row, the refused rows set
aside with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, NamedTuple, Sequence

import orjson
import psycopg
import sqlalchemy as sa

from rtarf_sync.engine.target.bookkeeping import PageBookkeeping
from rtarf_sync.engine.target.cursor_store import RUN_CURSOR_FORWARD, CursorStore, newest_of_page
from rtarf_sync.engine.target.documents import EventRow, Rejected
from rtarf_sync.engine.target.driver import driver_errors, driver_of, pipelined
from rtarf_sync.engine.target.writer import RowWriter
from rtarf_sync.engine.errors import first_line, is_data_error, transient_database_error
from rtarf_sync.engine.hits import AnyHit, Hit, hit_key, hit_version
from rtarf_sync.engine.fence import Fence, renew
from rtarf_sync.engine.target.tables import Tables
from rtarf_sync.engine.target.versions import KEY_AND_VERSION, lookup_answer, newest_hits, newest_per_key, send_lookup

log = logging.getLogger("rtarf_sync.sink")  # the name log filters know
Converter = Callable[[Sequence[AnyHit]], tuple[list[EventRow], list[Rejected]]]
Fetch = Callable[[list[Hit]], list[AnyHit]]  # whole hits for metadata-only ones (source/metadata.py)


@dataclass(frozen=True)
class PageCounts:
    """What one committed page did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    known_bad: int = 0


class _PageContext(NamedTuple):
    """What the writer knows of a page besides its rows: where it goes, and what the lookup found unchanged."""

    advance_cursor: bool
    seen: str | None
    # Documents of the page already found unchanged before converting (`write_hits`).
    unchanged: int = 0
    unchanged_keys: list[tuple[str, str]] = []
    newest_unchanged: datetime | None = None


class _HitPage:
    """A page of hits not converted yet (`write_hits`), converted once PostgreSQL said what to write."""

    def __init__(
        self,
        hits: list[Hit],
        duplicates: int,
        convert: Converter,
        advance_cursor: bool,
        seen: str | None,
        fetch: Fetch | None = None,
    ) -> None:
        self.hits, self.duplicates, self.convert, self.fetch = hits, duplicates, convert, fetch
        self.context = _PageContext(advance_cursor, seen)
        self.rows: list[EventRow] = []
        self.rejects: list[Rejected] = []

    def convert_changed(self, verdicts: str, newest_unchanged: datetime | None) -> str:
        """Convert the documents the lookup found new or newer; return the lookup's letters for their rows."""
        changed = [(hit, verdict) for hit, verdict in zip(self.hits, verdicts, strict=True) if verdict != "-"]
        wanted: Sequence[AnyHit] = [hit for hit, _ in changed]
        if self.fetch is not None:
            # A page read metadata first: each `_source` comes with its own version, from the page's
            # point in time, and the upsert's guard still compares that version with the stored one.
            wanted = self.fetch([hit for hit, _ in changed])
        self.rows, self.rejects = self.convert(wanted)
        unchanged_keys = (
            [hit_key(hit) for hit, verdict in zip(self.hits, verdicts, strict=True) if verdict == "-"]
            if self.context.seen
            else []
        )
        self.context = self.context._replace(
            unchanged=len(self.hits) - len(changed) + self.duplicates,
            unchanged_keys=unchanged_keys,
            newest_unchanged=newest_unchanged,
        )
        verdict_of = {hit_key(hit): verdict for hit, verdict in changed}
        return "".join(verdict_of[row.key] for row in self.rows)


class PostgresSink:
    """The target table and the state written with it."""

    def __init__(self, engine: sa.Engine, tables: Tables, lease_ttl_seconds: float, source_index: str) -> None:
        self.engine, self.tables, self.lease_ttl, self.source_index = engine, tables, lease_ttl_seconds, source_index
        self.writer = RowWriter(tables)
        self.bookkeeping = PageBookkeeping(tables, lease_ttl_seconds, source_index)
        self.cursor = CursorStore(tables, source_index)

    def begin_run(self) -> None:
        """Note, before a run's first page, whether a partitioned target holds no row at all.

        Such a target has no primary key, so each page looks its keys up in every partition's
        index (a probe per key and partition). While nothing was stored before the run and its
        read gives each document once, no key of a page can be stored yet, and the first load
        of a fresh partitioned table skips that lookup. `read_twice` ends it for the run.
        """
        self.writer.nothing_stored = False
        if self.tables.partition is None:
            return
        with self.engine.connect() as connection:
            stored = connection.exec_driver_sql(f"SELECT EXISTS (SELECT 1 FROM {self.writer.target_name})").scalar_one()
        self.writer.nothing_stored = not stored

    def read_twice(self) -> None:
        """The run's read may give a document again (a reopened point in time): look every key up."""
        self.writer.nothing_stored = False

    def write_page(
        self,
        rows: Sequence[EventRow],
        rejects: Sequence[Rejected],
        fence: Fence,
        run_id: int,
        page_no: int,
        *,
        advance_cursor: bool = True,
        seen: str | None = None,
    ) -> PageCounts:
        """Commit one page, or nothing; bad rows found by PostgreSQL are set aside too.

        `advance_cursor=False` leaves the stored cursor alone (range runs, sliced reads);
        `seen` names a table that records the page's keys in the same transaction
        (runs that reconcile deletes).
        """
        return self._write(rows, rejects, fence, run_id, page_no, _PageContext(advance_cursor, seen))

    def _write(
        self,
        rows: Sequence[EventRow],
        rejects: Sequence[Rejected],
        fence: Fence,
        run_id: int,
        page_no: int,
        context: _PageContext,
    ) -> PageCounts:
        unique, duplicates = newest_per_key(list(rows))
        return self._refusals_row_by_row(
            lambda: self._commit(unique, duplicates, list(rejects), fence, run_id, page_no, context, row_by_row=False),
            lambda: self._commit_row_by_row(unique, duplicates, list(rejects), fence, run_id, page_no, context),
            page_no,
        )

    @staticmethod
    def _refusals_row_by_row(
        commit: Callable[[], PageCounts], row_by_row: Callable[[], PageCounts], page_no: int
    ) -> PageCounts:
        """Run `commit`; if PostgreSQL refused some row, run `row_by_row` instead."""
        try:
            return commit()
        except sa.exc.DBAPIError as error:
            if (transient := transient_database_error(error)) is not None:
                raise transient from None
            if not is_data_error(error):
                raise
            log.warning(
                "page %d: PostgreSQL refused a row (%s); writing the page row by row", page_no, first_line(error)
            )
            return row_by_row()

    def write_hits(
        self,
        hits: list[Hit],
        convert: Converter,
        fence: Fence,
        run_id: int,
        page_no: int,
        *,
        advance_cursor: bool = True,
        seen: str | None = None,
        fetch: Fetch | None = None,
    ) -> tuple[PageCounts, datetime | None]:
        """Commit a page of hits not converted yet; also return the newest cursor value of the page.

        Inside the page's transaction, PostgreSQL first says which documents are new or carry a
        newer version (in the same round trip as the fence), and only those are converted and
        written: an unchanged document costs its key-and-version lookup and nothing more. Its
        stored row was converted from this very version, so its cursor value is the stored one.
        Hits read metadata first carry no `_source`: `fetch` brings it for the documents to write.
        """
        page = _HitPage(*newest_hits(hits), convert, advance_cursor, seen, fetch)

        def row_by_row() -> PageCounts:  # the lease is held, so what the lookup found still holds
            return self._commit_row_by_row(page.rows, 0, page.rejects, fence, run_id, page_no, page.context)

        counts = self._refusals_row_by_row(lambda: self._commit_hits(page, fence, run_id, page_no), row_by_row, page_no)
        return counts, newest_of_page(page.rows, page.context.newest_unchanged)

    def _commit_hits(self, page: _HitPage, fence: Fence, run_id: int, page_no: int) -> PageCounts:
        with self.engine.begin() as connection:
            # Every key of the page is recorded by the lookup (a page written row by row records its own).
            verdicts = page.convert_changed(
                *self._open(connection, fence, [hit_version(hit) for hit in page.hits], page.context.seen)
            )
            inserted, updated = self.writer.upsert(connection, page.rows, verdicts)
            return self._finish(
                connection,
                fence,
                page.rows,
                page.rejects,
                inserted,
                updated,
                0,
                page.context._replace(seen=None),
                run_id,
                page_no,
            )

    def newest_stored(self, hits: list[Hit]) -> datetime | None:
        """The newest stored cursor value among these documents at their versions (a page already committed)."""
        with self.engine.connect() as connection:
            return self.writer.compare_versions(connection, [hit_version(hit) for hit in hits])[1]

    def _commit_row_by_row(
        self,
        rows: list[EventRow],
        duplicates: int,
        rejects: list[Rejected],
        fence: Fence,
        run_id: int,
        page_no: int,
        context: _PageContext,
    ) -> PageCounts:
        try:
            return self._commit(rows, duplicates, rejects, fence, run_id, page_no, context, row_by_row=True)
        except sa.exc.DBAPIError as error:
            if (transient := transient_database_error(error)) is not None:
                raise transient from None
            raise

    def _commit(
        self,
        rows: list[EventRow],
        duplicates: int,
        rejects: list[Rejected],
        fence: Fence,
        run_id: int,
        page_no: int,
        context: _PageContext,
        row_by_row: bool,
    ) -> PageCounts:
        with self.engine.begin() as connection:
            # After a page of only new documents the next is tried as all new, without a lookup.
            lookup = bool(rows) and not row_by_row and not self.writer.skips_lookup
            verdicts, _ = self._open(connection, fence, list(map(KEY_AND_VERSION, rows)) if lookup else None)
            if row_by_row:
                inserted, updated, refused = self.writer.upsert_each(connection, rows)
                rows = [row for row in rows if row.key not in {r[0].key for r in refused}]
                rejects = rejects + [_as_reject(row, reason) for row, reason in refused]
            else:
                inserted, updated = self.writer.upsert(connection, rows, verdicts if lookup else None)
            return self._finish(
                connection, fence, rows, rejects, inserted, updated, duplicates, context, run_id, page_no
            )

    def _open(
        self,
        connection: sa.Connection,
        fence: Fence,
        lookup: list[tuple[str, str, int, int]] | None = None,
        seen: str | None = None,
    ) -> tuple[str, datetime | None]:
        """Begin a page's transaction: renew the lease (or raise LeaseLost) and, given documents' keys
        and versions, look them up (`versions.send_lookup`) and record their keys in `seen`, all in one round trip."""
        driver = driver_of(connection)
        with (
            driver_errors("open the page"),
            driver.cursor() as setting,
            driver.cursor() as renewal,
            driver.cursor() as verdicts,
        ):
            with pipelined(driver, lookup is not None):
                # The page, its cursor and its counts commit or vanish together, so a commit
                # need not wait for the disk: a page lost in a server crash is read again by
                # the next run, like a page lost in flight.
                setting.execute("SET LOCAL synchronous_commit = off")
                self.bookkeeping.renew(renewal, fence)
                if lookup is not None:
                    send_lookup(verdicts, self.writer.target_name, lookup, seen)
            self.bookkeeping.check_renewed(renewal, fence)
            return lookup_answer(verdicts) if lookup is not None else ("", None)

    def _finish(
        self,
        connection: sa.Connection,
        fence: Fence,
        rows: list[EventRow],
        rejects: list[Rejected],
        inserted: int,
        updated: int,
        duplicates: int,
        context: _PageContext,
        run_id: int,
        page_no: int,
    ) -> PageCounts:
        """Close a page's transaction: dead letters, the keys read, the lease renewed again, the counts and
        the cursor."""
        new_bad = self.writer.set_aside(connection, rejects, run_id)
        cursor = newest_of_page(rows, context.newest_unchanged) if context.advance_cursor else None
        counts = PageCounts(
            inserted,
            updated,
            len(rows) - inserted - updated + duplicates + context.unchanged,
            new_bad,
            len(rejects) - new_bad,
        )
        driver = driver_of(connection)
        with (
            driver_errors("record the page"),
            driver.cursor() as remembering,
            driver.cursor() as advancing,
            pipelined(driver, context.seen is not None),
        ):
            if context.seen is not None:
                self._remember(remembering, context.seen, rows, rejects, context.unchanged_keys)
            self.bookkeeping.advance(advancing, fence, vars(counts), run_id, page_no, cursor)
        return counts

    @staticmethod
    def _remember(
        cursor: psycopg.Cursor[Any],
        seen: str,
        rows: list[EventRow],
        rejects: list[Rejected],
        unchanged: list[tuple[str, str]],
    ) -> None:
        """Record the keys a reconciling run has read (a document set aside still exists)."""
        keys = [row.key for row in rows] + [(reject.es_index, reject.es_id) for reject in rejects] + unchanged
        if keys:
            cursor.execute(
                f"INSERT INTO {seen} (es_index, es_id) SELECT e->>0, e->>1 FROM json_array_elements(%s::json) e",
                (orjson.dumps(keys).decode(),),
            )

    def move_cursor(self, cursor: datetime, fence: Fence, run_id: int) -> None:
        """Move the stored cursor forward to `cursor` (never back), fenced by the lease."""
        with self.engine.begin() as connection:
            renew(connection, self.tables.lease, fence, self.lease_ttl)
            self.cursor.advance(connection, cursor)
            runs = connection.dialect.identifier_preparer.format_table(self.tables.runs)
            connection.exec_driver_sql(f"UPDATE {runs} SET {RUN_CURSOR_FORWARD} WHERE id = %s", (cursor, run_id))

    def forget_partitions(self) -> None:
        """Forget which partitions exist (retention dropped some)."""
        self.writer.forget_partitions()

    def upsert(self, connection: sa.Connection, rows: Sequence[EventRow]) -> tuple[int, int]:
        """Write rows version-guarded inside the caller's transaction, cursor untouched: (inserted, updated).

        For writes outside the cursor's order (dead-letter replay): the caller holds the lease and
        fences its transaction, as `write_page` does.
        """
        unique, _ = newest_per_key(list(rows))
        return self.writer.upsert(connection, unique)

    def load_cursor(self) -> datetime | None:
        """The stored cursor of (source index setting, target table), or None before the first page."""
        with self.engine.connect() as connection:
            return self.cursor.read(connection)


def _as_reject(row: EventRow, reason: str) -> Rejected:
    return Rejected(row.es_index, row.es_id, row.seq_no, row.primary_term, reason, row.source.decode())
