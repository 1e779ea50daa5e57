"""Partitioned target at scale: `python -m benchmarks.scale` (10,000,000 events over 30 daily partitions).

Not part of `make bench` (it takes hours at full size). Starts a durable PostgreSQL cluster and,
unless `--opensearch-url` names a running node, a single-node OpenSearch; loads EVENTS sample
events spread evenly over DAYS days ending now; then, on a day-partitioned target:

    reference     first load of the first REFERENCE events into a table of its own (the rate to match)
    first load    the whole index, with the process's RSS sampled every 100 pages (flat or not)
    vacuum        VACUUM (ANALYZE) of the table, as a DBA does after a first load (timed, no target)
    incremental   two runs with nothing new; the second (warm pool) is the service's case
    verification  7 days in 1-day buckets
    retention     retention_days = DAYS - 1: the oldest day(s) dropped, timed
    size          PostgreSQL's size of the target (all partitions) before and after the drop

The figures are printed and written as JSON to benchmarks/results/ (not tracked).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks.rss import current_rss_mb
from config import Settings, load_settings
from rtarf_sync.engine.checks.repair import verify_and_repair
from rtarf_sync.engine.runs.retention import Retention
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.sample import load_events
from tests.infra.harness import OpenSearchNode, PostgresCluster
from tests.infra.harness.http import EngineHttp

ROOT = Path(__file__).resolve().parent.parent
INDEX = "rtarf-events-scale"
RSS_EVERY = 100  # pages between RSS samples
# What a DBA sets for a table this size (the reference load runs under them too): checkpoints
# spaced by volume and time rather than every gigabyte of WAL, and the hot indexes in shared memory.
DBA_SETTINGS = {"max_wal_size": "16GB", "checkpoint_timeout": "30min", "shared_buffers": "2GB"}


def say(message: str) -> None:
    """A progress line on stderr."""
    print(f"[scale] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="benchmarks.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="events in the index (default 10,000,000)")
    parser.add_argument("--days", type=int, default=30, help="days they span, one partition each (default 30)")
    parser.add_argument("--reference", type=int, default=200_000, help="events of the reference load (200,000)")
    parser.add_argument("--opensearch-url", help="a running OpenSearch node to use instead of starting one")
    parser.add_argument("--heap-mb", type=int, default=2048, help="heap of the node started (default 2048)")
    return parser.parse_args(argv)


def load_index(engine: EngineHttp, index: str, events: int, start: datetime, spacing_ms: int) -> float:
    """Index the events, spread `spacing_ms` apart from `start`; return the seconds it took."""
    engine.call("DELETE", f"/{index}", ok_missing=True)
    engine.create_index(index)
    engine.call("PUT", f"/{index}/_settings", {"index": {"refresh_interval": "-1", "number_of_replicas": 0}})
    began = time.monotonic()

    def progress(done: int, total: int) -> None:
        if done % 500_000 < 2000 or done == total:
            say(f"indexed {done:,} of {total:,} into {index}")

    load_events(engine.bulk, index, events, batch=2000, progress=progress, start=start, spacing_ms=spacing_ms)
    engine.refresh(index)
    return time.monotonic() - began


def settings_for(database_url: str, engine: EngineHttp, index: str, table: str) -> Settings:
    """Day-partitioned settings reading `index` into `table`."""
    base = load_settings(
        {
            "RTARF_DATABASE_URL": database_url,
            "RTARF_ES_URL": engine.url,
            "RTARF_SOURCE_ENGINE": engine.kind,
            "RTARF_ES_INDEX": index,
            "RTARF_TABLE": table,
            "RTARF_SYNC_SETTLE_SECONDS": "0",
        }
    )
    return dataclasses.replace(base, partition="day")


def first_load(settings: Settings) -> dict[str, Any]:
    """A first sync into a fresh table; its rate and the RSS every RSS_EVERY pages."""
    service = SyncService(settings)
    samples: list[float] = []
    pages = [0]

    def observe(stage: str, seconds: float) -> None:
        if stage == "write":
            pages[0] += 1
            if pages[0] % RSS_EVERY == 0:
                samples.append(round(current_rss_mb(), 1))

    service.add_page_observer(observe)
    try:
        began = time.monotonic()
        result = service.run()
        seconds = time.monotonic() - began
    finally:
        service.close()
    assert result.status == "success", result.error
    return {
        "events": result.inserted,
        "seconds": round(seconds, 2),
        "rate": round(result.inserted / seconds),
        "rss_mb": samples,
    }


def table_size(engine: sa.Engine, table: str) -> int:
    """Bytes of the target and all its partitions, indexes and TOAST included."""
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.text("SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(:t)"),
                {"t": table},
            ).scalar_one()
        )


def measure(args: argparse.Namespace, database_url: str, engine: EngineHttp) -> dict[str, Any]:
    """Every figure of the report."""
    now = datetime.now(timezone.utc)
    start = now - timedelta(days=args.days)
    spacing = max(1, args.days * 86_400_000 // args.events)
    figures: dict[str, Any] = {"events": args.events, "days": args.days, "spacing_ms": spacing}
    if args.events > args.reference:
        # The reference: as many events, as far apart, into a table of its own.
        load_index(engine, f"{INDEX}-ref", args.reference, start, spacing)
        figures["reference"] = first_load(settings_for(database_url, engine, f"{INDEX}-ref", "ev_scale_ref"))
        say(f"reference: {figures['reference']['rate']:,} events/s")
    figures["index_seconds"] = round(load_index(engine, INDEX, args.events, start, spacing), 1)
    settings = settings_for(database_url, engine, INDEX, "ev_scale")
    figures["first_load"] = first_load(settings)
    say(f"first load: {figures['first_load']['rate']:,} events/s")
    figures["reference"] = figures.get("reference", figures["first_load"])
    db = sa.create_engine(database_url)
    figures["size_before_bytes"] = table_size(db, "ev_scale")
    # The DBA's step after a first load (docs/partitions.md): the visibility map set, statistics fresh.
    began = time.monotonic()
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM (ANALYZE) ev_scale")
    figures["vacuum_seconds"] = round(time.monotonic() - began, 1)
    say(f"VACUUM (ANALYZE) after the first load: {figures['vacuum_seconds']} s")
    service = SyncService(settings)
    try:
        service.run()  # pays for the new process's connections
        began = time.monotonic()
        quiet = service.run()
        figures["incremental_seconds"] = round(time.monotonic() - began, 3)
        figures["incremental_unchanged"] = quiet.unchanged
        began = time.monotonic()
        answer = verify_and_repair(service, start=now - timedelta(days=7), end=now, bucket="1d")
        figures["verify_7d_seconds"] = round(time.monotonic() - began, 3)
        figures["verify_in_step"] = answer["in_step"]
    finally:
        service.close()
    dropping = SyncService(dataclasses.replace(settings, retention_days=args.days - 1))
    try:
        began = time.monotonic()
        outcome = Retention(dropping).run()
        figures["retention_seconds"] = round(time.monotonic() - began, 3)
        figures["retention_dropped"] = outcome.dropped
    finally:
        dropping.close()
    figures["size_after_bytes"] = table_size(db, "ev_scale")
    db.dispose()
    return figures


def render(figures: dict[str, Any]) -> str:
    """The report, one line per figure."""
    load, reference = figures["first_load"], figures["reference"]
    rss = load["rss_mb"]
    dropped = figures["retention_dropped"]
    lines = [
        f"{figures['events']:,} events over {figures['days']} daily partitions",
        f"first load            {load['rate']:,} events/s ({load['seconds']:.0f} s); "
        f"reference {reference['events']:,} events: {reference['rate']:,} events/s "
        f"({load['rate'] / reference['rate']:.0%} of it; target: at least 85%)",
        f"RSS every {RSS_EVERY} pages  {', '.join(f'{mb:.0f}' for mb in rss) or 'too few pages'} MB"
        + (f" (min {min(rss):.0f}, max {max(rss):.0f})" if rss else ""),
        f"incremental, no change {figures['incremental_seconds']:.3f} s "
        f"({figures['incremental_unchanged']:,} events re-read unchanged; target: under 1 s)",
        f"verification of 7 days {figures['verify_7d_seconds']:.3f} s, in step: {figures['verify_in_step']} "
        "(target: under 2 s)",
        f"retention drop         {figures['retention_seconds']:.3f} s for {len(dropped)} partition(s), "
        f"{sum(part['rows'] for part in dropped):,} rows (target: one day under 1 s)",
        f"VACUUM (ANALYZE)       {figures['vacuum_seconds']:.1f} s after the first load (the DBA's step, not a target)",
        f"PostgreSQL size        {figures['size_before_bytes'] / 2**20:,.0f} MB before the drop, "
        f"{figures['size_after_bytes'] / 2**20:,.0f} MB after",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the report and keep its figures."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with ExitStack() as stack:
        pg = stack.enter_context(PostgresCluster(durable=True, options=DBA_SETTINGS))
        if args.opensearch_url:
            engine = EngineHttp(args.opensearch_url, "opensearch")
        else:
            node = stack.enter_context(OpenSearchNode(heap_mb=args.heap_mb))
            engine = EngineHttp(node.url, "opensearch")
        try:
            figures = measure(args, pg.create_database("rtarf_scale"), engine)
        finally:
            for index in (INDEX, f"{INDEX}-ref"):
                engine.call("DELETE", f"/{index}", ok_missing=True)
    text = render(figures)
    print(text, flush=True)
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (results / f"{stamp}-scale-n{args.events}.json").write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
