"""`make demo`: the service doing its main job on this machine, with no Docker.

Starts a throwaway PostgreSQL and a single-node OpenSearch (the same machinery
as the tests), loads sample RTARF events, runs the service under gunicorn with
a short interval, then keeps adding new events and shows them arriving in
PostgreSQL. Two pipelines read the same index: `default` copies every event
as JSON, `alerts` keeps the high-severity ones with typed columns (see the SQL
query it prints). Ctrl-C (or --duration) stops everything it started.

    scripts/demo.sh                    # until Ctrl-C
    scripts/demo.sh --duration 60      # bounded, then checks PostgreSQL caught up
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make the project importable

from rtarf_sync.cli.progress import ProgressLine  # noqa: E402 - importable after sys.path above
from rtarf_sync.sample import load_events  # noqa: E402 - importable after sys.path above
from tests.infra.harness import OpenSearchNode, PostgresCluster  # noqa: E402 - importable after sys.path above
from tests.infra.harness.http import EngineHttp  # noqa: E402 - importable after sys.path above
from tests.infra.harness.process import log_tail, spawn, stop  # noqa: E402 - importable after sys.path above

SEED = 7
LIVE_SPACING_MS = 10  # new events are stamped over the last few seconds, like live traffic
SHOWN = ("Sync completed", "Sync failed", "Sync skipped", "Scheduler", "| WARNING |", "| ERROR |")


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what to do."""


class Stop(Exception):
    """SIGTERM: stop like Ctrl-C."""


def say(message: str) -> None:
    """One line of the demo's own narration."""
    print(f"[demo] {message}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000, help="port of the service on 127.0.0.1 (default 8000)")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (default: Ctrl-C)")
    parser.add_argument("--events", type=int, default=5000, help="sample events loaded first (default 5000)")
    parser.add_argument("--batch", type=int, default=300, help="new events added each round (default 300)")
    parser.add_argument("--every", type=float, default=5, help="seconds between rounds (default 5)")
    parser.add_argument("--interval", type=int, default=5, help="RTARF_SYNC_INTERVAL_SECONDS (default 5)")
    parser.add_argument("--index", default="rtarf-events-demo", help="index to fill (default rtarf-events-demo)")
    parser.add_argument("--table", default="rtarf_events", help="target table (default rtarf_events)")
    parser.add_argument(
        "--alerts-table", default="rtarf_alerts", help="table of the alerts pipeline (default rtarf_alerts)"
    )
    parser.add_argument("--opensearch-url", help="use this running engine instead of starting one")
    parser.add_argument("--database-url", help="use this PostgreSQL database instead of a throwaway one")
    return parser.parse_args(argv)


def check_port(port: int) -> None:
    """Fail before starting anything if the service's port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            raise DemoError(
                f"port {port} is already in use ({error.strerror}): stop whatever listens there "
                f"(another demo or the service?), or run: scripts/demo.sh --port {port + 1}"
            ) from None


def start_engines(args: argparse.Namespace, stack: ExitStack) -> tuple[str, str]:
    """PostgreSQL and OpenSearch URLs: the ones given, or throwaway engines stopped on exit."""
    database_url = args.database_url
    if database_url is None:
        cluster = PostgresCluster().start()
        stack.callback(cluster.stop)
        database_url = cluster.create_database("rtarf_demo")
    opensearch_url = args.opensearch_url
    if opensearch_url is None:
        node = OpenSearchNode().start()
        stack.callback(node.stop)
        opensearch_url = node.url
    return database_url, opensearch_url


def load_history(engine: EngineHttp, index: str, count: int) -> None:
    """Create the index (date mapping, manual refresh) and load `count` events from the last ten minutes."""
    try:
        engine.create_index(index)
    except RuntimeError as error:
        if "resource_already_exists" not in str(error):
            raise
        say(f"index {index} exists already; adding to it")
    spacing = max(1, 600_000 // max(count, 1))
    start = datetime.now(timezone.utc) - timedelta(milliseconds=count * spacing)
    line = ProgressLine(f"[demo] loading {count:,} sample events into {index}", sys.stdout)
    load_events(engine.bulk, index, count, seed=SEED, batch=1000, progress=line.update, start=start, spacing_ms=spacing)
    engine.refresh(index)


def add_live_events(engine: EngineHttp, index: str, first: int, count: int) -> None:
    """Index events `first`.. stamped over the last moments, then make them searchable."""
    start = datetime.now(timezone.utc) - timedelta(milliseconds=(first + count) * LIVE_SPACING_MS)
    load_events(engine.bulk, index, count, seed=SEED, first=first, start=start, spacing_ms=LIVE_SPACING_MS)
    engine.refresh(index)


ALERTS_QUERY = {"range": {"event.severity": {"gte": 7}}}  # high and critical
# The alerts pipeline: typed columns an analyst can index and query, the payload kept out.
PIPELINES = """\
[defaults]
index = "{index}"

