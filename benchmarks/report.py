"""Turning the figures of one benchmark run into the printed report and the README record."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_VS_BASELINE = 10.0
MIN_VS_CEILING = 0.80  # the lower of the two ceilings: for information since the write ceiling is binary COPY
MIN_VS_WRITE = 0.85  # the first load against the write ceiling (binary COPY, the fastest way PostgreSQL takes the rows)
MAX_PYTHON_US = 25.0
MAX_RSS_MB = 250.0
MAX_RSS_GROWTH = 1.2
MIN_TYPED_SHARE = 0.85  # five typed columns against JSON only, same events
START, END = "<!-- results:start -->", "<!-- results:end -->"


@dataclass(frozen=True)
class Target:
    """One target, checked: what it asks, what we got, whether it passes, by how much."""

    name: str
    passed: bool
    got: str
    margin: str

    def line(self) -> str:
        return f"  {'PASS' if self.passed else 'MISS'}  {self.name}: {self.got} ({self.margin})"


def rate(job: dict[str, Any]) -> float:
    """Events per second of a measured job."""
    return float(job["events"]) / max(float(job["seconds"]), 1e-9)


def _row(label: str, job: dict[str, Any], source_bytes: int, rss: bool = True) -> str:
    mb_s = source_bytes / 1e6 / max(float(job["seconds"]), 1e-9)
    peak = f"{job['rss_peak_mb']:10.1f}" if rss else f"{'-':>10}"
    return f"  {label:<34}{job['events']:>9,}{job['seconds']:>9.2f}{rate(job):>11,.0f}{mb_s:>8.1f}{peak}"


def _cpu_row(label: str, job: dict[str, Any]) -> str:
    cpu = job["cpu"]
    total = cpu["python"] + cpu["postgres"] + cpu["opensearch"]
    return (
        f"  {label:<34}{cpu['python']:>8.2f}{cpu['postgres']:>10.2f}{cpu['opensearch']:>12.2f}"
        f"{total:>8.2f}{total / job['events'] * 1e6:>10,.0f}"
    )


def _cpu_table(figures: dict[str, Any]) -> list[str]:
    return [
        f"  {'CPU seconds during the run':<34}{'python':>8}{'postgres':>10}{'opensearch':>12}"
        f"{'total':>8}{'us/event':>10}",
        _cpu_row("sync (ours), full load", figures["ours"]),
        _cpu_row("read ceiling", figures["read"]),
        _cpu_row("write ceiling", figures["write"]),
        *([_cpu_row("  same, commits not waiting", figures["write_async"])] if "write_async" in figures else []),
        *([_cpu_row("read and write ceilings at once", figures["together"])] if "together" in figures else []),
        _cpu_row("write side of ours alone", figures["sink"]),
        _cpu_row("naive baseline", figures["baseline"]),
        _cpu_row("full resync, 10% changed", figures["resync"]),
    ]


def sync_peak(figures: dict[str, Any]) -> float:
    """The highest peak RSS of any process that ran the sync."""
    return float(max(figures[name]["rss_peak_mb"] for name in ("small", "ours", "incremental", "resync")))


def targets(figures: dict[str, Any]) -> list[Target]:
    """Check the targets: the speed issue's, and the share of the read ceiling that full runs keep."""
    ours = rate(figures["ours"])
    vs_baseline = ours / rate(figures["baseline"])
    vs_write = ours / rate(figures["write"])
    peak = sync_peak(figures)
    small, full = figures["small"]["rss_peak_mb"], figures["ours"]["rss_peak_mb"]
    growth = full / small
    return [
        Target(
            f"at least {MIN_VS_BASELINE:.0f}x the naive baseline",
            vs_baseline >= MIN_VS_BASELINE,
            f"{vs_baseline:.1f}x",
            _margin(vs_baseline / MIN_VS_BASELINE - 1),
        ),
        Target(
            f"first load at least {MIN_VS_WRITE:.0%} of the write ceiling (binary COPY)",
            vs_write >= MIN_VS_WRITE,
            f"{vs_write:.0%}",
            f"{(vs_write - MIN_VS_WRITE) * 100:+.0f} points",
        ),
        Target(
            f"peak RSS under {MAX_RSS_MB:.0f} MB",
            peak < MAX_RSS_MB,
            f"{peak:.1f} MB",
            f"{MAX_RSS_MB - peak:.1f} MB to spare" if peak < MAX_RSS_MB else f"over by {peak - MAX_RSS_MB:.1f} MB",
        ),
        Target(
            f"RSS flat in N: RSS({figures['events']:,}) <= {MAX_RSS_GROWTH}x RSS({figures['small_events']:,})",
            growth <= MAX_RSS_GROWTH,
            f"{full:.1f} MB vs {small:.1f} MB, x{growth:.2f}",
            f"{(MAX_RSS_GROWTH - growth) * 100:+.0f} points",
        ),
        Target(
            f"sync's own Python CPU at most {MAX_PYTHON_US:.0f} us per event",
            python_us(figures) <= MAX_PYTHON_US,
            f"{python_us(figures):.1f} us",
            f"{MAX_PYTHON_US - python_us(figures):+.1f} us",
        ),
        *_full_run_targets(figures),
        *_typed_target(figures),
    ]


