"""`init-db --convert-partitioned`: convert the pipeline's plain target table into a partitioned one.

The command holds the pipeline's lease from start to end: runs of the service wait (they are
skipped, naming this command as the holder) and resume on the partitioned table after the
swap; readers keep reading the old table until then. Progress goes to stderr, a line a batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from config import Settings
from rtarf_sync.engine.runs.lease import LeaseHeld, holding
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.conversion import BATCH, Progress, convert
from rtarf_sync.engine.target.partitions import is_partitioned


def convert_table(settings: Settings, args: argparse.Namespace, progress: Progress | None = None) -> str:
    """Convert the target table; return the line that says what was done. Raises what the caller reports.

    `progress(done, total)` is called after each batch, the lease held (default: a line on stderr).
    """
    kind = args.partition or settings.partition
    if kind is None:
        raise ValueError("set partition (day or month) for the pipeline, or give --partition")
    plain = SyncService(dataclasses.replace(settings, partition=None, retention_days=None))
    table = settings.table
    try:
        with plain.engine.connect() as connection:
            state = is_partitioned(connection, table)
        if state is not False:  # missing: made partitioned below; partitioned: nothing to convert
            return _ensure_partitioned(
                settings, kind, f"table {table} is {'already' if state else 'created'} partitioned"
            )
        plain.ensure_tables()  # the plain table at the newest schema: the copy takes its columns
        with holding(plain.engine, plain.lease, "convert") as fence:
            done = convert(
                plain.engine,
                table,
                kind,
                lambda c: plain.lease.fence(c, fence),
                progress or _print_progress(table),
                args.batch or BATCH,
            )
    except LeaseHeld as held:
        raise ValueError(f"a run holds the lease of {table}; try again when it ends ({held})") from None
    finally:
        plain.close()
    return _ensure_partitioned(
        settings, kind, f"table {table} converted: {done.rows:,} rows in {done.partitions} {kind} partitions"
    )


def _print_progress(table: str) -> Progress:
    def progress(done: int, total: int) -> None:
        print(f"converted {done:,} of {total:,} rows of {table}", file=sys.stderr, flush=True)

    return progress


def _ensure_partitioned(settings: Settings, kind: str, message: str) -> str:
    """Bring the partitioned table to the newest schema (partitions ahead, typed columns); return `message`."""
    partitioned = SyncService(dataclasses.replace(settings, partition=kind))
    try:
        partitioned.ensure_tables()
    finally:
        partitioned.close()
    return message