[pipelines.default]   # every event, as JSON in `source`
table = "{table}"

[pipelines.alerts]    # high and critical alerts, with typed columns
table = "{alerts_table}"
query = {{ range = {{ "event.severity" = {{ gte = 7 }} }} }}
source_excludes = ["message"]

[pipelines.alerts.columns]
source_ip = {{ path = "source.ip", type = "inet", index = true }}
severity  = {{ path = "event.severity", type = "smallint", index = true }}
rule_name = {{ path = "rule.name", type = "text", index = true }}
tags      = {{ path = "tags", type = "text[]" }}
seen_at   = {{ path = "@timestamp", type = "timestamptz" }}
"""
ALERTS_SQL = """\
SELECT rule_name, count(*) AS alerts, max(severity) AS worst
FROM {alerts_table} WHERE source_ip << '45.0.0.0/8' AND 'priority' = ANY(tags)
GROUP BY rule_name ORDER BY alerts DESC LIMIT 5"""


def write_pipelines(args: argparse.Namespace, workdir: Path) -> Path:
    """The pipelines file the service reads (RTARF_PIPELINES_FILE)."""
    path = workdir / "pipelines.toml"
    path.write_text(PIPELINES.format(index=args.index, table=args.table, alerts_table=args.alerts_table))
    return path


def service_env(args: argparse.Namespace, database_url: str, opensearch_url: str, pipelines: Path) -> dict[str, str]:
    """The process environment of gunicorn: ours without RTARF_ variables, plus the demo's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RTARF_")}
    env.update(
        {
            "RTARF_BIND": f"127.0.0.1:{args.port}",
            "RTARF_ES_URL": opensearch_url,
            "RTARF_SOURCE_ENGINE": "opensearch",
            "RTARF_PIPELINES_FILE": str(pipelines),
            "RTARF_DATABASE_URL": database_url,
            "RTARF_SYNC_INTERVAL_SECONDS": str(args.interval),
            "RTARF_SYNC_SETTLE_SECONDS": "1",
            "RTARF_SYNC_ENABLED": "true",
            "RTARF_GRACEFUL_TIMEOUT_SECONDS": "10",
        }
    )
    return env


def get_json(url: str, method: str = "GET") -> Any:
    """Call the service; return the decoded answer (error answers too)."""
    request = urllib.request.Request(url, method=method, headers={"Accept": "application/json"})  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
            return json.load(response)
    except urllib.error.HTTPError as error:
        return json.load(error)


def start_service(env: dict[str, str], base: str, log: Path, stack: ExitStack) -> None:
    """Start gunicorn and wait until /healthz answers; show its log tail if it dies."""
    argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    say(f"starting the service: python {' '.join(argv[1:])} on {base} (log: {log})")
    process = spawn(argv, log, env=env, cwd=ROOT)
    stack.callback(_stop_service, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"gunicorn exited with {process.returncode}; its log:\n{log_tail(log, 20)}")
        try:
            if get_json(f"{base}/healthz").get("status") == "ok":
                return
        except (urllib.error.URLError, OSError, ValueError):
            time.sleep(0.3)
    raise DemoError(f"the service did not answer /healthz within 60s; its log:\n{log_tail(log, 20)}")


def _stop_service(process: subprocess.Popen[bytes]) -> None:
    stop(process, signal.SIGTERM, timeout=40)
    say(f"service stopped (gunicorn exit status {process.returncode})")


def row_count(db: sa.Engine, table: str) -> int:
    """Rows in the target table; 0 before the service created it."""
    try:
        with db.connect() as connection:
            return int(connection.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one())
    except sa.exc.ProgrammingError:
        return 0


class LogTail:
    """New lines of the service log that tell the story (sync outcomes, scheduler, warnings)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def new_lines(self) -> list[str]:
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            text = log.read().decode(errors="replace")
        complete = text[: text.rfind("\n") + 1]
        self.offset += len(complete.encode())
        return [
            line
            for line in complete.splitlines()
            if "| gunicorn.access |" not in line and any(mark in line for mark in SHOWN)
        ]


def show_round(
    base: str, db: sa.Engine, engine: EngineHttp, args: argparse.Namespace, tail: LogTail, elapsed: float, added: int
) -> tuple[int, int]:
    """Print what the service did since the last round; return (events in OpenSearch, rows in PostgreSQL)."""
    for line in tail.new_lines():
        print(f"    service | {line}", flush=True)
    status = get_json(f"{base}/scheduler/status")
    events, rows = engine.count(args.index), row_count(db, args.table)
    alerts, alert_rows = high_severity(engine, args.index), row_count(db, args.alerts_table)
    say(
        f"{elapsed:5.0f}s  +{added} new events | OpenSearch {events:,} events | PostgreSQL {rows:,} rows, "
        f"{alert_rows:,} of {alerts:,} alerts | "
        f"syncs {status['total_syncs']} ({status['failed_syncs']} failed, success rate {status['success_rate']}), "
        f"last: {status['last_sync_status']}"
    )
    return events + alerts, rows + alert_rows


def high_severity(engine: EngineHttp, index: str) -> int:
    """Events the alerts pipeline's query matches."""
    return int(engine.call("POST", f"/{index}/_count", {"query": ALERTS_QUERY})["count"])


