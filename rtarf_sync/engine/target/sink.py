"""Writing pages into PostgreSQL: one transaction per page.

A page first asks PostgreSQL which of its documents are new or carry a newer
version than the stored one. New documents are copied straight into the
target (the cheapest write PostgreSQL has); documents whose incoming version
`(primary_term, seq_no)` is newer are copied into a temporary staging table
and upserted with one `INSERT ... SELECT ... ON CONFLICT DO UPDATE` whose
guard repeats the version test, so an older version never overwrites a newer
one; the rest are unchanged and cost nothing more. After a page of only new
documents (a first load), the next page is copied straight in under a
savepoint, since the primary key checks every row anyway; a document already
stored undoes that and the page takes the lookup. The same transaction checks
the lease (fencing), stores rejected documents, advances the cursor and adds
the page's counts to the run's history row. Statements whose answers the page
need not wait for go out together (psycopg's pipeline mode): the fence with the
lookup, and the page's keys (a reconciling run) with its counts and cursor, so
a page that writes nothing costs four round trips, pool check included.
A partitioned target (partitions.py) has no primary key: its pages always take
the lookup, create the partitions they need first, and upsert with one
version-guarded UPDATE (which moves a row whose time left its partition) plus
an INSERT of the keys not stored, instead of ON CONFLICT.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator, NamedTuple, Sequence, cast

import orjson
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB, insert

from rtarf_sync.engine.target.bookkeeping import PageBookkeeping
from rtarf_sync.engine.target.cursor_store import RUN_CURSOR_FORWARD, CursorStore, newest_of_page
from rtarf_sync.engine.target.documents import COPY_HEADER, COPY_TRAILER, EventRow, Rejected, copy_row
from rtarf_sync.engine.errors import first_line, is_data_error, is_transient, transient_database_error
from rtarf_sync.engine.hits import AnyHit, Hit, hit_key, hit_version
from rtarf_sync.engine.fence import Fence, renew
from rtarf_sync.engine.target.partitions import create_partitions, floor_of, partition_of, present_partitions
from rtarf_sync.engine.target.tables import Tables
from rtarf_sync.engine.target.versions import KEY_AND_VERSION, newest_hits, newest_per_key, stored_is_older

log = logging.getLogger("rtarf_sync.sink")  # the name log filters know
STAGE = "rtarf_stage"
_COLUMNS = ("es_index", "es_id", "event_timestamp", "source", "es_seq_no", "es_primary_term")
_STAGE_COLUMNS = (
    "es_index text, es_id text, event_timestamp timestamptz, source jsonb, es_seq_no bigint, es_primary_term bigint"
)
_COPY_SLICE = 100  # rows per COPY write
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
        typed = self.typed = tables.columns
        self.names = _COLUMNS + typed.names  # every column a page writes, typed ones last
        quote = postgresql.dialect().identifier_preparer.quote  # type: ignore[no-untyped-call]  # SQLAlchemy dialects are untyped
        # One staging table per column list: pooled connections are shared by every target of the process.
        self.stage_name = f"{STAGE}_{typed.fingerprint}" if typed else STAGE
        extra = f", {typed.ddl(quote)}" if typed else ""
        self.stage_ddl = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.stage_name} ({_STAGE_COLUMNS}{extra}) ON COMMIT DELETE ROWS"
        )
        self.stage = sa.table(self.stage_name, *(sa.column(name) for name in self.names))
        self._copy_statement = f"({', '.join(map(quote, self.names))}) FROM STDIN (FORMAT BINARY)"
        self.bookkeeping = PageBookkeeping(tables, lease_ttl_seconds, source_index)
        self.cursor = CursorStore(tables, source_index)
        self._target_name = postgresql.dialect().identifier_preparer.format_table(tables.target)  # type: ignore[no-untyped-call]  # SQLAlchemy dialects are untyped
        self._all_new = False  # whether the last page looked up held only new documents
        # A partitioned target: the starts of the partitions known to exist (created by an earlier commit).
        self._partitions: set[datetime] = set()
        # A partitioned target empty when the run began, read once: nothing to look up (`begin_run`).
        self._nothing_stored = False

    def begin_run(self) -> None:
        """Note, before a run's first page, whether a partitioned target holds no row at all.

        Such a target has no primary key, so each page looks its keys up in every partition's
        index (a probe per key and partition). While nothing was stored before the run and its
        read gives each document once, no key of a page can be stored yet, and the first load
        of a fresh partitioned table skips that lookup. `read_twice` ends it for the run.
        """
        self._nothing_stored = False
        if self.tables.partition is None:
            return
        with self.engine.connect() as connection:
            stored = connection.exec_driver_sql(f"SELECT EXISTS (SELECT 1 FROM {self._target_name})").scalar_one()
        self._nothing_stored = not stored

    def read_twice(self) -> None:
        """The run's read may give a document again (a reopened point in time): look every key up."""
        self._nothing_stored = False

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
            inserted, updated = self._upsert(connection, page.rows, verdicts)
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
            return self._compare_versions(connection, [hit_version(hit) for hit in hits])[1]

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
            lookup = bool(rows) and not row_by_row and not self._all_new and not self._nothing_stored
            verdicts, _ = self._open(connection, fence, list(map(KEY_AND_VERSION, rows)) if lookup else None)
            if row_by_row:
                inserted, updated, refused = self._upsert_each(connection, rows)
                rows = [row for row in rows if row.key not in {r[0].key for r in refused}]
                rejects = rejects + [_as_reject(row, reason) for row, reason in refused]
            else:
                inserted, updated = self._upsert(connection, rows, verdicts if lookup else None)
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
        and versions, look them up (`_compare_versions`) and record their keys in `seen`, all in one round trip."""
        driver = _driver(connection)
        with (
            _driver_errors("open the page"),
            driver.cursor() as setting,
            driver.cursor() as renewal,
            driver.cursor() as verdicts,
        ):
            with _pipelined(driver, lookup is not None):
                # The page, its cursor and its counts commit or vanish together, so a commit
                # need not wait for the disk: a page lost in a server crash is read again by
                # the next run, like a page lost in flight.
                setting.execute("SET LOCAL synchronous_commit = off")
                self.bookkeeping.renew(renewal, fence)
                if lookup is not None:
                    self._send_lookup(connection, verdicts, lookup, seen)
            self.bookkeeping.check_renewed(renewal, fence)
            return self._lookup_answer(verdicts) if lookup is not None else ("", None)

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
        new_bad = self._dead_letter(connection, rejects, run_id)
        cursor = newest_of_page(rows, context.newest_unchanged) if context.advance_cursor else None
        counts = PageCounts(
            inserted,
            updated,
            len(rows) - inserted - updated + duplicates + context.unchanged,
            new_bad,
            len(rejects) - new_bad,
        )
        driver = _driver(connection)
        with (
            _driver_errors("record the page"),
            driver.cursor() as remembering,
            driver.cursor() as advancing,
            _pipelined(driver, context.seen is not None),
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

    def _upsert(self, connection: sa.Connection, rows: list[EventRow], verdicts: str | None = None) -> tuple[int, int]:
        """Write a page: new documents by COPY straight into the target, newer versions by upsert.

        `verdicts` is the lookup's answer for these rows when it was already asked (`_open`).
        """
        if not rows:
            return 0, 0
        target = connection.dialect.identifier_preparer.format_table(self.tables.target)
        self._ensure_partitions(connection, rows)
        if verdicts is None and self._all_new and self._copy_if_all_new(connection, target, rows):
            return len(rows), 0
        new, newer = self._changed(connection, rows, verdicts)
        # Without a primary key (a partitioned target) a stored document would not stop a blind COPY.
        self._all_new = len(new) == len(rows) and self.tables.partition is None
        if new:
            # One writer per target at a time (the lease), so rows not found now are still absent.
            self._copy(connection, target, new)
        return len(new), self._upsert_newer(connection, newer)

    def _ensure_partitions(self, connection: sa.Connection, rows: Sequence[EventRow]) -> None:
        """Create, in the page's transaction, the partitions its rows need and that are missing.

        Only partitions found already there are remembered: one made by this transaction may yet
        be rolled back with it.
        """
        kind = self.tables.partition
        if kind is None:
            return
        starts = {floor_of(kind, row.event_timestamp) for row in rows if row.event_timestamp is not None}
        if not (starts := starts - self._partitions):
            return
        wanted = [partition_of(self.tables.target.name, kind, start) for start in sorted(starts)]
        present = present_partitions(connection, [part.name for part in wanted])
        self._partitions |= {part.start for part in wanted if part.name in present}
        create_partitions(connection, self.tables.target.name, [part for part in wanted if part.name not in present])

    def forget_partitions(self) -> None:
        """Forget which partitions exist (retention dropped some)."""
        self._partitions = set()

    def _copy_if_all_new(self, connection: sa.Connection, target: str, rows: list[EventRow]) -> bool:
        """After a page of only new documents, COPY the next one straight in: the primary key checks
        every row anyway. If one is stored already, nothing of it stays (a savepoint) and the page
        takes the lookup."""
        driver = _driver(connection)
        with _driver_errors("savepoint"), driver.cursor() as cursor:
            cursor.execute("SAVEPOINT rtarf_all_new")
        try:
            self._copy(connection, target, rows)
        except sa.exc.DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) != "23505":  # unique_violation
                raise
            with _driver_errors("savepoint"), driver.cursor() as cursor:
                cursor.execute("ROLLBACK TO SAVEPOINT rtarf_all_new")
            self._all_new = False
            return False
        return True

    def _changed(
        self, connection: sa.Connection, rows: list[EventRow], verdicts: str | None = None
    ) -> tuple[list[EventRow], list[EventRow]]:
        """The rows of new documents, and those whose version is newer than the stored one.

        PostgreSQL compares (`_compare_versions`), unless its answer for these rows is given as `verdicts`.
        """
        if verdicts is None and self._nothing_stored:
            return rows, []  # a fresh partitioned target, each document read once (`begin_run`)
        if verdicts is None:
            verdicts, _ = self._compare_versions(connection, list(map(KEY_AND_VERSION, rows)))
        if verdicts.count("n") == len(rows):
            return rows, []  # the usual first read: every document new
        new = [row for row, verdict in zip(rows, verdicts, strict=True) if verdict == "n"]
        newer = [row for row, verdict in zip(rows, verdicts, strict=True) if verdict == "w"]
        return new, newer

    def _compare_versions(
        self, connection: sa.Connection, documents: list[tuple[str, str, int, int]]
    ) -> tuple[str, datetime | None]:
        """One letter per (index, id, primary term, seq_no), in order: n(ew), w(rite: a newer version) or
        - (unchanged); and the newest stored cursor value of the unchanged ones.

        Every document's key and version go over as one JSON text and one letter per document
        comes back, so an unchanged document costs a key-and-version lookup and nothing more.
        Straight through the driver: binding a thousand keys through SQLAlchemy cost five times
        the query itself. A soft-deleted row counts as versionless: whatever version comes back
        is written, also after its index was deleted and re-created with versions counting from
        0 again.
        """
        with _driver_errors("look up versions"), _driver(connection).cursor() as cursor:
            self._send_lookup(connection, cursor, documents)
            return self._lookup_answer(cursor)

    def _send_lookup(
        self,
        connection: sa.Connection,
        cursor: psycopg.Cursor[Any],
        documents: list[tuple[str, str, int, int]],
        seen: str | None = None,
    ) -> None:
        """Send `_compare_versions`'s statement; given a `seen` table, the same statement records the keys in it."""
        target = connection.dialect.identifier_preparer.format_table(self.tables.target)
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

    @staticmethod
    def _lookup_answer(cursor: psycopg.Cursor[Any]) -> tuple[str, datetime | None]:
        verdicts, newest = cast("tuple[str | None, datetime | None]", cursor.fetchone())  # an aggregate: one row
        return verdicts or "", newest

    def _copy(self, connection: sa.Connection, table: str, rows: list[EventRow]) -> None:
        statement = f"COPY {table} {self._copy_statement}"
        with _driver_errors(statement), _driver(connection).cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(COPY_HEADER)
            # In slices of about 100 KB: PostgreSQL parses and inserts one while the next is built.
            for start in range(0, len(rows), _COPY_SLICE):
                copy.write(b"".join(map(self._copy_row, rows[start : start + _COPY_SLICE])))
            copy.write(COPY_TRAILER)

    def _copy_row(self, row: EventRow) -> bytes:
        """The row's tuple of binary COPY data (built ahead by the reader's thread, or now)."""
        if row.copy_row:
            return row.copy_row
        typed = self.typed
        if not typed:
            return copy_row(*row[:6])
        return copy_row(*row[:6], typed.encode(row.typed), 6 + len(typed))

    def _upsert_newer(self, connection: sa.Connection, rows: list[EventRow]) -> int:
        """Upsert rows through the staging table, guarded by version; return how many were written."""
        if not rows:
            return 0
        connection.exec_driver_sql(self.stage_ddl)
        self._copy(connection, self.stage_name, rows)
        if self.tables.partition is not None:
            return self._write_staged(connection)[1]
        select = sa.select(*(self.stage.c[name] for name in self.names)).order_by(
            self.stage.c.es_index, self.stage.c.es_id
        )
        written = self._on_conflict(insert(self.tables.target).from_select(list(self.names), select)).cte("written")
        # Count in PostgreSQL: the RETURNING rows need not travel to Python.
        return int(connection.execute(sa.select(sa.func.count()).select_from(written)).scalar_one())

    def _on_conflict(self, statement: sa.dialects.postgresql.Insert) -> sa.Insert:
        target, excluded = self.tables.target, statement.excluded
        # The lookup's test again, so a row written by someone else since can still not be downgraded.
        newer = sa.text(stored_is_older(self._target_name, "excluded.es_primary_term", "excluded.es_seq_no"))
        return statement.on_conflict_do_update(
            index_elements=[target.c.es_index, target.c.es_id],
            set_={
                "event_timestamp": excluded.event_timestamp,
                "source": excluded.source,
                "es_seq_no": excluded.es_seq_no,
                "es_primary_term": excluded.es_primary_term,
                "last_synced_at": sa.func.now(),
                "deleted_at": None,
                **{name: excluded[name] for name in self.typed.names},
            },
            where=newer,
        ).returning(sa.literal_column("(xmax = 0)").label("inserted"))

    def _write_staged(self, connection: sa.Connection) -> tuple[int, int]:
        """A partitioned target's upsert of the staged rows: (inserted, updated).

        No primary key, so no ON CONFLICT: one statement updates the stored rows the version guard
        lets through (PostgreSQL moves a row whose event_timestamp left its partition: still one
        row) and inserts the keys not stored; both parts see the same snapshot, so they never
        overlap, and the lease's row lock keeps other writers out until the commit.
        """
        quote = connection.dialect.identifier_preparer.quote
        target, stage = self._target_name, self.stage_name
        columns = [quote(name) for name in self.names]
        sets = ", ".join(f"{name} = s.{name}" for name in columns[2:])
        guard = stored_is_older("t", "s.es_primary_term", "s.es_seq_no")
        same_key = "t.es_index = s.es_index AND t.es_id = s.es_id"
        statement = (
            f"WITH written AS (UPDATE {target} AS t SET {sets}, last_synced_at = now(), deleted_at = NULL "
            f"FROM {stage} AS s WHERE {same_key} AND ({guard}) RETURNING 1), "
            f"added AS (INSERT INTO {target} ({', '.join(columns)}) "
            f"SELECT {', '.join('s.' + name for name in columns)} FROM {stage} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {same_key}) RETURNING 1) "
            "SELECT (SELECT count(*) FROM added), (SELECT count(*) FROM written)"
        )
        added, written = connection.exec_driver_sql(statement).one()
        return int(added), int(written)

    def _upsert_each(
        self, connection: sa.Connection, rows: list[EventRow]
    ) -> tuple[int, int, list[tuple[EventRow, str]]]:
        if self.tables.partition is not None:
            return self._write_each_staged(connection, rows)
        inserted = updated = 0
        refused: list[tuple[EventRow, str]] = []
        for row in rows:
            values = dict(
                zip(
                    _COLUMNS,
                    (
                        row.es_index,
                        row.es_id,
                        row.event_timestamp,
                        sa.cast(sa.literal(row.source.decode(), sa.Text), JSONB),
                        row.seq_no,
                        row.primary_term,
                    ),
                    strict=True,
                )
            )
            typed = self.typed.row_values(row.typed, row.source)
            for column, value in zip(self.typed.columns, typed, strict=True):
                values[column.name] = column.bind(value)
            try:
                with connection.begin_nested():
                    inserted_now = (
                        connection.execute(self._on_conflict(insert(self.tables.target).values(**values)))
                        .scalars()
                        .all()
                    )
            except sa.exc.DBAPIError as error:
                if is_transient(error) or not is_data_error(error):
                    raise
                refused.append((row, f"PostgreSQL refused the row: {first_line(error)}"))
                continue
            inserted += sum(1 for was_new in inserted_now if was_new)
            updated += sum(1 for was_new in inserted_now if not was_new)
        return inserted, updated, refused

    def _write_each_staged(
        self, connection: sa.Connection, rows: list[EventRow]
    ) -> tuple[int, int, list[tuple[EventRow, str]]]:
        """`_upsert_each` for a partitioned target: each row staged alone and written under its savepoint."""
        inserted = updated = 0
        refused: list[tuple[EventRow, str]] = []
        self._ensure_partitions(connection, rows)
        connection.exec_driver_sql(self.stage_ddl)
        for row in rows:
            try:
                with connection.begin_nested():
                    connection.exec_driver_sql(f"DELETE FROM {self.stage_name}")
                    self._copy(connection, self.stage_name, [row])
                    added, written = self._write_staged(connection)
            except sa.exc.DBAPIError as error:
                if is_transient(error) or not is_data_error(error):
                    raise
                refused.append((row, f"PostgreSQL refused the row: {first_line(error)}"))
                continue
            inserted, updated = inserted + added, updated + written
        return inserted, updated, refused

    def _dead_letter(self, connection: sa.Connection, rejects: list[Rejected], run_id: int) -> int:
        if not rejects:
            return 0
        dead = self.tables.dead_letters
        values = [
            {
                "target_table": self.tables.target.name,
                "es_index": r.es_index,
                "es_id": r.es_id,
                "es_seq_no": r.seq_no,
                "es_primary_term": r.primary_term,
                "reason": r.reason,
                "raw_document": r.raw,
                "run_id": run_id,
            }
            for r in rejects
        ]
        statement = (
            insert(dead)
            .values(values)
            .on_conflict_do_nothing(constraint="rtarf_sync_dead_letters_version_key")
            .returning(dead.c.id)
        )
        return len(connection.execute(statement).all())

    def upsert(self, connection: sa.Connection, rows: Sequence[EventRow]) -> tuple[int, int]:
        """Write rows version-guarded inside the caller's transaction, cursor untouched: (inserted, updated).

        For writes outside the cursor's order (dead-letter replay): the caller holds the lease and
        fences its transaction, as `write_page` does.
        """
        unique, _ = newest_per_key(list(rows))
        return self._upsert(connection, unique)

    def load_cursor(self) -> datetime | None:
        """The stored cursor of (source index setting, target table), or None before the first page."""
        with self.engine.connect() as connection:
            return self.cursor.read(connection)


def _driver(connection: sa.Connection) -> psycopg.Connection[object]:
    """The psycopg connection under a SQLAlchemy connection, inside the same transaction."""
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    return driver


def _pipelined(driver: psycopg.Connection[object], pipeline: bool) -> AbstractContextManager[object]:
    """Send the statements of the block without waiting for each answer (pipeline mode), if asked.

    Only where it saves a round trip: the mode costs its own Python time, and while the reading
    thread decodes the next page every extra wait for the interpreter counts.
    """
    return driver.pipeline() if pipeline else nullcontext()


@contextmanager
def _driver_errors(statement: str) -> Iterator[None]:
    """Wrap driver errors as SQLAlchemy would, so one handler sees every database error."""
    try:
        yield
    except psycopg.Error as error:
        raise sa.exc.DBAPIError.instance(statement, None, error, psycopg.Error) from error


def _as_reject(row: EventRow, reason: str) -> Rejected:
    return Rejected(row.es_index, row.es_id, row.seq_no, row.primary_term, reason, row.source.decode())
