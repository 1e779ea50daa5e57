"""How a page's rows reach the target table, inside the page's transaction.

New documents are copied straight in (binary COPY, the cheapest write PostgreSQL has). Documents
whose incoming version `(primary_term, seq_no)` is newer than the stored one are copied into a
temporary staging table and upserted with one `INSERT ... SELECT ... ON CONFLICT DO UPDATE` whose
guard repeats the version test, so an older version never overwrites a newer one. After a page
of only new documents the next is copied straight in under a savepoint, since the primary key
checks every row anyway; a document already stored undoes that and the page takes the lookup.
A partitioned target (partitions.py) has no primary key: its pages create the partitions they
need first, and upsert with one version-guarded UPDATE (which moves a row whose time left its
partition) plus an INSERT of the keys not stored. When PostgreSQL refuses a row, the page is
written again row by row, each under a savepoint, and the refused rows come back with their reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB, insert

from rtarf_sync.engine.errors import first_line, is_data_error, is_transient
from rtarf_sync.engine.target.documents import COPY_HEADER, COPY_TRAILER, EventRow, Rejected, copy_row
from rtarf_sync.engine.target.driver import driver_errors, driver_of
from rtarf_sync.engine.target.partitions import create_partitions, floor_of, partition_of, present_partitions
from rtarf_sync.engine.target.tables import Tables
from rtarf_sync.engine.target.versions import KEY_AND_VERSION, lookup_answer, send_lookup, stored_is_older

STAGE = "rtarf_stage"
COLUMNS = ("es_index", "es_id", "event_timestamp", "source", "es_seq_no", "es_primary_term")
_STAGE_COLUMNS = (
    "es_index text, es_id text, event_timestamp timestamptz, source jsonb, es_seq_no bigint, es_primary_term bigint"
)
_COPY_SLICE = 100  # rows per COPY write
Refused = list[tuple[EventRow, str]]  # rows PostgreSQL refused, each with the reason


class RowWriter:
    """Writes rows into one target table, version-guarded, inside the caller's transaction."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        typed = self.typed = tables.columns
        self.names = COLUMNS + typed.names  # every column a page writes, typed ones last
        quote = postgresql.dialect().identifier_preparer.quote  # type: ignore[no-untyped-call]  # SQLAlchemy dialects are untyped
        # One staging table per column list: pooled connections are shared by every target of the process.
        self.stage_name = f"{STAGE}_{typed.fingerprint}" if typed else STAGE
        extra = f", {typed.ddl(quote)}" if typed else ""
        self.stage_ddl = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.stage_name} ({_STAGE_COLUMNS}{extra}) ON COMMIT DELETE ROWS"
        )
        self.stage = sa.table(self.stage_name, *(sa.column(name) for name in self.names))
        self._copy_statement = f"({', '.join(map(quote, self.names))}) FROM STDIN (FORMAT BINARY)"
        self.target_name = postgresql.dialect().identifier_preparer.format_table(tables.target)  # type: ignore[no-untyped-call]  # SQLAlchemy dialects are untyped
        self.all_new = False  # whether the last page looked up held only new documents
        # A partitioned target: the starts of the partitions known to exist (created by an earlier commit).
        self._partitions: set[datetime] = set()
        # A partitioned target empty when the run began, read once: nothing to look up (the sink's `begin_run`).
        self.nothing_stored = False

    @property
    def skips_lookup(self) -> bool:
        """Whether the next page is written without looking its keys up first (after an all-new page,
        or into a fresh partitioned target)."""
        return self.all_new or self.nothing_stored

    def upsert(self, connection: sa.Connection, rows: list[EventRow], verdicts: str | None = None) -> tuple[int, int]:
        """Write rows: new documents by COPY straight into the target, newer versions by upsert: (inserted, updated).

        `verdicts` is the lookup's answer for these rows when it was already asked (the sink's `_open`).
        """
        if not rows:
            return 0, 0
        self.ensure_partitions(connection, rows)
        if verdicts is None and self.all_new and self._copy_if_all_new(connection, rows):
            return len(rows), 0
        new, newer = self.changed(connection, rows, verdicts)
        # Without a primary key (a partitioned target) a stored document would not stop a blind COPY.
        self.all_new = len(new) == len(rows) and self.tables.partition is None
        if new:
            # One writer per target at a time (the lease), so rows not found now are still absent.
            self.copy(connection, self.target_name, new)
        return len(new), self.upsert_newer(connection, newer)

    def ensure_partitions(self, connection: sa.Connection, rows: Sequence[EventRow]) -> None:
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

    def _copy_if_all_new(self, connection: sa.Connection, rows: list[EventRow]) -> bool:
        """After a page of only new documents, COPY the next one straight in: the primary key checks
        every row anyway. If one is stored already, nothing of it stays (a savepoint) and the page
        takes the lookup."""
        driver = driver_of(connection)
        with driver_errors("savepoint"), driver.cursor() as cursor:
            cursor.execute("SAVEPOINT rtarf_all_new")
        try:
            self.copy(connection, self.target_name, rows)
        except sa.exc.DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) != "23505":  # unique_violation
                raise
            with driver_errors("savepoint"), driver.cursor() as cursor:
                cursor.execute("ROLLBACK TO SAVEPOINT rtarf_all_new")
            self.all_new = False
            return False
        return True

    def changed(
        self, connection: sa.Connection, rows: list[EventRow], verdicts: str | None = None
    ) -> tuple[list[EventRow], list[EventRow]]:
        """The rows of new documents, and those whose version is newer than the stored one.

        PostgreSQL compares (`compare_versions`), unless its answer for these rows is given as `verdicts`.
        """
        if verdicts is None and self.nothing_stored:
            return rows, []  # a fresh partitioned target, each document read once (the sink's `begin_run`)
        if verdicts is None:
            verdicts, _ = self.compare_versions(connection, list(map(KEY_AND_VERSION, rows)))
        if verdicts.count("n") == len(rows):
            return rows, []  # the usual first read: every document new
        new = [row for row, verdict in zip(rows, verdicts, strict=True) if verdict == "n"]
        newer = [row for row, verdict in zip(rows, verdicts, strict=True) if verdict == "w"]
        return new, newer

    def compare_versions(
        self, connection: sa.Connection, documents: list[tuple[str, str, int, int]]
    ) -> tuple[str, datetime | None]:
        """The lookup (versions.py) of these (index, id, primary term, seq_no), answered at once.

        Straight through the driver: binding a thousand keys through SQLAlchemy cost five times
        the query itself.
        """
        with driver_errors("look up versions"), driver_of(connection).cursor() as cursor:
            send_lookup(cursor, self.target_name, documents)
            return lookup_answer(cursor)

    def copy(self, connection: sa.Connection, table: str, rows: list[EventRow]) -> None:
        """COPY `rows` into the quoted `table` (the target or the staging table), in binary."""
        statement = f"COPY {table} {self._copy_statement}"
        with driver_errors(statement), driver_of(connection).cursor() as cursor, cursor.copy(statement) as copy:
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

    def upsert_newer(self, connection: sa.Connection, rows: list[EventRow]) -> int:
        """Upsert rows through the staging table, guarded by version; return how many were written."""
        if not rows:
            return 0
        connection.exec_driver_sql(self.stage_ddl)
        self.copy(connection, self.stage_name, rows)
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
        newer = sa.text(stored_is_older(self.target_name, "excluded.es_primary_term", "excluded.es_seq_no"))
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
        target, stage = self.target_name, self.stage_name
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

    def upsert_each(self, connection: sa.Connection, rows: list[EventRow]) -> tuple[int, int, Refused]:
        """Write rows one by one, each under its savepoint: (inserted, updated, the rows refused and why)."""
        if self.tables.partition is not None:
            return self._write_each_staged(connection, rows)
        inserted = updated = 0
        refused: Refused = []
        for row in rows:
            values = dict(
                zip(
                    COLUMNS,
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

    def _write_each_staged(self, connection: sa.Connection, rows: list[EventRow]) -> tuple[int, int, Refused]:
        """`upsert_each` for a partitioned target: each row staged alone and written under its savepoint."""
        inserted = updated = 0
        refused: Refused = []
        self.ensure_partitions(connection, rows)
        connection.exec_driver_sql(self.stage_ddl)
        for row in rows:
            try:
                with connection.begin_nested():
                    connection.exec_driver_sql(f"DELETE FROM {self.stage_name}")
                    self.copy(connection, self.stage_name, [row])
                    added, written = self._write_staged(connection)
            except sa.exc.DBAPIError as error:
                if is_transient(error) or not is_data_error(error):
                    raise
                refused.append((row, f"PostgreSQL refused the row: {first_line(error)}"))
                continue
            inserted, updated = inserted + added, updated + written
        return inserted, updated, refused

    def set_aside(self, connection: sa.Connection, rejects: list[Rejected], run_id: int) -> int:
        """Store rejected documents as dead letters, a version already there once; return how many are new."""
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