def _typed_target(figures: dict[str, Any]) -> list[Target]:
    """Five typed columns keep at least MIN_TYPED_SHARE of the JSON-only rate (absent in older figures)."""
    if "typed" not in figures:
        return []
    share = rate(figures["typed"]) / rate(figures["ours"])
    return [
        Target(
            f"five typed columns at least {MIN_TYPED_SHARE:.0%} of the JSON-only rate",
            share >= MIN_TYPED_SHARE,
            f"{share:.0%}",
            f"{(share - MIN_TYPED_SHARE) * 100:+.0f} points",
        )
    ]


def _typed_row(figures: dict[str, Any]) -> list[str]:
    if "typed" not in figures:
        return []
    return [_row("sync (ours), five typed columns", figures["typed"], figures["bytes"]["all"])]


def _typed_share(figures: dict[str, Any]) -> list[str]:
    if "typed" not in figures:
        return []
    share = rate(figures["typed"]) / rate(figures["ours"])
    return [f"  typed columns / JSON only {share:6.0%}   (inet, smallint, text with index, text[], timestamptz)"]


def _together_row(figures: dict[str, Any]) -> list[str]:
    if "together" not in figures:  # a figures file recorded before it existed
        return []
    return [_row("read and write ceilings at once", figures["together"], figures["bytes"]["all"], rss=False)]


def _together_share(figures: dict[str, Any]) -> list[str]:
    """Ours against the fastest any sync can read and write these events on this machine (information)."""
    if "together" not in figures:
        return []
    together = figures["together"]
    return [
        f"  first load / both at once {rate(figures['ours']) / rate(together):6.0%}   (information: reading and "
        f"writing at once reach {rate(together) / rate(figures['write']):.0%} of the write ceiling here)"
    ]


def _async_row(figures: dict[str, Any]) -> list[str]:
    if "write_async" not in figures:  # a figures file recorded before it existed
        return []
    return [_row("  same, commits not waiting (info)", figures["write_async"], figures["bytes"]["all"])]


def _async_share(figures: dict[str, Any]) -> list[str]:
    """Ours against a write ceiling whose page commits, like the sync's, do not wait for the disk."""
    if "write_async" not in figures:
        return []
    share = rate(figures["ours"]) / min(rate(figures["read"]), rate(figures["write_async"]))
    return [
        f"  ours / lower ceiling with commits not waiting for the disk {share:4.0%}   (for information: "
        "the sync's page commits do not wait either)"
    ]


def python_us(figures: dict[str, Any]) -> float:
    """The sync process's CPU seconds (every thread) per event of the full load, in microseconds."""
    ours = figures["ours"]
    return float(ours["cpu"]["python"] / ours["events"] * 1e6)


