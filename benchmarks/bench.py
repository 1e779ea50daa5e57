"""The benchmark driver: `python -m benchmarks.bench --events N [--record] [--profile]`.

Starts a real OpenSearch node and a durable PostgreSQL cluster (default fsync
and synchronous_commit), loads N sample events, and measures, each in a child
process of its own: the sync at N/4 and at N events, the read and write
ceilings, the naive baseline on a sample, an incremental run with nothing
new, a full reconciliation with 1 and 4 slices, and a full re-read after 10%
of the events changed. It prints the
figures, the checks and the targets; `--record` also writes them into
benchmarks/README.md. Raw figures go to benchmarks/results/ (not tracked).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import reconcile
from benchmarks.cpu import tree_cpu_seconds
from benchmarks.dataset import Dataset, say
from benchmarks.report import record, render, targets
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.sample import BASE_TIME
from tests.infra.harness import OpenSearchNode, PostgresCluster
from tests.infra.harness.http import EngineHttp

ROOT = Path(__file__).resolve().parents[1]
INDEX = "rtarf-events-bench"
OVERLAP_SECONDS = 60


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options; N also comes from the environment variable N (make bench N=...)."""
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events",
        type=int,
        default=int(os.environ.get("N") or 200_000),
        help="events to load and sync (default 200000, or $N)",
    )
    parser.add_argument(
        "--baseline-events",
        type=int,
        default=20_000,
        help="events the naive baseline copies (default 20000; it is slow)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="tries of the full sync and of each ceiling, interleaved; the best counts (default 2)",
    )
    parser.add_argument(
        "--page-size",
        type=int,
        default=1000,
        help="RTARF_SYNC_BATCH_SIZE for the sync and the ceilings (default 1000, the service's)",
    )
    parser.add_argument("--heap-mb", type=int, default=1024, help="OpenSearch heap (default 1024)")
    parser.add_argument("--profile", action="store_true", help="profile a sync even when every target passes")
    parser.add_argument("--record", action="store_true", help="write the report into benchmarks/README.md")
    args = parser.parse_args(argv)
    if args.events < 1000 or args.repeat < 1:
        parser.error("--events must be at least 1000 and --repeat at least 1")
    args.baseline_events = min(args.baseline_events, args.events)
    return args


