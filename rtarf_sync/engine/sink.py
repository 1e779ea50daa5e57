"""Writing pages into PostgreSQL: one transaction per page.

A page first looks up the versions already stored for its documents. New
documents are copied straight into the target (the cheapest write PostgreSQL
has); documents whose incoming version `(primary_term, seq_no)` is newer are
copied into a temporary staging table and upserted with one
`INSERT ... SELECT ... ON CONFLICT DO UPDATE` whose guard repeats the version
test, so an older version never overwrites a newer one; the rest are unchanged
and cost nothing more. The same transaction checks the lease (fencing), stores rejected documents,
advances the cursor and adds the page's counts to the run's history row.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator, NamedTuple, Sequence

import orjson
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, insert

from rtarf_sync.engine.documents import EventRow, Rejected, copy_text, newest_per_key
from rtarf_sync.engine.errors import TransientError
from rtarf_sync.engine.lease import Fence, Lease
from rtarf_sync.engine.tables import Tables

log = logging.getLogger("rtarf_sync.sink")  # the name log filters know
STAGE = "rtarf_stage"
_COLUMNS = ("es_index", "es_id", "event_timestamp", "source", "es_seq_no", "es_primary_term")
_STAGE_DDL = (f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (es_index text, es_id text, "
              "event_timestamp timestamptz, source text, es_seq_no bigint, es_primary_term bigint) "
              "ON COMMIT DELETE ROWS")
_TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003", "08006", "53300"}
COUNTERS = ("inserted", "updated", "unchanged", "failed", "known_bad")
Stored = tuple[int | None, int | None]  # (primary_term, seq_no) as stored; None for a soft-deleted row


@dataclass(frozen=True)
class PageCounts:
    """What one committed page did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    known_bad: int = 0


class _PageOptions(NamedTuple):
    advance_cursor: bool
    seen: str | None


def is_transient(error: sa.exc.DBAPIError) -> bool:
    """Lost connections, deadlocks and serialization failures pass; bad data does not."""
    if error.connection_invalidated or isinstance(error, sa.exc.OperationalError):
        return True
    return getattr(error.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


def is_data_error(error: sa.exc.DBAPIError) -> bool:
    """A value or a constraint refused a row (SQLSTATE classes 22 and 23): that row can be set aside."""
    return str(getattr(error.orig, "sqlstate", "") or "")[:2] in ("22", "23")


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error)
    return text.strip().splitlines()[0][:300] if text.strip() else type(error).__name__


