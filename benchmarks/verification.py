"""Verification and self-repair figures: `python -m benchmarks.verification --events N [--record]`.

Starts a real OpenSearch node and a durable PostgreSQL cluster, loads N sample
events (one per second from 2025-11-14T00:00Z), syncs them, then measures:

- a verification of the whole data range by hour and by day (`Verifier.check`: the
  lease, one date_histogram aggregation, one SQL query, the stored result), best of
  `--repeat`, with the engine side and the database side timed on their own;
- 1,000 late events (new ids stamped inside one day bucket, below the cursor) then a
  verification that finds them, and `verify_and_repair` with 1d buckets: the range
  run over that day, and the verification after it.

The targets: a verification of 200,000 events under 2 s, and verify + repair of
the day bucket holding 1,000 late events under 1 s. `--record` writes the
report into benchmarks/README.md between the verification markers.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Callable

from benchmarks.dataset import Dataset
from config import load_settings
from rtarf_sync.engine.checks.repair import verify_and_repair
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.checks.verify import Verifier, Window, source_counts, target_counts
from rtarf_sync.engine.source.index_scope import resolve_scope
from rtarf_sync.sample import BASE_TIME, bulk_payload, make_event
from tests.infra.harness import OpenSearchNode, PostgresCluster
from tests.infra.harness.http import EngineHttp

ROOT = Path(__file__).resolve().parents[1]
INDEX = "rtarf-events-bench"
LATE = 1000
TARGET_SECONDS = 2.0
REPAIR_TARGET_SECONDS = 1.0  # verify + repair + verify of one day bucket after LATE late events


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks.verification", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=int(os.environ.get("N") or 200_000))
    parser.add_argument("--repeat", type=int, default=3, help="tries of each verification; the best counts")
    parser.add_argument("--heap-mb", type=int, default=1024, help="OpenSearch heap (default 1024)")
    parser.add_argument("--record", action="store_true", help="write the report into benchmarks/README.md")
    return parser.parse_args(argv)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def best(call: Callable[[], Any], repeat: int) -> tuple[float, list[float], Any]:
    """The fastest of `repeat` tries, every try's seconds, and the last value."""
    tries, value = [], None
    for _ in range(repeat):
        seconds, value = timed(call)
        tries.append(seconds)
    return min(tries), tries, value


def measure(service: SyncService, http: EngineHttp, n: int, repeat: int) -> dict[str, Any]:
    """Every figure of the report, and its checks."""
    f: dict[str, Any] = {"events": n}
    s = service.settings
    f["sync_seconds"], first = timed(service.run)
    assert first.ok and first.inserted == n, first.to_dict()
    verifier = Verifier(service)
    scope = resolve_scope(service.api, s, service.retry)  # the indices the setting names (index_scope.py)
    end = BASE_TIME + timedelta(seconds=n + 86_400)
    for bucket in ("1h", "1d"):
        window = Window(BASE_TIME, end, bucket)
        seconds, tries, verification = best(partial(verifier.check, window), repeat)
        engine_side, _ = timed(partial(source_counts, service.api, s.es_index, s.cursor_field, window))
        with service.engine.connect() as connection:
            database_side, _ = timed(partial(target_counts, connection, service.tables, window, scope))
        f[bucket] = {
            "seconds": seconds,
            "tries": tries,
            "engine": engine_side,
            "database": database_side,
            "in_step": verification.in_step,
            "source": sum(verification.source.values()),
            "target": sum(verification.target.values()),
            "buckets": len(verification.source),
        }
    day = BASE_TIME + timedelta(days=1)
    late = [make_event(number, seed=7, start=day + timedelta(hours=1)) for number in range(LATE)]
    http.bulk(bulk_payload(INDEX, late))
    http.refresh(INDEX)
    f["drift_seconds"], drift = timed(lambda: verifier.check(Window(BASE_TIME, end, "1d")))
    f["drift"] = [d.to_dict() for d in drift.differing]
    f["repair_seconds"], answer = timed(
        lambda: verify_and_repair(service, start=BASE_TIME, end=end, bucket="1d", repair_drift=True, trigger="bench")
    )
    f["repaired"] = answer["repaired"]
    f["after_repair"] = answer["after_repair"]
    return f


def checks(f: dict[str, Any]) -> list[tuple[str, bool]]:
    n, runs = f["events"], f["repaired"]
    return [
        (
            f"verification by hour and by day: {n:,} documents, {n:,} live rows, in step",
            all(f[b]["in_step"] and f[b]["source"] == f[b]["target"] == n for b in ("1h", "1d")),
        ),
        (
            f"{LATE:,} late events found in exactly one day bucket",
            len(f["drift"]) == 1 and f["drift"][0]["source"] - f["drift"][0]["target"] == LATE,
        ),
        (
            f"one range run repaired them (inserted {sum(r['inserted'] for r in runs):,}) "
            "and the window is in step again",
            len(runs) == 1
            and runs[0]["mode"] == "range"
            and runs[0]["inserted"] == LATE
            and f["after_repair"]["in_step"],
        ),
    ]


