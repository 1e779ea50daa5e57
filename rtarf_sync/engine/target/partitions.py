"""Range partitions of the target on `event_timestamp`: their bounds, names, DDL and the retention horizon.

A partitioned target has no primary key (PostgreSQL wants the partition key in it, and a moving
cursor value must not make a second row): one row per (es_index, es_id) is kept by the sink,
which writes under the lease's row lock, looks every document up first, and moves a row to its
new partition with one version-guarded UPDATE. Rows without the cursor field live in a default
partition that holds only them (a CHECK says so, so adding a partition never scans it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Iterable

import sqlalchemy as sa

from config import PARTITION_KINDS, ConfigError, Settings
from rtarf_sync.engine.errors import RunAborted

AHEAD = {"day": 7, "month": 2}  # partitions made ahead of now at start-up
_SUFFIX = re.compile(r"_p(\d{8}|\d{6})$")


@dataclass(frozen=True)
class Partition:
    """One range partition: its table name and [start, end) in UTC."""

    name: str
    start: datetime
    end: datetime


def check_partitioning(settings: Settings) -> None:
    """Refuse partitioning settings that make no sense; the message names the key and the value."""
    if settings.partition is not None and settings.partition not in PARTITION_KINDS:
        raise ConfigError(f"partition: {settings.partition!r} is not one of {', '.join(PARTITION_KINDS)}")
    if settings.retention_days is not None:
        if settings.partition is None:
            raise ConfigError("retention_days: retention drops partitions; set partition = day or month")
        if not 1 <= settings.retention_days <= 36500:
            raise ConfigError(f"retention_days: {settings.retention_days} is not between 1 and 36500")
    for start, end in settings.legal_hold:
        if not start < end:
            raise ConfigError(f"legal_hold: [{start}, {end}) is empty (from must be before to)")


def floor_of(kind: str, moment: datetime) -> datetime:
    """The UTC start of the partition of `kind` holding `moment`."""
    utc = moment.astimezone(timezone.utc)
    day = datetime(utc.year, utc.month, utc.day, tzinfo=timezone.utc)
    return day if kind == "day" else day.replace(day=1)


def next_start(kind: str, start: datetime) -> datetime:
    """The start of the partition after the one starting at `start`."""
    if kind == "day":
        return start + timedelta(days=1)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def base_name(table: str) -> str:
    """The prefix of the partitions' names: short enough for a suffix in 63 bytes, unique per table."""
    if len(table) <= 48:
        return table
    return f"{table[:39]}_{hashlib.sha1(table.encode()).hexdigest()[:8]}"


def partition_of(table: str, kind: str, moment: datetime) -> Partition:
    """The partition of `table` that holds `moment`."""
    start = floor_of(kind, moment)
    suffix = start.strftime("%Y%m%d" if kind == "day" else "%Y%m")
    return Partition(f"{base_name(table)}_p{suffix}", start, next_start(kind, start))


def default_name(table: str) -> str:
    """The partition of rows without the cursor field."""
    return f"{base_name(table)}_pnull"


def horizon(settings: Settings, now: datetime | None = None) -> datetime | None:
    """The retention horizon: events older than this are outside every scope (None: keep everything)."""
    if settings.retention_days is None or settings.partition is None:
        return None
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc) - timedelta(days=settings.retention_days)


def held(partition: Partition, holds: Iterable[tuple[date, date]]) -> bool:
    """Whether the partition intersects a legal hold range [from, to) (dates taken as UTC midnights)."""
    for start, end in holds:
        hold_start = datetime(start.year, start.month, start.day, tzinfo=timezone.utc)
        hold_end = datetime(end.year, end.month, end.day, tzinfo=timezone.utc)
        if partition.start < hold_end and hold_start < partition.end:
            return True
    return False


