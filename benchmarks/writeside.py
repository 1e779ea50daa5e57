"""The sync's write side alone: the engine's own PostgresSink fed with rows built beforehand.

Between the write ceiling (plain COPY) and the full sync (read, convert,
write) this shows what the sink's transaction costs by itself: the lease
fence, the staging COPY, the version-guarded upsert, the cursor and the run
history. Building the rows is left out of the timing.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks.dataset import row_pages
from config import Settings
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.lease import Lease
from rtarf_sync.engine.target.migrations import version_table
from rtarf_sync.engine.runs.records import RunHistory
from rtarf_sync.engine.target.sink import PostgresSink
from rtarf_sync.engine.target.tables import build_tables, create_tables


def sink_only(settings: Settings, rows_file: Path, index: str, table: str) -> dict[str, Any]:
    """Write the rows of `rows_file` into a fresh `table` through PostgresSink, one page per transaction."""
    engine = sa.create_engine(settings.database_url.reveal())
    tables = build_tables(table)
    with engine.begin() as connection:
        tables.target.drop(connection, checkfirst=True)
        # Its migration version goes too, or the migrations would take the dropped table for current.
        connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{version_table(table)}"')
    create_tables(engine, tables)
    lease = Lease(tables.lease, table, settings.lease_ttl_seconds)
    with engine.begin() as connection:
        fence = lease.acquire(connection, "benchmark")
    assert isinstance(fence, Fence), "the lease is held by another process"
    run_id = RunHistory(engine, tables, settings.es_index).start("bench", "benchmark", datetime.now(timezone.utc))
    sink = PostgresSink(engine, tables, lease.ttl, settings.es_index)
    events = pages = inserted = 0
    seconds = 0.0
    for page in row_pages(rows_file, index, settings.batch_size):
        started = time.perf_counter()
        counts = sink.write_page(page, [], fence, run_id, pages + 1)
        seconds += time.perf_counter() - started
        events, pages, inserted = events + len(page), pages + 1, inserted + counts.inserted
    with engine.begin() as connection:
        lease.release(connection, fence)
    engine.dispose()
    return {"events": events, "pages": pages, "inserted": inserted, "seconds": seconds}
