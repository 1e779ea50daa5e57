"""What the machine allows on each side, measured without the other side.

Read ceiling: every event through the same client, the same point-in-time
plan (query, sort, page size) and the same reader as the sync, with no
writes. Write ceiling: the same rows written the fastest way PostgreSQL takes
them (binary COPY of tuples built beforehand, one COPY and one commit per
page, commits not waiting for the disk, as the sync's) into an empty table
with the target's own definition (primary key and timestamp index included).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from benchmarks.dataset import row_pages
from config import Settings
from rtarf_sync.engine.runs.plan import RunScope
from rtarf_sync.engine.source.reader import PitReader
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.documents import COPY_HEADER, COPY_TRAILER, copy_row
from rtarf_sync.engine.target.tables import build_tables

_COLUMNS = "es_index, es_id, event_timestamp, source, es_seq_no, es_primary_term"


def read_ceiling(settings: Settings) -> dict[str, Any]:
    """Page through every event the way a first sync run does, and write nothing."""
    service = SyncService(settings)
    # The service's own plan, so the query, sort and page size cannot drift from the sync's.
    plan = RunScope.build(settings, "incremental", None, None).read_plan(settings, None)  # a first run's
    events = pages = 0
    started = time.perf_counter()
    with PitReader(service.api, plan, service.retry) as reader:
        for hits in reader.pages():
            events += len(hits)
            pages += 1
    seconds = time.perf_counter() - started
    service.close()
    return {"events": events, "pages": pages, "seconds": seconds}


def write_ceiling(settings: Settings, rows_file: Path, index: str, table: str) -> dict[str, Any]:
    """Binary COPY of the rows of `rows_file` into a fresh `table` of the target's definition, one commit per page.

    The fastest way PostgreSQL takes these rows, so the sync cannot beat it: the same binary
    tuples the sync builds (`copy_row`, built before the clock starts), the same column types,
    primary key and indexes, one COPY and one commit per page, and commits that do not wait
    for the disk, as the sync's page commits do not. What the sync adds (the read, the version
    lookup, the lease, the cursor and the run history in the same transaction) can only cost.
    """
    engine = sa.create_engine(settings.database_url.reveal())
    target = build_tables(table).target
    with engine.begin() as connection:
        target.drop(connection, checkfirst=True)
        target.create(connection)
    engine.dispose()
    url = sa.engine.make_url(settings.database_url.reveal()).set(drivername="postgresql")
    events = pages = 0
    seconds = 0.0
    statement = f"COPY {table} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
    with psycopg.connect(url.render_as_string(hide_password=False)) as connection:
        connection.execute("SET synchronous_commit = off")  # once for the session: no statement per page
        connection.commit()
        for page in row_pages(rows_file, index, settings.batch_size):
            data = b"".join((COPY_HEADER, *(copy_row(*row[:6]) for row in page), COPY_TRAILER))
            started = time.perf_counter()
            with connection.cursor() as cursor, cursor.copy(statement) as copy:
                copy.write(data)
            connection.commit()
            seconds += time.perf_counter() - started
            events += len(page)
            pages += 1
    return {"events": events, "pages": pages, "seconds": seconds}
