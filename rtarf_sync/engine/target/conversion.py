"""Converting a plain target table into a partitioned one (`init-db --convert-partitioned`), rows kept.

    make `<table>_conv` partitioned like the table, with a partition for every day (month) it holds
    copy the rows over in key order, a batch per transaction, each fenced by the pipeline's lease
    swap in one short transaction: lock the table, check the counts, drop it, rename the new one

The caller holds the pipeline's lease from start to end, so no run writes the table meanwhile
(runs are skipped, naming the holder) while readers keep reading it until the swap. An
interrupted conversion leaves the table as it was; the next one starts afresh.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import sqlalchemy as sa

from rtarf_sync.engine.errors import RunAborted
from rtarf_sync.engine.target.partitions import ahead, create_parent, create_partitions, is_partitioned, partition_of

Fencing = Callable[[sa.Connection], None]  # renews the lease in the caller's transaction, or raises
Progress = Callable[[int, int], None]  # (rows copied, rows in the table)
BATCH = 50_000
_USING = re.compile(r"USING .*$")  # what follows the table in pg_get_indexdef: the method and the keys
_TRUNC = {"day": "day", "month": "month"}


@dataclass(frozen=True)
class Conversion:
    """What a conversion did."""

    rows: int
    partitions: int
    already: bool = False


def convert(
    engine: sa.Engine, table: str, kind: str, fence: Fencing, progress: Progress, batch: int = BATCH
) -> Conversion:
    """Convert `table` into a table partitioned by `kind`, copying `batch` rows per transaction."""
    with engine.connect() as connection:
        state = is_partitioned(connection, table)
    if state is None:
        raise RunAborted(f"table {table} does not exist: run init-db without --convert-partitioned")
    if state:
        return Conversion(0, 0, already=True)
    staging = f"{table}_conv"
    total, parts = _prepare(engine, table, staging, kind, fence)
    copied = _copy(engine, table, staging, fence, progress, total, batch)
    _swap(engine, table, staging, fence)
    return Conversion(copied, parts)


def _q(engine: sa.Engine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote(name)


def _prepare(engine: sa.Engine, table: str, staging: str, kind: str, fence: Fencing) -> tuple[int, int]:
    """Make the partitioned copy, empty, with a partition for every day or month the table holds."""
    with engine.begin() as connection:
        fence(connection)
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {_q(engine, staging)}")  # an interrupted attempt
        create_parent(connection, staging, like=table)
        # date_trunc on the UTC wall time: partitions are UTC days and months.
        starts = connection.exec_driver_sql(
            f"SELECT DISTINCT date_trunc('{_TRUNC[kind]}', event_timestamp AT TIME ZONE 'UTC') "
            f"FROM {_q(engine, table)} WHERE event_timestamp IS NOT NULL"
        ).scalars()
        wanted = {partition_of(table, kind, start.replace(tzinfo=timezone.utc)) for start in starts}
        wanted |= set(ahead(table, kind, datetime.now(timezone.utc)))
        create_partitions(connection, staging, sorted(wanted, key=lambda part: part.start))
        _copy_indexes(connection, table, staging)
        total = connection.exec_driver_sql(f"SELECT count(*) FROM {_q(engine, table)}").scalar_one()
    return int(total), len(wanted)


def _copy_indexes(connection: sa.Connection, table: str, staging: str) -> None:
    """Give the copy the table's indexes but its primary key (the time index, typed columns' ones),
    under names that `_swap` renames to the old ones once the table is gone."""
    found = connection.execute(
        sa.text(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = to_regclass(quote_ident(:table)) AND NOT i.indisprimary AND NOT i.indisunique"
        ),
        {"table": table},
    ).all()
    quote = connection.dialect.identifier_preparer.quote
    for name, definition in found:
        using = _USING.search(definition)
        if using is not None:
            connection.exec_driver_sql(f"CREATE INDEX {quote(_interim(name))} ON {quote(staging)} {using.group(0)}")


def _interim(index: str) -> str:
    """The name an index of the copy has until the swap."""
    return f"{index[:55]}_conv"


def _copy(
    engine: sa.Engine, table: str, staging: str, fence: Fencing, progress: Progress, total: int, batch: int
) -> int:
    """Copy the rows in (es_index, es_id) order, one fenced transaction per batch; return how many."""
    source, target = _q(engine, table), _q(engine, staging)
    last: tuple[str, str] | None = None
    copied = 0
    while True:
        after = "WHERE (es_index, es_id) > (%s, %s) " if last is not None else ""
        with engine.begin() as connection:
            fence(connection)
            count, index, doc_id = connection.exec_driver_sql(
                f"WITH batch AS MATERIALIZED (SELECT * FROM {source} {after}ORDER BY es_index, es_id LIMIT {batch}), "
                f"copied AS (INSERT INTO {target} SELECT * FROM batch) "
                "SELECT (SELECT count(*) FROM batch), "
                "(SELECT es_index FROM batch ORDER BY es_index DESC, es_id DESC LIMIT 1), "
                "(SELECT es_id FROM batch ORDER BY es_index DESC, es_id DESC LIMIT 1)",
                last or (),
            ).one()
        if not count:
            return copied
        copied += int(count)
        last = (index, doc_id)
        progress(copied, total)


def _swap(engine: sa.Engine, table: str, staging: str, fence: Fencing) -> None:
    """Put the partitioned table in the old one's place, in one short transaction."""
    with engine.begin() as connection:
        fence(connection)
        connection.exec_driver_sql(f"LOCK TABLE {_q(engine, table)} IN ACCESS EXCLUSIVE MODE")
        old, new = connection.exec_driver_sql(
            f"SELECT (SELECT count(*) FROM {_q(engine, table)}), (SELECT count(*) FROM {_q(engine, staging)})"
        ).one()
        if old != new:  # the lease kept writers out; should anything have written, keep the old table
            raise RunAborted(f"table {table} has {old} rows but its partitioned copy {new}: nothing was swapped")
        names = (
            connection.execute(
                sa.text(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indrelid = to_regclass(quote_ident(:table)) AND NOT i.indisprimary AND NOT i.indisunique"
                ),
                {"table": table},
            )
            .scalars()
            .all()
        )
        connection.exec_driver_sql(f"DROP TABLE {_q(engine, table)}")
        connection.exec_driver_sql(f"ALTER TABLE {_q(engine, staging)} RENAME TO {_q(engine, table)}")
        for name in names:
            connection.exec_driver_sql(
                f"ALTER INDEX IF EXISTS {_q(engine, _interim(name))} RENAME TO {_q(engine, name)}"
            )