def _quote(connection: sa.Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def is_partitioned(connection: sa.Connection, table: str) -> bool | None:
    """Whether `table` is partitioned (None when it does not exist)."""
    kind = connection.execute(
        sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass(quote_ident(:table))"), {"table": table}
    ).scalar_one_or_none()
    return None if kind is None else kind == "p"


def create_parent(connection: sa.Connection, table: str, like: str | None = None) -> None:
    """Create the partitioned target (newest schema, no primary key) with its default partition.

    With `like`, the columns are those of that table (a conversion), and the parent is made under
    the name `table` + "_conv" until the conversion swaps it in; partitions and indexes are
    named for `table` from the start, so the swap renames one table only.
    """
    base = base_name(like or table)
    target = _quote(connection, table)
    if like is None:
        connection.exec_driver_sql(
            f"CREATE TABLE {target} (es_index text NOT NULL, es_id text NOT NULL, event_timestamp timestamptz, "
            "source jsonb NOT NULL, es_seq_no bigint, es_primary_term bigint, "
            "first_synced_at timestamptz NOT NULL DEFAULT now(), last_synced_at timestamptz NOT NULL DEFAULT now(), "
            "deleted_at timestamptz) PARTITION BY RANGE (event_timestamp)"
        )
    else:
        connection.exec_driver_sql(
            f"CREATE TABLE {target} (LIKE {_quote(connection, like)} INCLUDING DEFAULTS) "
            "PARTITION BY RANGE (event_timestamp)"
        )
    # The identity's index (not unique: the sink keeps one row per key) and the time index (a
    # conversion copies the table's own). The time index also holds what verification filters on,
    # so its counts per bucket are index-only scans of vacuumed partitions, not reads of their rows.
    connection.exec_driver_sql(f"CREATE INDEX {_quote(connection, base + '_key_idx')} ON {target} (es_index, es_id)")
    if like is None:
        connection.exec_driver_sql(
            f"CREATE INDEX {_quote(connection, base + '_ts_idx')} ON {target} (event_timestamp) "
            "INCLUDE (es_index, deleted_at)"
        )
    connection.exec_driver_sql(
        f"CREATE TABLE {_quote(connection, default_name(like or table))} PARTITION OF {target} "
        "(CONSTRAINT rtarf_only_null CHECK (event_timestamp IS NULL)) DEFAULT"
    )


def create_partitions(connection: sa.Connection, table: str, partitions: Iterable[Partition]) -> None:
    """Create these partitions where missing (the caller serialises DDL on the target)."""
    target = _quote(connection, table)
    for part in partitions:
        connection.exec_driver_sql(
            # DDL takes no parameters: the bounds are instants this module made, rendered as literals.
            f"CREATE TABLE IF NOT EXISTS {_quote(connection, part.name)} PARTITION OF {target} "
            f"FOR VALUES FROM ('{part.start.isoformat()}') TO ('{part.end.isoformat()}')"
        )


def existing(connection: sa.Connection, table: str) -> list[Partition]:
    """The range partitions of `table`, oldest first (read from their names, which this module gives)."""
    names = connection.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(quote_ident(:table))"
        ),
        {"table": table},
    ).scalars()
    found = []
    for name in names:
        match = _SUFFIX.search(name)
        if match is None:
            continue
        digits = match.group(1)
        kind = "day" if len(digits) == 8 else "month"
        start = datetime.strptime(digits if kind == "day" else digits + "01", "%Y%m%d").replace(tzinfo=timezone.utc)
        found.append(Partition(name, start, next_start(kind, start)))
    return sorted(found, key=lambda part: part.start)


def ahead(table: str, kind: str, now: datetime | None = None) -> list[Partition]:
    """The partitions from now's to AHEAD[kind] after it."""
    part = partition_of(table, kind, now or datetime.now(timezone.utc))
    parts = [part]
    for _ in range(AHEAD[kind]):
        parts.append(partition_of(table, kind, parts[-1].end))
    return parts


def prepare_partitioned(engine: sa.Engine, table: str, kind: str) -> None:
    """Create the partitioned target if missing, plus the partitions ahead of now; refuse a plain table."""
    from rtarf_sync.engine.target.migrations import LOCK_KEY

    with engine.begin() as connection:
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(LOCK_KEY)))
        state = is_partitioned(connection, table)
        if state is None:
            create_parent(connection, table)
        elif not state:
            raise RunAborted(
                f"table {table} is not partitioned but partition = {kind!r} is set: convert it with "
                "`python -m rtarf_sync init-db --convert-partitioned` (rows are kept), or unset partition"
            )
        create_partitions(connection, table, ahead(table, kind))


def refuse_partitioned(engine: sa.Engine, table: str) -> None:
    """A partitioned target needs its partition setting: without it the sink would write it as a plain table."""
    with engine.connect() as connection:
        if is_partitioned(connection, table):
            raise RunAborted(f"table {table} is partitioned: set partition = day or month for it")


def present_partitions(connection: sa.Connection, names: list[str]) -> set[str]:
    """Those of these partition names that exist."""
    found = connection.execute(
        sa.text(
            "SELECT name FROM unnest(CAST(:names AS text[])) AS name WHERE to_regclass(quote_ident(name)) IS NOT NULL"
        ),
        {"names": names},
    )
    return set(found.scalars())
