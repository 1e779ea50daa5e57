"""Freshness: how soon an indexed event is a row in PostgreSQL, with and without the trigger.

    make freshness                              # 60 s per scenario, 1,000 events/s
    .venv/bin/python -m benchmarks.freshness --seconds 20 --rate 1000

An ingest loop bulk-indexes `rate` events per second (one bulk request per
`1/bulks` s, `@timestamp` = now) into OpenSearch (default refresh 1 s) for
`seconds`, as an ingest pipeline would. The real service runs under gunicorn
with settle 1 s. Scenario "trigger": the loop calls POST /scheduler/trigger after
each bulk acknowledgement (interval 300 s, so the trigger does the work).
Scenario "interval": no trigger, a 5 s interval. A poller asks PostgreSQL every
`--poll` s which of the outstanding ids are rows; an event's latency is the
time from its bulk acknowledgement to the first poll that sees it (so figures
are at most one poll interval high). Reports p50, p95 and max per scenario.
Target: p95 under settle + 2 s with the trigger.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rtarf_sync.sample import bulk_payload, make_event
from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.harness import OpenSearchNode, PostgresCluster
from tests.infra.harness.http import EngineHttp

SETTLE = 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="freshness", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="ingest time per scenario (default 60)")
    parser.add_argument("--rate", type=int, default=1000, help="events per second (default 1000)")
    parser.add_argument("--bulks", type=int, default=4, help="bulk requests per second (default 4)")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between PostgreSQL polls (default 0.1)")
    parser.add_argument("--overlap", type=int, default=10, help="RTARF_SYNC_OVERLAP_SECONDS (default 10)")
    return parser.parse_args(argv)


class Visibility:
    """Outstanding event ids and when each was acknowledged; a poller marks when each became a row."""

    def __init__(self, engine: sa.Engine, table: str, poll: float) -> None:
        self.engine, self.table, self.poll = engine, table, poll
        self.acked: dict[str, float] = {}
        self.latencies: list[float] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> Visibility:
        self._thread.start()
        return self

    def add(self, ids: list[str], acked_at: float) -> None:
        with self._lock:
            self.acked.update((event_id, acked_at) for event_id in ids)

    def _loop(self) -> None:
        while not self._done.is_set():
            with self._lock:
                outstanding = list(self.acked)
            if outstanding:
                with self.engine.connect() as connection:
                    seen = (
                        connection.execute(
                            sa.text(f'SELECT es_id FROM "{self.table}" WHERE es_id = ANY(:ids)'), {"ids": outstanding}
                        )
                        .scalars()
                        .all()
                    )
                now = time.monotonic()
                with self._lock:
                    for event_id in seen:
                        acked_at = self.acked.pop(event_id, None)
                        if acked_at is not None:
                            self.latencies.append(now - acked_at)
            self._done.wait(self.poll)

    def drain(self, timeout: float) -> int:
        """Wait until every acknowledged event is a row (or `timeout`); return how many are still missing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self.acked:
                    break
            time.sleep(self.poll)
        self._done.set()
        self._thread.join()
        return len(self.acked)


