"""What the machine allows on each side, measured without the other side, and on both at once.

Read ceiling: every event through the same client, the same point-in-time
plan (query, sort, page size) and the same reader as the sync, with no
writes. Write ceiling: the same rows written the fastest way PostgreSQL takes
them (binary COPY of tuples built beforehand, one COPY and one commit per
page, commits not waiting for the disk, as the sync's) into an empty table
with the target's own definition (primary key and timestamp index included).
Both at once: the two in processes of their own, started together: the
fastest any sync can read and write these events on this machine.
"""

from __future__ import annotations

import multiprocessing
import time
from contextlib import contextmanager, suppress
from multiprocessing.synchronize import Barrier
from pathlib import Path
from queue import Queue
from threading import BrokenBarrierError
from typing import Any, Iterator

import psycopg
import sqlalchemy as sa

from benchmarks.dataset import row_pages
from config import Settings
from rtarf_sync.engine.runs.plan import RunScope
from rtarf_sync.engine.source.reader import PitReader
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.documents import COPY_HEADER, COPY_TRAILER, EventRow, copy_row
from rtarf_sync.engine.target.tables import build_tables

_COLUMNS = "es_index, es_id, event_timestamp, source, es_seq_no, es_primary_term"


def read_ceiling(settings: Settings, start: Barrier | None = None) -> dict[str, Any]:
    """Page through every event the way a first sync run does, and write nothing.

    With `start`, the clock starts when every party has reached it (both ceilings at once).
    """
    service = SyncService(settings)
    # The service's own plan, so the query, sort and page size cannot drift from the sync's.
    plan = RunScope.build(settings, "incremental", None, None).read_plan(settings, None)  # a first run's
    events = pages = 0
    if start is not None:
        start.wait()
    started, cpu = time.perf_counter(), time.process_time()
    with PitReader(service.api, plan, service.retry) as reader:
        for hits in reader.pages():
            events += len(hits)
            pages += 1
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    service.close()
    return {"events": events, "pages": pages, "seconds": seconds, "cpu_seconds": cpu}


def write_ceiling(settings: Settings, rows_file: Path, index: str, table: str) -> dict[str, Any]:
    """Binary COPY of the rows of `rows_file` into a fresh `table` of the target's definition, one commit per page.

    The fastest way PostgreSQL takes these rows, so the sync cannot beat it: the same binary
    tuples the sync builds (`copy_row`, built before the clock starts), the same column types,
    primary key and indexes, one COPY and one commit per page, and commits that do not wait
    for the disk, as the sync's page commits do not. What the sync adds (the read, the version
    lookup, the lease, the cursor and the run history in the same transaction) can only cost.
    """
    _fresh_table(settings, table)
    events = pages = 0
    seconds = 0.0
    with _copy_session(settings) as connection:
        for page in row_pages(rows_file, index, settings.batch_size):
            data = _page_data(page)
            started = time.perf_counter()
            _copy_page(connection, table, data)
            seconds += time.perf_counter() - started
            events += len(page)
            pages += 1
    return {"events": events, "pages": pages, "seconds": seconds}


def read_and_write_ceiling(settings: Settings, rows_file: Path, index: str, table: str) -> dict[str, Any]:
    """The read ceiling and the write ceiling at the same time, each in a process of its own.

    Nothing a sync does can take less: it must read every event as the read ceiling does and
    write every row as the write ceiling does, and here neither waits for the other, converts
    anything or keeps any bookkeeping, and they share the machine's CPUs with the two engines
    as the sync does. The write side builds all its pages before the clock starts (about the
    events' JSON in memory), so its clock runs without pause. `seconds` runs from the moment
    both sides are ready until the later one is done; the job reports the CPU both used meanwhile.
    """
    context = multiprocessing.get_context("spawn")  # fresh interpreters: nothing of this one's state or GIL
    start, answers = context.Barrier(3), context.Queue()
    sides = [
        context.Process(target=_read_side, args=(settings, start, answers)),
        context.Process(target=_write_side, args=(settings, rows_file, index, table, start, answers)),
    ]
    for side in sides:
        side.start()
    try:
        with suppress(BrokenBarrierError):  # a side failed before the start: its answer says why
            start.wait(timeout=_READY_SECONDS)
        started = time.perf_counter()
        done = dict(answers.get(timeout=_READY_SECONDS) for _ in sides)
        seconds = time.perf_counter() - started
    finally:
        for side in sides:
            side.join(timeout=_READY_SECONDS)
    if failed := [f"{name}: {figures['error']}" for name, figures in done.items() if "error" in figures]:
        raise RuntimeError("; ".join(failed))
    read, write = done["read"], done["write"]
    if read["events"] != write["events"]:
        raise RuntimeError(f"the read side read {read['events']} events, the write side wrote {write['events']}")
    return {
        "events": write["events"],
        "pages": write["pages"],
        "seconds": seconds,
        "read_seconds": read["seconds"],
        "write_seconds": write["seconds"],
        "sides_cpu_seconds": read["cpu_seconds"] + write["cpu_seconds"],
    }


_READY_SECONDS = 600.0  # for a side to start (imports, building pages) and to finish: a broken run fails


def _read_side(settings: Settings, start: Barrier, answers: Queue[tuple[str, dict[str, Any]]]) -> None:
    try:
        answers.put(("read", read_ceiling(settings, start)))
    except Exception as error:  # noqa: BLE001 - the parent must hear of it, not wait for the barrier
        start.abort()
        answers.put(("read", {"error": f"{type(error).__name__}: {error}"}))


def _write_side(
    settings: Settings,
    rows_file: Path,
    index: str,
    table: str,
    start: Barrier,
    answers: Queue[tuple[str, dict[str, Any]]],
) -> None:
    try:
        _fresh_table(settings, table)
        pages, events = [], 0
        for page in row_pages(rows_file, index, settings.batch_size):
            pages.append(_page_data(page))
            events += len(page)
        with _copy_session(settings) as connection:
            start.wait()
            started, cpu = time.perf_counter(), time.process_time()
            for data in pages:
                _copy_page(connection, table, data)
            figures = {"events": events, "pages": len(pages), "seconds": time.perf_counter() - started}
            figures["cpu_seconds"] = time.process_time() - cpu
            # Not left for the jobs after it: every table the database holds makes its next writes slower.
            connection.execute(f"DROP TABLE {table}")
            connection.commit()
        answers.put(("write", figures))
    except Exception as error:  # noqa: BLE001 - the parent must hear of it, not wait for the barrier
        start.abort()
        answers.put(("write", {"error": f"{type(error).__name__}: {error}"}))


def _fresh_table(settings: Settings, table: str) -> None:
    """Drop `table` and create it again, empty, with the target's definition."""
    engine = sa.create_engine(settings.database_url.reveal())
    target = build_tables(table).target
    with engine.begin() as connection:
        target.drop(connection, checkfirst=True)
        target.create(connection)
    engine.dispose()


@contextmanager
def _copy_session(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose commits do not wait for the disk, set once for the session (no statement per page)."""
    url = sa.engine.make_url(settings.database_url.reveal()).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as connection:
        connection.execute("SET synchronous_commit = off")
        connection.commit()
        yield connection


def _page_data(page: list[EventRow]) -> bytes:
    """A page of rows as one binary COPY stream, the very tuples the sync builds."""
    return b"".join((COPY_HEADER, *(copy_row(*row[:6]) for row in page), COPY_TRAILER))


def _copy_page(connection: psycopg.Connection[Any], table: str, data: bytes) -> None:
    """One page: one COPY, one commit."""
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(data)
    connection.commit()