def wait_first_sync(base: str, timeout: float = 60) -> None:
    """Wait for the first run of both pipelines, then show GET /scheduler/status as an operator sees it."""
    deadline = time.monotonic() + timeout
    for path in ("/scheduler/status", "/pipelines/alerts/status"):
        while get_json(f"{base}{path}")["total_syncs"] < 1:
            if time.monotonic() > deadline:
                raise DemoError(f"no sync ran within {timeout:.0f}s ({path}); see the service log")
            time.sleep(0.5)
    say(f"first sync done. $ curl -s {base}/scheduler/status")
    print(json.dumps(get_json(f"{base}/scheduler/status"), indent=2), flush=True)


def show_alerts(db: sa.Engine, args: argparse.Namespace) -> None:
    """The alerts pipeline's table as an analyst queries it: typed columns, an inet range, an array."""
    query = ALERTS_SQL.format(alerts_table=args.alerts_table)
    say("the alerts pipeline's typed columns, queried in SQL:")
    print("    " + query.replace("\n", "\n    "), flush=True)
    with db.connect() as connection:
        for rule_name, alerts, worst in connection.execute(sa.text(query)):
            print(f"    {alerts:6,}  severity {worst:>2}  {rule_name}", flush=True)


def run_rounds(base: str, db: sa.Engine, engine: EngineHttp, args: argparse.Namespace, tail: LogTail) -> None:
    """Every few seconds add new events and show them arriving, until the duration ends or Ctrl-C."""
    started, number = time.monotonic(), args.events
    while not args.duration or time.monotonic() - started < args.duration:
        time.sleep(args.every)
        add_live_events(engine, args.index, number, args.batch)
        number += args.batch
        show_round(base, db, engine, args, tail, time.monotonic() - started, args.batch)
    say("duration reached; waiting for the last events to be synced")
    deadline = time.monotonic() + 3 * args.interval + 10
    events, rows = show_round(base, db, engine, args, tail, time.monotonic() - started, 0)
    while rows != events and time.monotonic() < deadline:
        time.sleep(args.interval)
        events, rows = show_round(base, db, engine, args, tail, time.monotonic() - started, 0)
    if rows != events:
        raise DemoError(f"PostgreSQL has {rows:,} rows but OpenSearch {events:,} matching events after the last sync")
    say(f"in step: every one of the {engine.count(args.index):,} events in OpenSearch is a row in PostgreSQL")
    show_alerts(db, args)


def _raise_stop(signum: int, frame: Any) -> None:
    raise Stop()


def _run(args: argparse.Namespace, stack: ExitStack) -> None:
    base = f"http://127.0.0.1:{args.port}"
    workdir = Path(tempfile.mkdtemp(prefix="rtarf-demo-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    database_url, opensearch_url = start_engines(args, stack)
    engine = EngineHttp(opensearch_url, "opensearch")
    load_history(engine, args.index, args.events)
    db = sa.create_engine(database_url)
    stack.callback(db.dispose)
    env = service_env(args, database_url, opensearch_url, write_pipelines(args, workdir))
    start_service(env, base, workdir / "service.log", stack)
    say(
        f"service up on {base}, syncing {args.index} from OpenSearch every {args.interval}s "
        f"into {args.table} (every event) and {args.alerts_table} (alerts, typed columns); Ctrl-C stops everything"
    )
    wait_first_sync(base)
    show_alerts(db, args)
    run_rounds(base, db, engine, args, LogTail(workdir / "service.log"))


def demo(args: argparse.Namespace) -> None:
    """Start the stack, show the service at work, and stop everything it started on the way out."""
    check_port(args.port)
    stack = ExitStack()
    try:
        _run(args, stack)
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping what the demo started ...")
        stack.close()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        demo(args)
    except (KeyboardInterrupt, Stop):
        say("stopped")
        return 0
    except DemoError as error:
        say(f"error: {error}")
        return 1
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