class Bench:
    """The engines of one run and the jobs measured against them."""

    def __init__(self, pg: PostgresCluster, node: OpenSearchNode, workdir: Path, page_size: int) -> None:
        self.pg, self.node, self.workdir, self.page_size = pg, node, workdir, page_size
        self.db_url = pg.create_database("rtarf_bench")
        self.http = EngineHttp(node.url, "opensearch")
        self.opensearch_version = str(self.http.call("GET", "/")["version"]["number"])

    def env(self, table: str) -> dict[str, str]:
        """The RTARF_ settings every job runs with."""
        return {
            "RTARF_ES_URL": self.node.url,
            "RTARF_SOURCE_ENGINE": "opensearch",
            "RTARF_ES_INDEX": INDEX,
            "RTARF_DATABASE_URL": self.db_url,
            "RTARF_TABLE": table,
            "RTARF_SYNC_SETTLE_SECONDS": "0",
            "RTARF_SYNC_BATCH_SIZE": str(self.page_size),
            "RTARF_SYNC_OVERLAP_SECONDS": str(OVERLAP_SECONDS),
        }

    def sql(self, query: str, *params: Any, database: str = "rtarf_bench") -> Any:
        """Run one statement as the superuser; return the first column of the first row, if any."""
        with psycopg.connect(
            host="127.0.0.1", port=self.pg.port, user="postgres", dbname=database, autocommit=True
        ) as connection:
            cursor = connection.execute(query, params or None)
            if not cursor.description:
                return None
            row = cursor.fetchone()
            assert row is not None  # a statement that answers rows answers one here
            return row[0]

    def measure(self, label: str, job: str, table: str, **spec: Any) -> dict[str, Any]:
        """Run one job in a fresh child process and return its figures."""
        if job in ("sync", "write", "together", "sink", "baseline"):
            self.sql("CHECKPOINT")  # each write job starts with a clean checkpoint, not the last job's debt
        say(f"{label} ...")
        environ = {k: v for k, v in os.environ.items() if not k.startswith("RTARF_")}
        argv = [
            sys.executable,
            "-m",
            "benchmarks.job",
            json.dumps({"job": job, "env": self.env(table), "table": table, **spec}),
        ]
        cpu_before = self.cpu()
        done = subprocess.run(argv, cwd=ROOT, env=environ, capture_output=True, text=True, check=False)
        cpu_after = self.cpu()
        if done.returncode != 0 or not done.stdout.strip():
            raise RuntimeError(f"{label} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        # CPU of the job itself (all its threads, start-up left out) and of each engine meanwhile.
        figures["cpu"] = {
            "python": figures.pop("cpu_seconds"),
            **{name: cpu_after[name] - cpu_before[name] for name in cpu_before},
        }
        for run in figures.get("runs", []):
            if run["status"] != "success":
                raise RuntimeError(f"{label}: sync run {run['status']}: {run.get('error')}")
        say(
            f"{label}: {figures['events']:,} events in {figures['seconds']:.2f} s, "
            f"peak RSS {figures['rss_peak_mb']:.1f} MB"
        )
        return figures

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of PostgreSQL (all its processes) and of OpenSearch."""
        assert self.pg.process is not None and self.node.process is not None
        return {
            "postgres": tree_cpu_seconds(self.pg.process.pid),
            "opensearch": tree_cpu_seconds(self.node.process.pid),
        }

    def window_count(self, cursor: str) -> int:
        """Events at or after `cursor` minus the overlap: what an incremental run covers."""
        since = datetime.fromisoformat(cursor.replace("Z", "+00:00")) - timedelta(seconds=OVERLAP_SECONDS)
        query = {"query": {"range": {"@timestamp": {"gte": engine_time(since)}}}}
        return int(self.http.call("POST", f"/{INDEX}/_count", query)["count"])


def best_of(tries: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest try, with every try's time and the highest peak RSS of them all."""
    best = dict(min(tries, key=lambda figures: figures["seconds"]))
    best["tries_seconds"] = [figures["seconds"] for figures in tries]
    best["rss_peak_mb"] = max(figures["rss_peak_mb"] for figures in tries)
    return best


_FROM_ROWS = (
    ("write", "write ceiling (binary COPY)", "ev_copy_ceiling"),
    ("together", "read and write ceilings at once", "ev_copy_together"),
    ("sink", "write side of the sync alone", "ev_sink_only"),
)


def measure_full(bench: Bench, data: Dataset, f: dict[str, Any], repeat: int) -> str:
    """Ceilings and the full sync, `repeat` times interleaved; return the table the last sync filled."""
    bench.measure("warm-up read, not counted (JIT, caches)", "read", "ev_unused")
    tries: dict[str, list[dict[str, Any]]] = {
        "read": [],
        "write": [],
        "together": [],
        "sink": [],
        "ours": [],
        "typed": [],
    }
    for number in range(1, repeat + 1):
        tag = f"try {number} of {repeat}"
        tries["read"].append(bench.measure(f"read ceiling, {tag}", "read", "ev_unused"))
        # The jobs that write the rows kept aside while loading, each into a fresh table of its own.
        for job, label, table in _FROM_ROWS:
            tries[job].append(bench.measure(f"{label}, {tag}", job, table, rows_file=str(data.rows_file), index=INDEX))
        if number > 1:
            bench.sql(f"DROP TABLE ev_full_{number - 1}")
        tries["ours"].append(
            bench.measure(f"sync (ours) of {f['events']:,} events, {tag}", "sync", f"ev_full_{number}")
        )
        # The same events with five typed columns beside `source` (benchmarks/bench_columns.py).
        bench.sql(f"DROP TABLE IF EXISTS ev_typed_{number - 1}")
        tries["typed"].append(
            bench.measure(
                f"sync (ours) with five typed columns, {tag}", "sync", f"ev_typed_{number}", typed_columns=True
            )
        )
    for name, figures in tries.items():
        f[name] = best_of(figures)
    return f"ev_full_{repeat}"


def measure_all(bench: Bench, args: argparse.Namespace) -> tuple[dict[str, Any], list[tuple[str, bool]]]:
    """Load the events and run every measured job; return the figures and the checks."""
    n, small, k = args.events, args.events // 4, args.baseline_events
    data = Dataset(bench.http, INDEX, bench.workdir / "rows.tsv")
    data.create()
    data.load(small)
    f: dict[str, Any] = {
        "events": n,
        "small_events": small,
        "baseline_events": k,
        "page_size": args.page_size,
        "overlap_seconds": OVERLAP_SECONDS,
        "repeat": args.repeat,
    }
    f["small"] = bench.measure(f"sync (ours) of the first {small:,} events", "sync", "ev_small")
    data.load(n - small)
    full = measure_full(bench, data, f, args.repeat)
    f["typed_rows"] = bench.sql(
        f"SELECT count(*) FROM ev_typed_{args.repeat} WHERE source_ip IS NOT NULL AND severity IS NOT NULL "
        "AND rule_name IS NOT NULL AND tags IS NOT NULL AND seen_at IS NOT NULL"
    )
    rows = bench.sql(f"SELECT count(*) FROM {full}")
    objects = bench.sql(f"SELECT count(*) FROM {full} WHERE jsonb_typeof(source) = 'object'")
    f["incremental"] = bench.measure("incremental runs with no new events", "sync", full, runs=2)
    f["incremental_expected"] = bench.window_count(f["ours"]["runs"][0]["cursor"])
    f["reconcile"] = reconcile.measure(bench, full, read=f["read"])
    before = engine_time(BASE_TIME + timedelta(seconds=k))  # events 0..k-1 are stamped before this instant
    f["baseline"] = bench.measure(f"naive baseline on {k:,} events", "baseline", "ev_naive", before=before)
    naive_rows = bench.sql("SELECT count(*) FROM ev_naive")
    f["bytes"] = {"all": data.source_bytes(), "small": data.source_bytes(small), "baseline": data.source_bytes(k)}
    say("re-indexing every 10th event with changed content ...")
    f["changed"] = data.change(every=10)
    f["bytes"]["resync"] = data.source_bytes()
    bench.sql("DELETE FROM rtarf_sync_cursor WHERE target_table = %s", full)
    f["resync"] = bench.measure(f"full re-read after {f['changed']:,} changed", "sync", full)
    return f, _checks(f, rows, objects, naive_rows) + reconcile.checks(f["reconcile"], n)[:1]


def _checks(f: dict[str, Any], rows: int, objects: int, naive_rows: int) -> list[tuple[str, bool]]:
    n, small, changed = f["events"], f["small_events"], f["changed"]
    first, cold = f["ours"]["runs"][0], f["incremental"]["runs"]
    resync = f["resync"]["runs"][0]
    return [
        (
            f"first {small:,}: inserted {f['small']['runs'][0]['inserted']:,} of {small:,}",
            f["small"]["runs"][0]["inserted"] == small,
        ),
        (
            f"full load: inserted {first['inserted']:,}, {rows:,} rows in PostgreSQL, {objects:,} with a JSON "
            f"object as source, {first['failed']} set aside",
            first["inserted"] == rows == objects == n,
        ),
        (
            f"read ceiling read {f['read']['events']:,}, write ceiling wrote {f['write']['events']:,}, "
            f"the sink alone inserted {f['sink']['inserted']:,}",
            f["read"]["events"] == f["write"]["events"] == f["sink"]["inserted"] == n,
        ),
        (
            f"typed columns: inserted {f['typed']['runs'][0]['inserted']:,}, {f['typed_rows']:,} rows with all "
            "five columns set",
            f["typed"]["runs"][0]["inserted"] == f["typed_rows"] == n,
        ),
        (
            f"naive baseline copied {f['baseline']['events']:,} events, {naive_rows:,} rows",
            f["baseline"]["events"] == naive_rows == f["baseline_events"],
        ),
        (
            "incremental runs: 0 inserted, 0 updated, unchanged = events in the overlap window "
            f"({f['incremental_expected']})",
            all(r["inserted"] == r["updated"] == 0 and r["unchanged"] == f["incremental_expected"] for r in cold),
        ),
        (
            f"after the change: inserted {resync['inserted']} (0), updated {resync['updated']:,} ({changed:,}), "
            f"unchanged {resync['unchanged']:,} ({n - changed:,})",
            (resync["inserted"], resync["updated"], resync["unchanged"]) == (0, changed, n - changed),
        ),
    ]


def machine(bench: Bench, heap_mb: int, load_before: str) -> dict[str, Any]:
    """Where and on what the run happened."""

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "rtarf_sync", "config", "benchmarks", ":!benchmarks/README.md")
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    settings = bench.sql(
        "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings "
        "WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes')"
    )
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else ""),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": mem_kb / 2**20,
        "python": platform.python_version(),
        "heap_mb": heap_mb,
        "opensearch": bench.opensearch_version,
        "postgresql": bench.sql("SHOW server_version").split()[0],
        "durability": f"durable: {settings}",
        "load_before": load_before,
        "load_after": _load(),
    }


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    """Run the whole benchmark and print its report; 1 when a check fails, 0 otherwise."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started, load_before = time.monotonic(), _load()
    with (
        tempfile.TemporaryDirectory(prefix="rtarf-bench-") as tmp,
        PostgresCluster(durable=True) as pg,
        OpenSearchNode(heap_mb=args.heap_mb) as node,
    ):
        bench = Bench(pg, node, Path(tmp), args.page_size)
        try:
            figures, checks = measure_all(bench, args)
            figures["machine"] = machine(bench, args.heap_mb, load_before)
            if args.profile or not all(target.passed for target in targets(figures)):
                figures["profile"] = bench.measure("profiled sync (cProfile)", "sync", "ev_profile", profile=True)
        except BaseException:
            assert node.process is not None
            say(f"failed; OpenSearch exit status {node.process.poll()}, log tail:\n{node.log_tail()}")
            raise
    text = render(figures, checks)
    if "profile" in figures:
        text += (
            "\n\nprofile of a full sync under cProfile (it slows the run; "
            f"{figures['profile']['seconds']:.1f} s here)\n" + figures["profile"]["profile"]
        )
    print(text, flush=True)
    say(f"benchmark finished in {time.monotonic() - started:.0f} s")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (results / f"{stamp}-n{args.events}.json").write_text(json.dumps(figures, indent=1, default=str))
    if args.record:
        record(ROOT / "benchmarks" / "README.md", text, f"scripts/bench.sh --events {args.events}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
