"""One measured job in a process of its own: `python -m benchmarks.job '<spec as JSON>'`.

The spec names the job (`sync`, `read`, `write`, `together`, `sink` or `baseline`) and carries
the RTARF_ variables it runs with. The job prints one JSON line on stdout:
its figures, and the peak RSS of this process, which holds nothing but the
job. Warnings and errors go to stderr.
"""

from __future__ import annotations

import cProfile
import dataclasses
import io
import json
import logging
import pstats
import site
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.baseline import naive_sync
from benchmarks.bench_columns import BENCH_COLUMNS
from benchmarks.ceilings import read_and_write_ceiling, read_ceiling, write_ceiling
from benchmarks.rss import current_rss_mb, peak_rss_mb
from benchmarks.writeside import sink_only
from config import Settings, load_settings
from rtarf_sync.engine.runs.sync import SyncService

ROOT = Path(__file__).resolve().parents[1]


def profile_text(profiler: cProfile.Profile, top: int = 15) -> str:
    """The top functions by cumulative and by own time, with short paths."""
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    for prefix in [*site.getsitepackages(), str(ROOT)]:
        text = text.replace(prefix + "/", "")
    return "\n".join(
        line
        for line in text.splitlines()
        if line.strip() and "function calls" not in line and not line.startswith(("Ordered by", "List reduced"))
    )


def sync(settings: Settings, spec: dict[str, Any]) -> dict[str, Any]:
    """Run the real SyncService `runs` times in this process (the second run finds a warm pool)."""
    service = SyncService(settings)
    profiler = cProfile.Profile() if spec.get("profile") else None
    runs = []
    for _ in range(int(spec.get("runs", 1))):
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = service.run("bench", mode=spec.get("mode", "incremental"))
        if profiler is not None:
            profiler.disable()
        runs.append({**result.to_dict(), "seconds": time.perf_counter() - started})
    service.close()
    out: dict[str, Any] = {"runs": runs, "events": runs[0]["total_processed"], "seconds": runs[0]["seconds"]}
    if profiler is not None:
        out["profile"] = profile_text(profiler)
    return out


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Dispatch one job."""
    settings = load_settings({**spec["env"], **spec.get("extra_env", {})})
    if spec.get("typed_columns"):
        settings = dataclasses.replace(settings, columns=BENCH_COLUMNS)
    job = spec["job"]
    if job == "sync":
        return sync(settings, spec)
    if job == "read":
        return read_ceiling(settings)
    if job == "write":
        return write_ceiling(settings, Path(spec["rows_file"]), spec["index"], spec["table"])
    if job == "together":
        return read_and_write_ceiling(settings, Path(spec["rows_file"]), spec["index"], spec["table"])
    if job == "sink":
        return sink_only(settings, Path(spec["rows_file"]), spec["index"], spec["table"])
    if job == "baseline":
        return naive_sync(settings, spec["table"], spec["before"])
    raise SystemExit(f"unknown job {job!r}")


def main() -> None:
    """Run the job given on the command line and print its figures as JSON."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    spec = json.loads(sys.argv[1])
    rss_start, cpu_start = current_rss_mb(), time.process_time()
    figures = run(spec)
    # Both ceilings at once run in two processes of their own: their CPU is what they report.
    cpu_seconds = figures.pop("sides_cpu_seconds", None)
    figures.update(
        job=spec["job"],
        rss_start_mb=rss_start,
        rss_peak_mb=peak_rss_mb(),
        cpu_seconds=time.process_time() - cpu_start if cpu_seconds is None else cpu_seconds,
    )
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