def _full_run_targets(figures: dict[str, Any]) -> list[Target]:
    if "reread" not in figures.get("reconcile", {}):  # a figures file recorded before these existed
        return []
    from benchmarks.reconcile import (
        RECORDED_REREAD_RATE,
        REREAD_OF_CEILING,
        REREAD_SPEEDUP,
        SLICES,
        TARGET_OF_CEILING,
    )

    full = figures["reconcile"]
    ceiling = rate(full["read"])
    reread = rate(full["reread"]) / ceiling
    speedup = rate(full["reread"]) / RECORDED_REREAD_RATE
    best = max(rate(full[f"slices_{slices}"]) for slices in SLICES) / ceiling
    return [
        Target(
            f"full re-read of unchanged events at least {REREAD_OF_CEILING:.0%} of the read ceiling",
            reread >= REREAD_OF_CEILING,
            f"{reread:.0%}",
            f"{(reread - REREAD_OF_CEILING) * 100:+.0f} points",
        ),
        Target(
            f"full re-read of unchanged events at least {REREAD_SPEEDUP:.0f}x the rate recorded before "
            f"metadata-first reads ({RECORDED_REREAD_RATE:,} events/s at 200,000)",
            speedup >= REREAD_SPEEDUP,
            f"{rate(full['reread']):,.0f} events/s, {speedup:.1f}x",
            _margin(speedup / REREAD_SPEEDUP - 1),
        ),
        Target(
            f"full reconciliation at least {TARGET_OF_CEILING:.0%} of the read ceiling (best of 1 and 4 slices)",
            best >= TARGET_OF_CEILING,
            f"{best:.0%}",
            f"{(best - TARGET_OF_CEILING) * 100:+.0f} points",
        ),
    ]


def _margin(fraction: float) -> str:
    return f"margin {fraction:+.0%}" if fraction >= 0 else f"short by {-fraction:.0%}"


def _machine(m: dict[str, Any]) -> list[str]:
    return [
        f"date      {m['date']}   commit {m['commit']}",
        f"machine   {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']:.1f} GiB RAM, Python {m['python']}",
        f"engines   OpenSearch {m['opensearch']} (heap {m['heap_mb']} MB, 1 shard, refresh_interval -1); "
        f"PostgreSQL {m['postgresql']} ({m['durability']})",
        f"load avg  {m['load_before']} before, {m['load_after']} after (other work on the machine adds noise)",
    ]


def _time_split(figures: dict[str, Any]) -> list[str]:
    n, ours = figures["events"], figures["ours"]
    read_s, write_s, sink_s = (n / rate(figures[name]) for name in ("read", "write", "sink"))
    cpu = ours["cpu"]
    if "together" in figures:
        floor = figures["together"]["seconds"]
        how = f"Both ceilings at once, the floor of any sync here, take {floor:.1f} s; ours is"
        rest = "the sync's own work (turning hits into rows, lease, lookups, cursor, history)."
    else:  # a figures file recorded before both ceilings were measured at once
        floor = max(read_s, sink_s)
        how = f"Reading overlaps writing (one-page prefetch), so the floor is about {floor:.1f} s; ours is"
        rest = "turning hits into rows, sharing the CPUs, noise."
    return [
        f"  where the time goes: ours {ours['seconds']:.1f} s. Alone, reading takes {read_s:.1f} s and the sink's "
        f"writing {sink_s:.1f} s",
        f"    (binary COPY {write_s:.1f} s). {how}",
        f"    {ours['seconds'] - floor:+.1f} s from it: {rest}",
        f"    The run used {sum(cpu.values()):.1f} CPU s on {figures['machine']['cpus']} CPUs (python "
        f"{cpu['python']:.1f}, postgres {cpu['postgres']:.1f}, opensearch {cpu['opensearch']:.1f}).",
    ]


def _tries(figures: dict[str, Any]) -> str:
    spread = "; ".join(
        f"{name} " + ", ".join(f"{seconds:.2f}" for seconds in figures[name]["tries_seconds"])
        for name in ("ours", "typed", "read", "write", "together", "sink")
        if name in figures
    )
    return f"  best of {figures['repeat']} interleaved tries counts; every try in seconds: {spread}"