def render(f: dict[str, Any], machine: str) -> str:
    """The report as text."""
    run = f["repaired"][0]
    lines = [
        machine,
        f"events    {f['events']:,} sample events, one per second; synced once in "
        f"{f['sync_seconds']:.1f} s before the measurements",
        "",
        "  verification of the whole range     buckets   wall s   engine side   database side   tries",
    ]
    for bucket in ("1h", "1d"):
        b = f[bucket]
        lines.append(
            f"  by {bucket}                          {b['buckets']:>9,}   {b['seconds']:6.3f}   "
            f"{b['engine']:9.3f} s   {b['database']:11.3f} s   " + ", ".join(f"{t:.3f}" for t in b["tries"])
        )
    lines += [
        "",
        f"  {LATE:,} late events in one day bucket (below the cursor):",
        f"    verification that finds them          {f['drift_seconds']:.3f} s",
        f"    verify + repair + verify again        {f['repair_seconds']:.3f} s",
        f"    the range run over the day bucket     {run['duration_seconds']:.3f} s "
        f"({run['total_processed']:,} read: {run['inserted']:,} inserted, {run['unchanged']:,} unchanged)",
        "",
        "checks",
    ]
    lines += [f"  {'OK  ' if ok else 'FAIL'}  {text}" for text, ok in checks(f)]
    slowest = max(f["1h"]["seconds"], f["1d"]["seconds"])
    lines += [
        "",
        "target",
        f"  {'PASS' if slowest < TARGET_SECONDS else 'MISS'}  a verification of "
        f"{f['events']:,} events under {TARGET_SECONDS:.0f} s: {slowest:.3f} s",
        f"  {'PASS' if f['repair_seconds'] < REPAIR_TARGET_SECONDS else 'MISS'}  verification + repair of one day "
        f"bucket after {LATE:,} late events under {REPAIR_TARGET_SECONDS:.0f} s: {f['repair_seconds']:.3f} s",
    ]
    return "\n".join(lines)


def record(text: str, argv: str) -> None:
    """Replace the block between the verification markers of benchmarks/README.md."""
    readme = ROOT / "benchmarks" / "README.md"
    block = (
        f"<!-- verification:start -->\nLast recorded run (`{argv}`):\n\n```text\n{text}\n```\n<!-- verification:end -->"
    )
    content = readme.read_text()
    pattern = re.compile(r"<!-- verification:start -->.*?<!-- verification:end -->", re.S)
    content = pattern.sub(lambda _: block, content) if pattern.search(content) else content + "\n" + block + "\n"
    readme.write_text(content)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    load_before = " ".join(f"{value:.2f}" for value in os.getloadavg())
    with (
        tempfile.TemporaryDirectory(prefix="rtarf-bench-verify-") as tmp,
        PostgresCluster(durable=True) as pg,
        OpenSearchNode(heap_mb=args.heap_mb) as node,
    ):
        http = EngineHttp(node.url, "opensearch")
        data = Dataset(http, INDEX, Path(tmp) / "rows.tsv")
        data.create()
        data.load(args.events)
        settings = load_settings(
            {
                "RTARF_ES_URL": node.url,
                "RTARF_SOURCE_ENGINE": "opensearch",
                "RTARF_ES_INDEX": INDEX,
                "RTARF_DATABASE_URL": pg.create_database("rtarf_bench"),
                "RTARF_TABLE": "ev_verify",
                "RTARF_SYNC_SETTLE_SECONDS": "0",
            }
        )
        service = SyncService(settings)
        try:
            figures = measure(service, http, args.events, args.repeat)
        finally:
            service.close()
        version = http.call("GET", "/")["version"]["number"]
    load_after = " ".join(f"{value:.2f}" for value in os.getloadavg())
    machine = (
        f"date      {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
        f"machine   {os.cpu_count()} CPUs, shared with other work: load avg {load_before} before, "
        f"{load_after} after; the figures are indicative\n"
        f"engines   OpenSearch {version} (1 shard); PostgreSQL durable (fsync on)"
    )
    text = render(figures, machine)
    print(text, flush=True)
    if args.record:
        record(text, f"python -m benchmarks.verification --events {args.events}")
    return 0 if all(ok for _, ok in checks(figures)) else 1


if __name__ == "__main__":
    sys.exit(main())
