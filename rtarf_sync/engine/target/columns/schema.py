"""Typed columns at start-up: added to the target table, filled from the stored `source`, recorded.

    changes = apply_columns(engine, tables)    # after the migrations (tables.create_tables)

The configured columns are compared with the specs recorded in `rtarf_sync_columns`.
A new column is added; one whose type changed is retyped (its old values dropped); a new,
retyped or re-pathed one is then filled from each row's stored `source` in batches of
primary keys, each batch its own transaction, without reading the engine again. Values
convert exactly as the sync converts them (columns.py); one that does not is stored as
NULL whatever `on_error` says (its document is already stored) and counted in a warning.
A row rewritten by a sync meanwhile keeps the sync's values (the update is version-guarded).
A column no longer configured stays in the table, unwritten, and a warning says so.
Indexes are made with CREATE INDEX CONCURRENTLY, so writes go on while they build.
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from rtarf_sync.engine.target.columns.column_set import RESERVED, ColumnSet, TypedColumn, decode_source, index_name
from rtarf_sync.engine.target.documents import COPY_HEADER, COPY_TRAILER
from rtarf_sync.engine.target.migrations import LOCK_KEY
from rtarf_sync.engine.target.tables import Tables

log = logging.getLogger("rtarf_sync.columns")
COLUMNS_TABLE = "rtarf_sync_columns"
FILL_BATCH = 5000  # rows per fill transaction
_PROGRESS_SECONDS = 5.0
# How PostgreSQL's format_type names the types whose configured name differs.
_FORMATTED = {"timestamptz": "timestamp with time zone"}
_LENGTH = struct.Struct("!i").pack
_BIGINT = struct.Struct("!iq").pack
_NULL = _LENGTH(-1)


@dataclass
class ColumnChanges:
    """What start-up did to the typed columns of one target table."""

    added: list[str] = field(default_factory=list)
    retyped: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    left_in_table: list[str] = field(default_factory=list)
    indexed: list[str] = field(default_factory=list)
    rows: int = 0
    not_converted: int = 0
    seconds: float = 0.0


def apply_columns(engine: sa.Engine, tables: Tables, batch: int = FILL_BATCH) -> ColumnChanges:
    """Bring the target table's typed columns to the configured ones (one process at a time per table)."""
    changes = ColumnChanges()
    name = tables.target.name
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        # Two processes starting at once: the second waits, then finds the columns recorded.
        connection.execute(sa.text("SELECT pg_advisory_lock(:key, hashtext(:table))"), _lock_args(name))
        try:
            present = _present(connection, name)
            recorded = _recorded(connection, name)
            to_fill = _add_or_retype(connection, tables, present, recorded, changes)
            changes.left_in_table = sorted(set(present) - RESERVED - set(tables.columns.names))
            if changes.left_in_table:
                log.warning(
                    "table %s keeps column(s) no longer configured, unwritten from now on: %s",
                    name,
                    ", ".join(changes.left_in_table),
                )
            if to_fill:
                began = time.monotonic()
                changes.filled = [column.name for column in to_fill]
                changes.rows, changes.not_converted = fill(engine, tables, to_fill, batch)
                changes.seconds = time.monotonic() - began
            _record(connection, tables)
            changes.indexed = _indexes(connection, tables)
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:key, hashtext(:table))"), _lock_args(name))
    return changes


def _lock_args(table: str) -> dict[str, Any]:
    return {"key": LOCK_KEY, "table": table}


def _present(connection: sa.Connection, table: str) -> dict[str, str]:
    """The target table's columns and their types as format_type writes them."""
    found = connection.execute(
        sa.text(
            "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute "
            "WHERE attrelid = to_regclass(quote_ident(:table)) AND attnum > 0 AND NOT attisdropped"
        ),
        {"table": table},
    )
    return {row.attname: row.type for row in found}


def _recorded(connection: sa.Connection, table: str) -> dict[str, tuple[str, str]]:
    """The recorded (path, type) of each typed column of the table."""
    found = connection.execute(
        sa.text(f"SELECT name, path, type FROM {COLUMNS_TABLE} WHERE target_table = :table"), {"table": table}
    )
    return {row.name: (row.path, row.type) for row in found}