class PostgresSink:
    """The target table and the state written with it."""

    def __init__(self, engine: sa.Engine, tables: Tables, lease: Lease, source_index: str) -> None:
        self.engine, self.tables, self.lease, self.source_index = engine, tables, lease, source_index
        self.stage = sa.table(STAGE, *(sa.column(name) for name in _COLUMNS))

    def write_page(self, rows: Sequence[EventRow], rejects: Sequence[Rejected], fence: Fence,
                   run_id: int, page_no: int, *, advance_cursor: bool = True,
                   seen: str | None = None) -> PageCounts:
        """Commit one page, or nothing; bad rows found by PostgreSQL are set aside too.

        `advance_cursor=False` leaves the stored cursor alone (range runs, sliced reads);
        `seen` names a table that records the page's keys in the same transaction
        (runs that reconcile deletes).
        """
        unique, duplicates = newest_per_key(list(rows))
        options = _PageOptions(advance_cursor, seen)
        try:
            return self._commit(unique, duplicates, list(rejects), fence, run_id, page_no, options, careful=False)
        except sa.exc.DBAPIError as error:
            if is_transient(error):
                raise TransientError(f"PostgreSQL: {_first_line(error)}") from None
            if not is_data_error(error):
                raise
            # Some row was refused by PostgreSQL: redo the page row by row to find it.
            log.warning("page %d: PostgreSQL refused a row (%s); writing the page row by row",
                        page_no, _first_line(error))
            return self._retry_careful(unique, duplicates, list(rejects), fence, run_id, page_no, options)

    def _retry_careful(self, rows: list[EventRow], duplicates: int, rejects: list[Rejected],
                       fence: Fence, run_id: int, page_no: int, options: _PageOptions) -> PageCounts:
        try:
            return self._commit(rows, duplicates, rejects, fence, run_id, page_no, options, careful=True)
        except sa.exc.DBAPIError as error:
            if is_transient(error):
                raise TransientError(f"PostgreSQL: {_first_line(error)}") from None
            raise

    def _commit(self, rows: list[EventRow], duplicates: int, rejects: list[Rejected], fence: Fence,
                run_id: int, page_no: int, options: _PageOptions, careful: bool) -> PageCounts:
        with self.engine.begin() as connection:
            # The page, its cursor and its counts commit or vanish together, so a commit
            # need not wait for the disk: a page lost in a server crash is read again by
            # the next run, like a page lost in flight.
            connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
            self.lease.fence(connection, fence)
            if careful:
                inserted, updated, refused = self._upsert_each(connection, rows)
                rows = [row for row in rows if row.key not in {r[0].key for r in refused}]
                rejects = rejects + [_as_reject(row, reason) for row, reason in refused]
            else:
                inserted, updated = self._upsert(connection, rows)
            new_bad = self._dead_letter(connection, rejects, run_id)
            if options.seen is not None:
                self._remember(connection, options.seen, rows, rejects)
            cursor = max((row.event_timestamp for row in rows), default=None) if options.advance_cursor else None
            counts = PageCounts(inserted, updated, len(rows) - inserted - updated + duplicates,
                                new_bad, len(rejects) - new_bad)
            self._advance(connection, cursor, counts, run_id, page_no)
        return counts

    @staticmethod
    def _remember(connection: sa.Connection, seen: str, rows: list[EventRow], rejects: list[Rejected]) -> None:
        """Record the keys a reconciling run has read (a document set aside still exists)."""
        if not rows and not rejects:
            return
        statement = f"COPY {seen} (es_index, es_id) FROM STDIN"
        with _driver_errors(statement), _driver(connection).cursor() as cursor, cursor.copy(statement) as copy:
            # A row's COPY line starts with its two key fields, already escaped: no per-key Python work.
            copy.write(b"".join(b"\t".join(copy_line(row).split(b"\t", 2)[:2]) + b"\n" for row in rows))
            for reject in rejects:
                copy.write_row((reject.es_index, reject.es_id))

    def move_cursor(self, cursor: datetime, fence: Fence, run_id: int) -> None:
        """Move the stored cursor forward to `cursor` (never back), fenced by the lease."""
        runs = self.tables.runs
        with self.engine.begin() as connection:
            self.lease.fence(connection, fence)
            self._store_cursor(connection, cursor)
            connection.execute(sa.update(runs).where(runs.c.id == run_id).values(
                cursor_value=sa.func.greatest(runs.c.cursor_value, cursor)))

    def _upsert(self, connection: sa.Connection, rows: list[EventRow]) -> tuple[int, int]:
        """Write a page: new documents by COPY straight into the target, newer versions by upsert."""
        if not rows:
            return 0, 0
        stored = self._stored_versions(connection, rows)
        new = [row for row in rows if row.key not in stored]
        newer = [row for row in rows if row.key in stored and _is_newer(row, stored[row.key])]
        if new:
            # One writer per target at a time (the lease), so rows not found now are still absent.
            target = connection.dialect.identifier_preparer.format_table(self.tables.target)
            self._copy(connection, target, new)
        return len(new), self._upsert_newer(connection, newer)

    def _stored_versions(self, connection: sa.Connection, rows: list[EventRow]) -> dict[tuple[str, str], Stored]:
        # Straight through the driver, keys as one JSON text: binding a thousand keys and
        # building result rows through SQLAlchemy cost five times the CPU of the query itself.
        # A soft-deleted row reads as versionless: whatever version comes back is written,
        # also after its index was deleted and re-created with versions counting from 0 again.
        target = connection.dialect.identifier_preparer.format_table(self.tables.target)
        statement = ("SELECT t.es_index, t.es_id, CASE WHEN t.deleted_at IS NULL THEN t.es_primary_term END, "
                     f"CASE WHEN t.deleted_at IS NULL THEN t.es_seq_no END FROM {target} t "
                     "JOIN (SELECT e->>0 AS es_index, e->>1 AS es_id FROM json_array_elements(%s::json) e) k "
                     "USING (es_index, es_id)")
        keys = orjson.dumps([row.key for row in rows]).decode()
        with _driver_errors(statement), _driver(connection).cursor() as cursor:
            cursor.execute(statement, (keys,))
            return {(index, doc_id): (term, seq_no) for index, doc_id, term, seq_no in cursor.fetchall()}

    @staticmethod
    def _copy(connection: sa.Connection, table: str, rows: list[EventRow]) -> None:
        statement = f"COPY {table} ({', '.join(_COLUMNS)}) FROM STDIN"
        with _driver_errors(statement), _driver(connection).cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(b"".join(map(copy_line, rows)))

    def _upsert_newer(self, connection: sa.Connection, rows: list[EventRow]) -> int:
        """Upsert rows through the staging table, guarded by version; return how many were written."""
        if not rows:
            return 0
        connection.exec_driver_sql(_STAGE_DDL)
        self._copy(connection, STAGE, rows)
        columns = [sa.cast(self.stage.c[name], JSONB).label(name) if name == "source" else self.stage.c[name]
                   for name in _COLUMNS]
        select = sa.select(*columns).order_by(self.stage.c.es_index, self.stage.c.es_id)
        written = self._on_conflict(insert(self.tables.target).from_select(list(_COLUMNS), select)).cte("written")
        # Count in PostgreSQL: the RETURNING rows need not travel to Python.
        return int(connection.execute(sa.select(sa.func.count()).select_from(written)).scalar_one())

    def _on_conflict(self, statement: sa.dialects.postgresql.Insert) -> sa.sql.Executable:
        target, excluded = self.tables.target, statement.excluded
        newer = sa.or_(
            target.c.es_seq_no.is_(None),
            target.c.deleted_at.is_not(None),
            sa.tuple_(target.c.es_primary_term, target.c.es_seq_no)
            < sa.tuple_(excluded.es_primary_term, excluded.es_seq_no),
        )
        return statement.on_conflict_do_update(
            index_elements=[target.c.es_index, target.c.es_id],
            set_={"event_timestamp": excluded.event_timestamp, "source": excluded.source,
                  "es_seq_no": excluded.es_seq_no, "es_primary_term": excluded.es_primary_term,
                  "last_synced_at": sa.func.now(), "deleted_at": None},
            where=newer,
        ).returning(sa.literal_column("(xmax = 0)").label("inserted"))

    def _upsert_each(self, connection: sa.Connection,
                     rows: list[EventRow]) -> tuple[int, int, list[tuple[EventRow, str]]]:
        inserted = updated = 0
        refused: list[tuple[EventRow, str]] = []
        for row in rows:
            values = dict(zip(_COLUMNS, (row.es_index, row.es_id, row.event_timestamp,
                                         sa.cast(sa.literal(row.source.decode(), sa.Text), JSONB),
                                         row.seq_no, row.primary_term)))
            try:
                with connection.begin_nested():
                    flags = connection.execute(
                        self._on_conflict(insert(self.tables.target).values(**values))).scalars().all()
            except sa.exc.DBAPIError as error:
                if is_transient(error) or not is_data_error(error):
                    raise
                refused.append((row, f"PostgreSQL refused the row: {_first_line(error)}"))
                continue
            inserted += sum(1 for flag in flags if flag)
            updated += sum(1 for flag in flags if not flag)
        return inserted, updated, refused

    def _dead_letter(self, connection: sa.Connection, rejects: list[Rejected], run_id: int) -> int:
        if not rejects:
            return 0
        dead = self.tables.dead_letters
        values = [{"target_table": self.tables.target.name, "es_index": r.es_index, "es_id": r.es_id,
                   "es_seq_no": r.seq_no, "es_primary_term": r.primary_term, "reason": r.reason,
                   "raw_document": r.raw, "run_id": run_id} for r in rejects]
        statement = insert(dead).values(values).on_conflict_do_nothing(
            constraint="rtarf_sync_dead_letters_version_key").returning(dead.c.id)
        return len(connection.execute(statement).all())

    def _advance(self, connection: sa.Connection, cursor: datetime | None, counts: PageCounts,
                 run_id: int, page_no: int) -> None:
        runs = self.tables.runs
        changes = {name: runs.c[name] + getattr(counts, name) for name in COUNTERS}
        total = sum(getattr(counts, name) for name in COUNTERS)
        changes.update(pages=page_no, total_processed=runs.c.total_processed + total)
        if cursor is not None:
            self._store_cursor(connection, cursor)
            changes["cursor_value"] = sa.func.greatest(runs.c.cursor_value, cursor)
        connection.execute(sa.update(runs).where(runs.c.id == run_id).values(**changes))

    def _store_cursor(self, connection: sa.Connection, cursor: datetime) -> None:
        table = self.tables.cursor
        statement = insert(table).values(target_table=self.tables.target.name,
                                         source_index=self.source_index, cursor_value=cursor)
        connection.execute(statement.on_conflict_do_update(
            index_elements=[table.c.target_table, table.c.source_index],
            set_={"cursor_value": sa.func.greatest(table.c.cursor_value, statement.excluded.cursor_value),
                  "updated_at": sa.func.now()},
        ))

    def load_cursor(self) -> datetime | None:
        """The stored cursor of (source index setting, target table), or None before the first page."""
        table = self.tables.cursor
        with self.engine.connect() as connection:
            return connection.execute(sa.select(table.c.cursor_value).where(
                table.c.target_table == self.tables.target.name,
                table.c.source_index == self.source_index)).scalar()


def _driver(connection: sa.Connection) -> psycopg.Connection[object]:
    """The psycopg connection under a SQLAlchemy connection, inside the same transaction."""
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    return driver


@contextmanager
def _driver_errors(statement: str) -> Iterator[None]:
    """Wrap driver errors as SQLAlchemy would, so one handler sees every database error."""
    try:
        yield
    except psycopg.Error as error:
        raise sa.exc.DBAPIError.instance(statement, None, error, psycopg.Error) from error


def _is_newer(row: EventRow, stored: Stored) -> bool:
    term, seq_no = stored
    return term is None or seq_no is None or row.version > (term, seq_no)


def _as_reject(row: EventRow, reason: str) -> Rejected:
    return Rejected(row.es_index, row.es_id, row.seq_no, row.primary_term, reason, row.source.decode())


def copy_line(row: EventRow) -> bytes:
    """The row's line of COPY text."""
    return row.copy_text or copy_text(*row[:6])