def ingest(
    http: EngineHttp,
    index: str,
    server: GunicornProcess,
    seen: Visibility,
    args: argparse.Namespace,
    trigger: bool,
    token: str,
) -> dict[str, int]:
    """The ingest loop: bulk, record the acknowledgement, trigger; paced to the rate."""
    per_bulk, gap = args.rate // args.bulks, 1.0 / args.bulks
    started, number, triggers = time.monotonic(), 0, 0
    while time.monotonic() - started < args.seconds:
        now = datetime.now(timezone.utc)
        events = [
            make_event(n, seed=11, start=now - timedelta(milliseconds=n), spacing_ms=1)
            for n in range(number, number + per_bulk)
        ]
        answer = http.bulk(bulk_payload(index, events))
        acked = time.monotonic()
        if answer.get("errors"):
            raise RuntimeError("bulk request had item errors")
        seen.add([event["event"]["id"] for event in events], acked)
        number += per_bulk
        if trigger:
            response = server.post("/scheduler/trigger", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            response.raise_for_status()
            triggers += 1
        pause = started + (number // per_bulk) * gap - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    return {"events": number, "triggers": triggers}


def scenario(name: str, database_url: str, http: EngineHttp, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One scenario in a fresh index and table, with its own gunicorn."""
    trigger = name == "trigger"
    suffix = uuid.uuid4().hex[:8]
    index, table, token = f"rtarf-events-fresh-{suffix}", f"fresh_{suffix}", "bench-token-0123456789"
    http.call(
        "PUT",
        f"/{index}",
        {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
            "mappings": {"properties": {"@timestamp": {"type": "date"}}},
        },
    )
    env = {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_ES_URL": http.url,
        "RTARF_ES_INDEX": index,
        "RTARF_TABLE": table,
        "RTARF_SOURCE_ENGINE": "opensearch",
        "RTARF_SYNC_SETTLE_SECONDS": str(SETTLE),
        "RTARF_SYNC_OVERLAP_SECONDS": str(args.overlap),
        "RTARF_API_TOKEN": token,
        "RTARF_SYNC_INTERVAL_SECONDS": "300" if trigger else "5",
        "RTARF_TRIGGER_DEBOUNCE_SECONDS": "1",
    }
    server = GunicornProcess(workdir / name, env).start()
    engine = sa.create_engine(database_url)
    try:
        _wait_for_table(engine, table)
        seen = Visibility(engine, table, args.poll).start()
        counts = ingest(http, index, server, seen, args, trigger, token)
        missing = seen.drain(timeout=30)
        runs = server.get("/scheduler/status").json()["total_syncs"]
    finally:
        server.terminate(30)
        server.close()
        engine.dispose()
    return {"scenario": name, **counts, "missing": missing, "runs": runs, **summary(seen.latencies)}


def _wait_for_table(engine: sa.Engine, table: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            if connection.execute(sa.text("SELECT to_regclass(:t)"), {"t": table}).scalar():
                return
        time.sleep(0.2)
    raise RuntimeError("the service did not create its table")


def summary(latencies: list[float]) -> dict[str, float]:
    """p50, p95 and max in seconds."""
    if not latencies:
        return {"p50": float("nan"), "p95": float("nan"), "max": float("nan")}
    ordered = sorted(latencies)
    return {"p50": statistics.median(ordered), "p95": ordered[int(0.95 * (len(ordered) - 1))], "max": ordered[-1]}


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The report as a Markdown table."""
    lines = [
        f"freshness: {args.rate} events/s for {args.seconds:g} s per scenario, {args.bulks} bulks/s, "
        f"settle {SETTLE} s, overlap {args.overlap} s, poll {args.poll:g} s, load {os.getloadavg()[0]:.2f}",
        "",
        "| scenario | events | triggers | runs | p50 s | p95 s | max s | not visible after 30 s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['scenario']} | {r['events']} | {r['triggers']} | {r['runs']} | {r['p50']:.2f} | "
            f"{r['p95']:.2f} | {r['max']:.2f} | {r['missing']} |"
        )
    trig = next(r for r in results if r["scenario"] == "trigger")
    verdict = "met" if trig["p95"] < SETTLE + 2 else "missed"
    lines += ["", f"target p95 < settle + 2 s = {SETTLE + 2} s with the trigger: {verdict}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run both scenarios and print the report."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    url = os.environ.get("RTARF_TEST_OPENSEARCH_URL")
    with tempfile.TemporaryDirectory(prefix="rtarf-fresh-") as tmp, PostgresCluster(durable=True) as pg:
        database_url = pg.create_database("rtarf_fresh")
        if url:
            results = [
                scenario(name, database_url, EngineHttp(url, "opensearch"), Path(tmp), args)
                for name in ("trigger", "interval")
            ]
        else:
            with OpenSearchNode() as node:
                http = EngineHttp(node.url, "opensearch")
                results = [scenario(name, database_url, http, Path(tmp), args) for name in ("trigger", "interval")]
    print(render(results, args), flush=True)
    print(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