def _add_or_retype(
    connection: sa.Connection,
    tables: Tables,
    present: dict[str, str],
    recorded: dict[str, tuple[str, str]],
    changes: ColumnChanges,
) -> list[TypedColumn]:
    """Add missing columns, retype changed ones; return those to fill."""
    quote = connection.dialect.identifier_preparer.quote
    target = connection.dialect.identifier_preparer.format_table(tables.target)
    to_fill: list[TypedColumn] = []
    for column in tables.columns.columns:
        wanted, name = column.spec.type, quote(column.name)
        if column.name not in present:
            connection.exec_driver_sql(f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {name} {wanted}")
            changes.added.append(column.name)
        elif present[column.name] != _FORMATTED.get(wanted, wanted):
            # Old values may not cast to the new type: they are dropped, and the fill converts afresh.
            connection.exec_driver_sql(f"ALTER TABLE {target} ALTER COLUMN {name} TYPE {wanted} USING NULL")
            changes.retyped.append(column.name)
        elif recorded.get(column.name) == (column.path, wanted):
            continue  # as recorded: filled already
        to_fill.append(column)
    return to_fill


def fill(engine: sa.Engine, tables: Tables, columns: list[TypedColumn], batch: int = FILL_BATCH) -> tuple[int, int]:
    """Fill `columns` of every stored row from its `source`, batch by batch; (rows, values not converted)."""
    typed = ColumnSet([column.spec for column in columns])
    preparer = postgresql_preparer(engine)
    target = preparer.format_table(tables.target)
    stage = f"rtarf_fill_{typed.fingerprint}"
    names = [preparer.quote(column.name) for column in columns]
    sets = ", ".join(f"{name} = f.{name}" for name in names)
    rows = failed = 0
    after: tuple[str, str] | None = None
    reported = began = time.monotonic()
    while True:
        with engine.begin() as connection:
            driver = connection.connection.driver_connection
            assert driver is not None
            with driver.cursor() as cursor:
                cursor.execute(
                    "SELECT es_index, es_id, es_seq_no, es_primary_term, source::text FROM "
                    f"{target} WHERE (es_index, es_id) > (%s, %s) ORDER BY es_index, es_id LIMIT %s",
                    (*(after or ("", "")), batch),
                )
                found = cursor.fetchall()
                if not found:
                    break
                cursor.execute(
                    f"CREATE TEMP TABLE {stage} (es_index text, es_id text, es_seq_no bigint, "
                    f"es_primary_term bigint, {typed.ddl(preparer.quote)}) ON COMMIT DROP"
                )
                encoded, not_converted = _encode(found, typed)
                with cursor.copy(f"COPY {stage} FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(COPY_HEADER + encoded + COPY_TRAILER)
                # Only where the stored version is still the one read: a sync's newer row has its own values.
                cursor.execute(
                    f"UPDATE {target} t SET {sets} FROM {stage} f WHERE t.es_index = f.es_index "
                    "AND t.es_id = f.es_id AND t.es_seq_no IS NOT DISTINCT FROM f.es_seq_no "
                    "AND t.es_primary_term IS NOT DISTINCT FROM f.es_primary_term"
                )
        rows, failed, after = rows + len(found), failed + not_converted, (found[-1][0], found[-1][1])
        if time.monotonic() - reported >= _PROGRESS_SECONDS:
            reported = time.monotonic()
            log.info(
                "filling %s of %s: %d rows so far (%.0f s)", ", ".join(typed.names), target, rows, reported - began
            )
    log.info("filled %s of %s: %d rows in %.1f s", ", ".join(typed.names), target, rows, time.monotonic() - began)
    if failed:
        log.warning(
            "filling %s of %s: %d value(s) did not convert and were stored as NULL (their documents are stored)",
            ", ".join(typed.names),
            target,
            failed,
        )
    return rows, failed


def _encode(found: list[Any], typed: ColumnSet) -> tuple[bytes, int]:
    """The fill rows in COPY's binary format, and how many values did not convert."""
    parts: list[bytes] = []
    failed = 0
    head = struct.pack("!h", 4 + len(typed))
    for es_index, es_id, seq_no, term, source in found:
        document = decode_source(source)
        values, bad = typed.lenient_values(document if isinstance(document, dict) else {})
        failed += bad
        index_bytes, id_bytes = es_index.encode(), es_id.encode()
        parts.append(
            b"".join(
                (
                    head,
                    _LENGTH(len(index_bytes)),
                    index_bytes,
                    _LENGTH(len(id_bytes)),
                    id_bytes,
                    _NULL if seq_no is None else _BIGINT(8, seq_no),
                    _NULL if term is None else _BIGINT(8, term),
                    typed.encode(values),
                )
            )
        )
    return b"".join(parts), failed


def _record(connection: sa.Connection, tables: Tables) -> None:
    """Record the configured specs as applied; forget those no longer configured."""
    table = tables.target.name
    connection.execute(
        sa.text(f"DELETE FROM {COLUMNS_TABLE} WHERE target_table = :table AND NOT (name = ANY(:names))"),
        {"table": table, "names": list(tables.columns.names)},
    )
    for column in tables.columns.columns:
        spec = column.spec
        connection.execute(
            sa.text(
                f"INSERT INTO {COLUMNS_TABLE} (target_table, name, path, type, indexed, on_error) "
                "VALUES (:table, :name, :path, :type, :indexed, :on_error) ON CONFLICT (target_table, name) "
                "DO UPDATE SET path = excluded.path, type = excluded.type, indexed = excluded.indexed, "
                "on_error = excluded.on_error, applied_at = now()"
            ),
            {
                "table": table,
                "name": spec.name,
                "path": spec.path,
                "type": spec.type,
                "indexed": spec.index,
                "on_error": spec.on_error,
            },
        )


def _indexes(connection: sa.Connection, tables: Tables) -> list[str]:
    """Make the index of each column that asks for one (concurrently); return the names made now."""
    preparer = connection.dialect.identifier_preparer
    target = preparer.format_table(tables.target)
    made: list[str] = []
    for column in tables.columns.columns:
        if not column.spec.index:
            continue
        name = index_name(tables.target.name, column.name)
        state = connection.execute(
            sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(quote_ident(:name))"),
            {"name": name},
        ).scalar()
        if state is True:
            continue
        # PostgreSQL builds no index on a partitioned table concurrently: there the build blocks writes.
        concurrently = "" if tables.partition is not None else "CONCURRENTLY "
        if state is False:  # a build interrupted earlier leaves an invalid index behind
            connection.exec_driver_sql(f"DROP INDEX {concurrently}IF EXISTS {preparer.quote(name)}")
        connection.exec_driver_sql(
            f"CREATE INDEX {concurrently}IF NOT EXISTS {preparer.quote(name)} "
            f"ON {target} ({preparer.quote(column.name)})"
        )
        log.info("made index %s on %s (%s)", name, target, column.name)
        made.append(name)
    return made


def postgresql_preparer(engine: sa.Engine) -> Any:
    """The dialect's identifier quoting (typed loosely: SQLAlchemy's dialects are untyped)."""
    return engine.dialect.identifier_preparer
