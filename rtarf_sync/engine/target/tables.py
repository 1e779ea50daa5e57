"""Table definitions: the target table and the service's own state tables.

The target table's name is configurable (`RTARF_TABLE`); the state tables
have fixed names and key their rows by target table, so several targets can
share one database. These definitions describe the newest schema for the
queries; the tables themselves are made and upgraded by `migrations/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from config import ColumnSpec
from rtarf_sync.engine.target.columns.column_set import ColumnSet

CURSOR_TABLE = "rtarf_sync_cursor"
LEASE_TABLE = "rtarf_sync_lease"
RUNS_TABLE = "rtarf_sync_runs"
DEAD_LETTER_TABLE = "rtarf_sync_dead_letters"
VERIFICATIONS_TABLE = "rtarf_sync_verifications"
CONTROLS_TABLE = "rtarf_sync_controls"
_UNDEFINED_TABLE = "42P01"  # SQLSTATE undefined_table


def _ts(name: str, **kwargs: Any) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)


@dataclass(frozen=True)
class Tables:
    """All tables the service uses, bound to one target table name."""

    metadata: sa.MetaData
    target: sa.Table
    cursor: sa.Table
    lease: sa.Table
    runs: sa.Table
    dead_letters: sa.Table
    verifications: sa.Table
    controls: sa.Table
    columns: ColumnSet = field(default_factory=ColumnSet)  # the target's typed columns
    partition: str | None = None  # None (one plain table), "day" or "month" (partitions.py)


def _target(metadata: sa.MetaData, name: str, columns: ColumnSet, keyed: bool = True) -> sa.Table:
    # A partitioned target has no primary key (partitions.py says why); its key is kept by the sink.
    return sa.Table(
        name,
        metadata,
        sa.Column("es_index", sa.Text, primary_key=keyed, nullable=False),
        sa.Column("es_id", sa.Text, primary_key=keyed, nullable=False),
        _ts("event_timestamp"),
        sa.Column("source", JSONB, nullable=False),
        sa.Column("es_seq_no", sa.BigInteger),
        sa.Column("es_primary_term", sa.BigInteger),
        _ts("first_synced_at", nullable=False, server_default=sa.func.now()),
        _ts("last_synced_at", nullable=False, server_default=sa.func.now()),
        _ts("deleted_at"),
        sa.Index(f"{name[:50]}_event_ts_idx", "event_timestamp"),
        *(sa.Column(column.name, column.sa_type) for column in columns.columns),
    )


def _state(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table, sa.Table, sa.Table]:
    cursor = sa.Table(
        CURSOR_TABLE,
        metadata,
        sa.Column("target_table", sa.Text, primary_key=True),
        sa.Column("source_index", sa.Text, primary_key=True),
        _ts("cursor_value"),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
    )
    lease = sa.Table(
        LEASE_TABLE,
        metadata,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        _ts("acquired_at", nullable=False),
        _ts("expires_at", nullable=False),
    )
    runs = sa.Table(
        RUNS_TABLE,
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("target_table", sa.Text, nullable=False),
        sa.Column("source_index", sa.Text, nullable=False),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        _ts("started_at", nullable=False),
        _ts("finished_at"),
        *(
            sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
            for name in ("pages", "total_processed", "inserted", "updated", "unchanged", "failed", "known_bad")
        ),
        _ts("cursor_value"),
        sa.Column("error", sa.Text),
        sa.Column("mode", sa.Text, nullable=False, server_default="incremental"),
        sa.Column("deleted", sa.BigInteger, nullable=False, server_default="0"),
        _ts("range_from"),
        _ts("range_to"),
        sa.Index("rtarf_sync_runs_target_idx", "target_table", "started_at"),
    )
    dead = sa.Table(
        DEAD_LETTER_TABLE,
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("target_table", sa.Text, nullable=False),
        sa.Column("es_index", sa.Text, nullable=False),
        sa.Column("es_id", sa.Text, nullable=False),
        sa.Column("es_seq_no", sa.BigInteger, nullable=False),
        sa.Column("es_primary_term", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        _ts("failed_at", nullable=False, server_default=sa.func.now()),
        sa.Column("raw_document", sa.Text, nullable=False),
        sa.Column("run_id", sa.BigInteger),
        _ts("resolved_at"),
        sa.UniqueConstraint(
            "target_table",
            "es_index",
            "es_id",
            "es_seq_no",
            "es_primary_term",
            name="rtarf_sync_dead_letters_version_key",
        ),
    )
    return cursor, lease, runs, dead


def _verifications(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        VERIFICATIONS_TABLE,
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("target_table", sa.Text, nullable=False),
        sa.Column("source_index", sa.Text, nullable=False),
        _ts("checked_at", nullable=False, server_default=sa.func.now()),
        _ts("range_from", nullable=False),
        _ts("range_to", nullable=False),
        sa.Column("bucket", sa.Text, nullable=False),
        sa.Column("source_total", sa.BigInteger, nullable=False),
        sa.Column("target_total", sa.BigInteger, nullable=False),
        sa.Column("buckets_differing", sa.Integer, nullable=False),
        sa.Column("in_step", sa.Boolean, nullable=False),
        sa.Column("result", JSONB, nullable=False),
    )


def _controls(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        CONTROLS_TABLE,
        metadata,
        sa.Column("target_table", sa.Text, primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False),
        _ts("changed_at", nullable=False, server_default=sa.func.now()),
        sa.Column("changed_by", sa.Text, nullable=False),
    )


def build_tables(target_name: str, columns: tuple[ColumnSpec, ...] = (), partition: str | None = None) -> Tables:
    """Describe every table for one target table name, its typed columns and its partitioning."""
    metadata = sa.MetaData()
    typed = ColumnSet(columns)
    target = _target(metadata, target_name, typed, keyed=partition is None)
    cursor, lease, runs, dead = _state(metadata)
    verifications, controls = _verifications(metadata), _controls(metadata)
    return Tables(metadata, target, cursor, lease, runs, dead, verifications, controls, typed, partition)


def present_tables(connection: sa.Connection, *wanted: sa.Table) -> set[str]:
    """The names of those of `wanted` that exist in the database (as the search path finds them)."""
    found = connection.execute(
        sa.text(
            "SELECT name FROM unnest(CAST(:names AS text[])) AS name WHERE to_regclass(quote_ident(name)) IS NOT NULL"
        ),
        {"names": [table.name for table in wanted]},
    )
    return {row.name for row in found}


def is_missing_table(error: sa.exc.DBAPIError) -> bool:
    """Whether a statement failed because a table it names does not exist (yet)."""
    return getattr(error.orig, "sqlstate", None) == _UNDEFINED_TABLE


def create_tables(engine: sa.Engine, tables: Tables) -> None:
    """Create or upgrade every table through the versioned migrations; safe when processes race."""
    from rtarf_sync.engine.target import migrations

    if tables.partition is not None:
        from rtarf_sync.engine.target.partitions import prepare_partitioned

        prepare_partitioned(engine, tables.target.name, tables.partition)
    else:
        from rtarf_sync.engine.target.partitions import refuse_partitioned

        refuse_partitioned(engine, tables.target.name)
    migrations.upgrade(engine, tables.target.name)
