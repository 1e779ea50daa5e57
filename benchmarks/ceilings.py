"""What the machine allows on each side, measured without the other side.

Read ceiling: every event through the same client, the same point-in-time
plan (query, sort, page size) and the same reader as the sync, with no
writes. Write ceiling: the same rows written with plain COPY (psycopg
`cursor.copy`, one COPY and one commit per page, as the sync commits) into an
empty table with the target's own definition (primary key and timestamp
index included); building the rows is left out of the timing.
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


def write_ceiling(
    settings: Settings, rows_file: Path, index: str, table: str, asynchronous: bool = False
) -> dict[str, Any]:
    """COPY the rows of `rows_file` (id, timestamp, source per line) into a fresh `table`.

    Each page commits and waits for the disk, unless `asynchronous`: then, like the sync's page
    transactions, its commits do not wait (`SET LOCAL synchronous_commit = off`).
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
    with psycopg.connect(url.render_as_string(hide_password=False)) as connection:
        for page in row_pages(rows_file, index, settings.batch_size):
            values = [
                (row.es_index, row.es_id, row.event_timestamp, row.source.decode(), row.seq_no, row.primary_term)
                for row in page
            ]
            started = time.perf_counter()
            with connection.cursor() as cursor:
                if asynchronous:
                    cursor.execute("SET LOCAL synchronous_commit = off")
                with cursor.copy(f"COPY {table} ({_COLUMNS}) FROM STDIN") as copy:
                    copy.set_types(["text", "text", "timestamptz", "text", "int8", "int8"])
                    for value in values:
                        copy.write_row(value)
            connection.commit()
            seconds += time.perf_counter() - started
            events += len(page)
            pages += 1
    return {"events": events, "pages": pages, "seconds": seconds}