def _reconcile_lines(figures: dict[str, Any]) -> list[str]:
    if "reconcile" not in figures:  # a figures file recorded before full runs existed
        return []
    from benchmarks.reconcile import lines

    return lines(figures["reconcile"], figures["events"])


def render(figures: dict[str, Any], checks: list[tuple[str, bool]]) -> str:
    """The whole report as printed and recorded."""
    n, b = figures["events"], figures["bytes"]
    incremental, expected = figures["incremental"], figures["incremental_expected"]
    cold, warm = incremental["runs"][0], incremental["runs"][-1]
    resync = figures["resync"]["runs"][0]
    lower = "read" if rate(figures["read"]) <= rate(figures["write"]) else "write"
    lines = [
        *_machine(figures["machine"]),
        f"events    {n:,} sample events, {b['all'] / n:,.0f} bytes of _source JSON each on average "
        f"({b['all'] / 1e6:.1f} MB); page size {figures['page_size']}; MB = 10^6 bytes",
        "",
        f"  {'run':<34}{'events':>9}{'wall s':>9}{'events/s':>11}{'MB/s':>8}{'peak RSS':>10}",
        _row("sync (ours), full load", figures["ours"], b["all"]),
        *_typed_row(figures),
        _row("read ceiling (PIT pages, no write)", figures["read"], b["all"]),
        _row("write ceiling (binary COPY)", figures["write"], b["all"]),
        *_async_row(figures),
        *_together_row(figures),
        _row("write side of ours alone (sink)", figures["sink"], b["all"]),
        _row(f"naive baseline (first {figures['baseline_events']:,} only)", figures["baseline"], b["baseline"]),
        _row(f"sync (ours), first {figures['small_events']:,}", figures["small"], b["small"]),
        _row(f"full resync, {figures['changed']:,} changed", figures["resync"], b["resync"]),
        "",
        *_cpu_table(figures),
        "",
        f"  ours / naive baseline     {rate(figures['ours']) / rate(figures['baseline']):6.1f}x",
        "  ours / lower ceiling      "
        f"{rate(figures['ours']) / min(rate(figures['read']), rate(figures['write'])):6.0%}"
        f"   (lower ceiling: {lower})",
        f"  first load / write ceiling{rate(figures['ours']) / rate(figures['write']):6.0%}"
        "   (binary COPY of the same rows, same table, one commit per page not waiting for the disk)",
        *_async_share(figures),
        *_together_share(figures),
        *_typed_share(figures),
        f"  sync's own Python CPU     {python_us(figures):6.1f} us per event (every thread of the sync process)",
        *_time_split(figures),
        _tries(figures),
        "",
        f"  incremental run, no new events: {cold['seconds'] * 1000:.0f} ms in a new process, "
        f"{warm['seconds'] * 1000:.0f} ms on a second run in the same process (warm pool);",
        f"    it covers the {figures['overlap_seconds']} s overlap window below the cursor: "
        f"{cold['total_processed']} events processed ({expected} expected; the seconds whose fingerprints "
        f"agree are counted, not read), inserted {cold['inserted']}, updated {cold['updated']}, "
        f"unchanged {cold['unchanged']}",
        *_reconcile_lines(figures),
        f"  after {figures['changed']:,} of {n:,} events changed (re-indexed, new _seq_no), cursor reset, "
        f"full re-read: inserted {resync['inserted']:,}, updated {resync['updated']:,}, "
        f"unchanged {resync['unchanged']:,}",
        "",
        "checks",
        *(f"  {'OK  ' if ok else 'FAIL'}  {text}" for text, ok in checks),
        "",
        "targets",
        *(target.line() for target in targets(figures)),
    ]
    return "\n".join(lines)


def record(readme: Path, text: str, command: str) -> None:
    """Put `text` between the result markers of the README (added at the end if missing)."""
    block = f"{START}\nLast recorded run (`{command}`):\n\n```text\n{text}\n```\n{END}"
    current = readme.read_text() if readme.exists() else ""
    if START in current and END in current:
        current = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, current, flags=re.S)
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(current)
