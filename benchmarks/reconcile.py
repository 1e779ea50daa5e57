"""A full re-read and a full reconciliation of N unchanged events, against the read ceiling.

    python -m benchmarks.reconcile --events N      (standalone: its own engines and data)

`make bench` runs the same measurement inside the main benchmark, on its table of
N events after the incremental runs (`measure` and `lines`). A full run reads
every event again and finds every version unchanged (no write). The re-read
alone (`RTARF_DELETE_MODE=off`) is what an unchanged event costs; a
reconciliation (with 1 and 4 slices) also records the keys it read and
reconciles deletes (none here). The targets are shares of the read ceiling
measured in the same run: 100% for the re-read (metadata-first reads ship no
`_source` for unchanged events, the ceiling ships them all), 60% for a
reconciliation; and the re-read at twice the rate recorded before them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.dataset import Dataset, say
from benchmarks.report import rate

if TYPE_CHECKING:
    from benchmarks.bench import Bench

TARGET_OF_CEILING = 0.60
# Metadata-first reads ship no `_source` for unchanged events, so a re-read beats a read that ships them all.
REREAD_OF_CEILING = 1.00
# The full re-read of 200,000 unchanged events before metadata-first reads (README, recorded runs): 50,193
# events/s. Issue 23 asks for twice that; comparable only at N=200,000 on the recorded machine.
RECORDED_REREAD_RATE = 50_193
REREAD_SPEEDUP = 2.0
SLICES = (1, 4)


def measure(bench: Bench, table: str, read: dict[str, Any] | None = None) -> dict[str, Any]:
    """Full runs over `table` (already in step) with 1 and 4 slices; the read ceiling unless given."""
    figures: dict[str, Any] = {"read": read or bench.measure("read ceiling", "read", "ev_unused")}
    figures["reread"] = bench.measure(
        "full re-read of unchanged events, no reconciliation",
        "sync",
        table,
        mode="full",
        extra_env={"RTARF_DELETE_MODE": "off"},
    )
    for slices in SLICES:
        figures[f"slices_{slices}"] = bench.measure(
            f"full reconciliation, {slices} slice{'s' if slices > 1 else ''}",
            "sync",
            table,
            mode="full",
            extra_env={"RTARF_SYNC_SLICES": str(slices)},
        )
    return figures


def lines(figures: dict[str, Any], events: int) -> list[str]:
    """The report's lines for the reconciliation, with its check."""
    ceiling = rate(figures["read"])
    reread = figures["reread"]
    out = [
        f"  full re-read of {events:,} unchanged events, no reconciliation: {reread['seconds']:6.2f} s, "
        f"{rate(reread):9,.0f} events/s, {rate(reread) / ceiling:4.0%} of the read ceiling, "
        f"{rate(reread) / RECORDED_REREAD_RATE:.1f}x the rate recorded before metadata-first reads "
        f"({RECORDED_REREAD_RATE:,} events/s); unchanged "
        f"{reread['runs'][0]['unchanged']:,}, Python CPU {_micros(reread):.1f} us/event",
        f"  full reconciliation of {events:,} unchanged events (read ceiling {ceiling:,.0f} events/s in this run):",
    ]
    for slices in SLICES:
        job = figures[f"slices_{slices}"]
        run = job["runs"][0]
        out.append(
            f"    {slices} slice{'s' if slices > 1 else ' '}: {job['seconds']:6.2f} s, "
            f"{rate(job):9,.0f} events/s, "
            f"{rate(job) / ceiling:4.0%} of the read ceiling; unchanged {run['unchanged']:,}, "
            f"deleted {run['deleted']}, peak RSS {job['rss_peak_mb']:.1f} MB"
        )
    return out


def _micros(job: dict[str, Any]) -> float:
    """Python CPU of the sync process per event read."""
    return float(job["cpu"]["python"] / max(job["events"], 1) * 1e6)


def checks(figures: dict[str, Any], events: int) -> list[tuple[str, bool]]:
    """Every reconciliation read all events, changed none and deleted none."""
    runs = [figures[name]["runs"][0] for name in ("reread", *(f"slices_{slices}" for slices in SLICES))]
    best = max(rate(figures[f"slices_{slices}"]) for slices in SLICES) / rate(figures["read"])
    reread = rate(figures["reread"]) / rate(figures["read"])
    return [
        (
            f"full re-read and reconciliations: unchanged {[r['unchanged'] for r in runs]} of {events:,}, "
            f"deleted {[r['deleted'] for r in runs]}",
            all(r["unchanged"] == events and r["deleted"] == 0 and r["inserted"] == r["updated"] == 0 for r in runs),
        ),
        (
            f"full re-read of unchanged events at least {REREAD_OF_CEILING:.0%} of the read ceiling: {reread:.0%}",
            reread >= REREAD_OF_CEILING,
        ),
        (
            f"full reconciliation at least {TARGET_OF_CEILING:.0%} of the read ceiling: best {best:.0%}",
            best >= TARGET_OF_CEILING,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Start the engines, load N events, sync them once, then measure; print the report."""
    from benchmarks.bench import INDEX, Bench
    from tests.infra.harness import OpenSearchNode, PostgresCluster

    parser = argparse.ArgumentParser(prog="benchmarks.reconcile", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=int(os.environ.get("N") or 50_000))
    parser.add_argument("--heap-mb", type=int, default=1024)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="rtarf-bench-") as tmp,
        PostgresCluster(durable=True) as pg,
        OpenSearchNode(heap_mb=args.heap_mb) as node,
    ):
        bench = Bench(pg, node, Path(tmp), 1000)
        data = Dataset(bench.http, INDEX, bench.workdir / "rows.tsv")
        data.create()
        data.load(args.events)
        bench.measure(f"first sync of {args.events:,} events", "sync", "ev_reconcile")
        bench.measure("warm-up read, not counted (JIT, caches)", "read", "ev_unused")
        figures = measure(bench, "ev_reconcile")
    print("\n".join(lines(figures, args.events)))
    results = checks(figures, args.events)
    print("\n".join(f"  {'OK  ' if ok else 'FAIL'}  {text}" for text, ok in results), flush=True)
    say("figures are indicative: the machine is shared with other work")
    return 0 if all(ok for _, ok in results[:1]) else 1


if __name__ == "__main__":
    sys.exit(main())
