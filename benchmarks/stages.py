"""Where the sync's Python time goes: each stage of a run alone, on one thread, in CPU microseconds per event.

    python -m benchmarks.stages --events N

Loads N sample events into its own OpenSearch node and PostgreSQL cluster,
then runs the stages of a sync one after another in this process, timing each
with the thread's CPU clock (so waiting for the engines is not counted):

- read: the reader's requests, the transport and the typed decoding of every page;
- convert: hits into rows, without and with their binary COPY tuples;
- a few parts of converting, one at a time (copying the raw `_source`, the
  cursor field, the date, the NUL check, the COPY tuple);
- write: `PostgresSink.write_page` for every page into an empty table (all new),
  then the same pages again (all unchanged), then the same pages unconverted
  through `write_hits` (what a re-read pays: a key-and-version lookup).

In a real run these stages overlap on three threads (reading and converting on
one, writing on another, the lease keeper on a third) and the engines use the
other core; their sum is close to the sync process's CPU per event that
`make bench` prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks.dataset import Dataset, say
from config import load_settings
from rtarf_sync.engine.target.documents import (
    CursorField,
    EventRow,
    PageConverter,
    convert_page,
    copy_row,
    parse_instant,
)
from rtarf_sync.engine.hits import AnyHit, Hit
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.plan import RunScope
from rtarf_sync.engine.source.reader import PitReader
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.tables import create_tables


def _micros(events: int, work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.thread_time()
    out = work()
    return (time.thread_time() - started) / events * 1e6, out


def measure(settings: Any, events: int) -> list[tuple[str, float]]:
    """CPU microseconds per event of each stage."""
    service = SyncService(settings)
    plan = RunScope.build(settings, "incremental", None, None).read_plan(settings, None)

    def read() -> list[Sequence[AnyHit]]:
        with PitReader(service.api, plan, service.retry) as reader:
            return list(reader.pages())

    read()  # warm the engine's caches and the client's connections
    figures = []
    micros, pages = _micros(events, read)
    figures.append(("read: requests, transport, typed decoding", micros))
    cursor = CursorField(settings.cursor_field)
    limit = settings.max_document_bytes

    def per_page(part: Callable[[Any], Any], prepare: Callable[[list[Hit]], Any] = lambda page: page) -> float:
        """CPU per event of `part`, page by page as a run does it; its input is prepared outside the clock."""
        spent = 0.0
        for page in pages:
            given = prepare(page)
            started = time.thread_time()
            part(given)
            spent += time.thread_time() - started
        return spent / events * 1e6

    def sources(page: list[Hit]) -> list[bytes]:
        return [bytes(hit._source) for hit in page]  # noqa: SLF001 - the engine's field names

    def values(page: list[Hit]) -> list[Any]:
        return [cursor.value(source) for source in sources(page)]

    def rows(page: list[Hit]) -> list[EventRow]:
        return convert_page(page, cursor, limit)[0]

    figures.append(("convert: hits into rows", per_page(lambda page: convert_page(page, cursor, limit))))
    figures.append(
        (
            "convert: hits into rows with COPY tuples",
            per_page(lambda page: convert_page(page, cursor, limit, prepare_copy=True)),
        )
    )
    figures.append(("  of which: copying the raw _source", per_page(sources)))
    figures.append(
        (
            "  of which: the cursor field from the raw _source",
            per_page(lambda given: [cursor.value(source) for source in given], sources),
        )
    )
    figures.append(("  of which: parsing the date", per_page(lambda given: [parse_instant(v) for v in given], values)))
    figures.append(("  of which: the NUL check", per_page(lambda given: [b"\\u0000" in s for s in given], sources)))
    figures.append(
        ("  of which: the binary COPY tuple", per_page(lambda given: [copy_row(*row[:6]) for row in given], rows))
    )
    converted = [convert_page(page, cursor, limit, prepare_copy=True) for page in pages]
    create_tables(service.engine, service.tables)
    with service.engine.begin() as connection:
        fence = service.lease.acquire(connection, "stages")
    assert isinstance(fence, Fence), "the lease is held by another process"
    run_id = service.history.start("bench", "stages", datetime.now(timezone.utc))
    for label in ("write: converted pages of new documents", "write: the same pages again, unchanged"):

        def write() -> None:
            for number, (page_rows, rejects) in enumerate(converted, start=1):
                service.sink.write_page(page_rows, rejects, fence, run_id, number)

        figures.append((label, _micros(events, write)[0]))
    later = PageConverter(settings.cursor_field, limit)

    def deferred() -> None:
        for number, page in enumerate(pages, start=len(pages) + 1):
            service.sink.write_hits(page, later.convert_hits, fence, run_id, number)

    figures.append(("write: the same pages deferred, unchanged (lookup first)", _micros(events, deferred)[0]))
    service.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench import INDEX, Bench
    from tests.infra.harness import OpenSearchNode, PostgresCluster

    parser = argparse.ArgumentParser(prog="benchmarks.stages", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=int(os.environ.get("N") or 100_000))
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="rtarf-bench-") as tmp,
        PostgresCluster(durable=True) as pg,
        OpenSearchNode(heap_mb=1024) as node,
    ):
        bench = Bench(pg, node, Path(tmp), 1000)
        data = Dataset(bench.http, INDEX, bench.workdir / "rows.tsv")
        data.create()
        data.load(args.events)
        figures = measure(load_settings(bench.env("ev_stages")), args.events)
    print(f"  {'stage, alone on one thread':<60}{'CPU us/event':>13}")
    for label, micros in figures:
        print(f"  {label:<60}{micros:>13.2f}")
    say("thread CPU time: waiting for OpenSearch or PostgreSQL is not counted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
