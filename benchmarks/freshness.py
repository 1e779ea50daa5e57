"""Freshness: how soon an indexed event is a row in PostgreSQL, with and without the trigger.

    make freshness                              # 60 s per scenario, 1,000 and 5,000 events/s
    .venv/bin/python -m benchmarks.freshness --seconds 20 --rate 1000 --high-rate 5000 --fill 0

An ingest loop bulk-indexes `rate` events per second (one bulk request per
`1/bulks` s, `@timestamp` = now) into OpenSearch (default refresh 1 s) for
`seconds`, as an ingest pipeline would, after ingesting at the same rate for `--fill`
seconds that are not measured (default: the overlap, so every measured run compares a
full overlap window, as a service that has run for a while does; a fresh table would
otherwise make the first minute's runs cheaper than any later one's). The real service
runs under gunicorn with settle 1 s and the service's default overlap (60 s). Scenario "trigger":
the loop calls POST /scheduler/trigger after each bulk acknowledgement (interval
300 s, so the trigger does the work). Scenario "interval": no trigger, a 5 s
interval. Scenario "trigger at 5,000/s": the trigger at `--high-rate`, to see
whether the service keeps up: the backlog (events acknowledged but not yet rows)
is sampled every second, and it grows when its slope over the measured time (the
first 10 s left out when there is no fill) is over 2% of the rate. A poller asks
PostgreSQL every `--poll` s how many events of each outstanding bulk are rows; an
event's latency is the time from its bulk acknowledgement to the first poll that sees it (so figures are at
most one poll interval high). Reports p50, p95 and max per scenario. Target:
p95 under 2.5 s with the trigger at 1,000 events/s, and no growing backlog at 5,000.
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
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.sample import bulk_payload, make_event
from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.harness import OpenSearchNode, PostgresCluster
from tests.infra.harness.http import EngineHttp

SETTLE = 1
TARGET_P95 = 2.5
WARM_UP_SECONDS = 10.0  # without a fill, left out of the backlog's slope: the first runs start the pool and the JIT
GROWING_SHARE = 0.02  # a backlog slope over 2% of the rate (events/s) is a backlog that grows


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="freshness", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="measured ingest time per scenario (default 60)")
    parser.add_argument("--rate", type=int, default=1000, help="events per second (default 1000)")
    parser.add_argument("--bulks", type=int, default=4, help="bulk requests per second (default 4)")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between PostgreSQL polls (default 0.1)")
    parser.add_argument(
        "--overlap", type=int, default=60, help="RTARF_SYNC_OVERLAP_SECONDS (default 60, the service's)"
    )
    parser.add_argument(
        "--fill",
        type=float,
        default=None,
        help="seconds of ingest before the measured part, not measured (default: the overlap, so its window is full)",
    )
    parser.add_argument(
        "--high-rate", type=int, default=5000, help="events per second of the keep-up scenario (default 5000; 0: skip)"
    )
    parser.add_argument(
        "--scenarios",
        type=_scenarios,
        default="trigger,interval,high",
        help="which to run, comma-separated: trigger, interval, high (default all three)",
    )
    args = parser.parse_args(argv)
    if args.fill is None:
        args.fill = float(args.overlap)
    if args.fill < 0:
        parser.error(f"--fill must be 0 or more seconds, not {args.fill:g}")
    return args


SCENARIOS = {"trigger": "trigger", "interval": "5 s interval", "high": "trigger, keep-up"}  # name: label


def _scenarios(text: str) -> str:
    """`--scenarios` as given, once every name in it is a scenario (argparse says which is not)."""
    unknown = [name for name in text.split(",") if name not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenario {unknown[0]!r}: choose from {', '.join(SCENARIOS)}")
    return text


@dataclass
class _Bulk:
    """One acknowledged bulk: when, how many events, and how many of them are rows so far."""

    acked_at: float
    events: int
    seen: int = 0


class Visibility:
    """Outstanding bulks and when each was acknowledged; a poller counts how many of each are rows.

    Every event of a bulk carries the bulk's `@timestamp` (Bulks), so one grouped count through the
    target's timestamp index tells how many of each outstanding bulk are rows: each event newly
    counted has waited from its bulk's acknowledgement to this poll. Asking for every outstanding id
    instead cost PostgreSQL a scan of the whole table on each poll (no index leads with `es_id`), up
    to a core of the two the service and the engines share once the table held a few hundred
    thousand rows.
    """

    def __init__(self, engine: sa.Engine, table: str, poll: float) -> None:
        self.engine, self.table, self.poll = engine, table, poll
        self.bulks: dict[datetime, _Bulk] = {}  # the outstanding bulks by their stamp (one bulk a stamp: Bulks)
        self.since = 0.0  # only events acknowledged from then on (monotonic) count in `latencies`
        self.latencies: list[float] = []
        self.backlog: list[tuple[float, int]] = []  # (monotonic time, events acknowledged and not yet rows)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> Visibility:
        self._thread.start()
        return self

    def add(self, stamp: datetime, events: int, acked_at: float) -> None:
        """A bulk of `events` events stamped `stamp` was acknowledged at `acked_at`."""
        with self._lock:
            self.bulks[stamp] = _Bulk(acked_at, events)

    @property
    def outstanding(self) -> int:
        """Events acknowledged and not yet rows."""
        with self._lock:
            return self._waiting()

    def _waiting(self) -> int:
        return sum(bulk.events - bulk.seen for bulk in self.bulks.values())

    def _loop(self) -> None:
        query = sa.text(
            f'SELECT event_timestamp, count(*) FROM "{self.table}" WHERE event_timestamp = ANY(:stamps) GROUP BY 1'
        )
        while not self._done.is_set():
            with self._lock:
                stamps = list(self.bulks)
            if stamps:
                with self.engine.connect() as connection:
                    counts = dict(connection.execute(query, {"stamps": stamps}).tuples().all())
                now = time.monotonic()
                with self._lock:
                    for stamp, rows in counts.items():
                        self._count(stamp, int(rows), now)
                    if not self.backlog or now - self.backlog[-1][0] >= 1.0:
                        self.backlog.append((now, self._waiting()))
            self._done.wait(self.poll)

    def _count(self, stamp: datetime, rows: int, now: float) -> None:
        """`rows` of the bulk stamped `stamp` are rows now: the new ones waited from its acknowledgement."""
        bulk = self.bulks.get(stamp)
        if bulk is None or rows <= bulk.seen:
            return
        if bulk.acked_at >= self.since:
            self.latencies.extend([now - bulk.acked_at] * (rows - bulk.seen))
        bulk.seen = rows
        if bulk.seen >= bulk.events:
            del self.bulks[stamp]

    def drain(self, timeout: float) -> int:
        """Wait until every acknowledged event is a row (or `timeout`); return how many are still missing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.outstanding:
            time.sleep(self.poll)
        self._done.set()
        self._thread.join()
        return self.outstanding


class Bulks:
    """Bulk bodies of `per_bulk` sample events each, stamped now, built from templates made once.

    Building 1,250 events from scratch costs the loop about 90 ms a bulk (a third of a core at
    5,000 events/s, on the cores the service and the engine share); a template with its id and
    `@timestamp` left blank costs a string substitution. The events of a bulk are those of
    `make_event` (seed 11) under fresh ids, every one stamped with the bulk's time.
    """

    ID, STAMP = "@@id@@", "@@stamp@@"

    def __init__(self, index: str, per_bulk: int) -> None:
        self.per_bulk = per_bulk
        self.last: datetime | None = None  # the stamp of the last bulk
        self.templates: list[tuple[str, str]] = []
        for n in range(per_bulk):
            event = make_event(n, seed=11)
            event["event"]["id"] = self.ID
            event["@timestamp"] = self.STAMP
            action, document = bulk_payload(index, [event]).splitlines()
            self.templates.append((action, document))

    def body(self, first: int) -> tuple[str, datetime]:
        """The bulk body of events `first` .. `first + per_bulk - 1`, and the `@timestamp` all of them carry:
        a millisecond of its own, so a bulk's events are the rows of its stamp."""
        moment = datetime.now(timezone.utc)
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)  # the engine's milliseconds
        if self.last is not None and moment <= self.last:
            moment = self.last + timedelta(milliseconds=1)
        self.last = moment
        stamp = engine_time(moment)
        ids = [f"{11:04x}-{n:012d}" for n in range(first, first + self.per_bulk)]
        lines: list[str] = []
        for (action, document), event_id in zip(self.templates, ids, strict=True):
            lines.append(action.replace(self.ID, event_id))
            lines.append(document.replace(self.ID, event_id).replace(self.STAMP, stamp))
        return "\n".join(lines) + "\n", moment


def ingest(
    http: EngineHttp,
    index: str,
    server: GunicornProcess,
    seen: Visibility,
    args: argparse.Namespace,
    trigger: bool,
    token: str,
    rate: int,
) -> dict[str, int]:
    """The ingest loop: bulk, record the acknowledgement, trigger; paced to the rate. The fill first, then
    the measured part: the events and triggers counted are those acknowledged from `seen.since` on."""
    per_bulk, gap = rate // args.bulks, 1.0 / args.bulks
    bulks = Bulks(index, per_bulk)
    started, number, triggers, measured = time.monotonic(), 0, 0, 0
    seen.since = started + args.fill
    runs_before: int | None = None if args.fill else 0  # the runs of the fill, read when the measured part begins
    while time.monotonic() - started < args.fill + args.seconds:
        body, stamp = bulks.body(number)
        answer = http.bulk(body)
        acked = time.monotonic()
        if answer.get("errors"):
            raise RuntimeError("bulk request had item errors")
        if runs_before is None and acked >= seen.since:
            runs_before = server.get("/scheduler/status").json()["total_syncs"]
        seen.add(stamp, per_bulk, acked)
        number += per_bulk
        measured += per_bulk if acked >= seen.since else 0
        if trigger:
            response = server.post("/scheduler/trigger", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            response.raise_for_status()
            triggers += acked >= seen.since
        pause = started + (number // per_bulk) * gap - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    return {"events": measured, "triggers": triggers, "runs_before": runs_before or 0}


def scenario(name: str, database_url: str, http: EngineHttp, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One scenario (trigger, interval or high) in a fresh index and table, with its own gunicorn."""
    trigger = name in ("trigger", "high")
    rate = args.high_rate if name == "high" else args.rate
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
        counts = ingest(http, index, server, seen, args, trigger, token, rate)
        began, ended = seen.since, time.monotonic()
        missing = seen.drain(timeout=30)
        runs = server.get("/scheduler/status").json()["total_syncs"] - counts.pop("runs_before")
    finally:
        server.terminate(30)
        server.close()
        engine.dispose()
    backlog = [(at - began, count) for at, count in seen.backlog if began <= at <= ended]
    return {
        "scenario": name,
        "rate": rate,
        **counts,
        "offered": counts["events"] / max(ended - began, 1e-9),  # events/s the loop really sent
        "missing": missing,
        "runs": runs,
        **summary(seen.latencies),
        **backlog_trend(backlog, rate, 0.0 if args.fill else WARM_UP_SECONDS),
    }


def backlog_trend(samples: list[tuple[float, int]], rate: int, skip: float) -> dict[str, Any]:
    """The backlog's least-squares slope (events/s) over the measured time after `skip` s, and its verdict."""
    kept = [(at, count) for at, count in samples if at >= skip] or samples
    if len(kept) < 2:
        return {"backlog_slope": float("nan"), "backlog_grows": None, "backlog_last": None}
    mean_t = statistics.fmean(at for at, _ in kept)
    mean_c = statistics.fmean(count for _, count in kept)
    spread = sum((at - mean_t) ** 2 for at, _ in kept) or 1e-9
    slope = sum((at - mean_t) * (count - mean_c) for at, count in kept) / spread
    return {
        "backlog_slope": slope,
        "backlog_grows": slope > GROWING_SHARE * rate,
        "backlog_first": kept[0][1],
        "backlog_last": kept[-1][1],
    }


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
    """The report as a Markdown table, then the targets."""
    lines = [
        f"freshness: {args.seconds:g} s per scenario after a fill of {args.fill:g} s, {args.bulks} bulks/s, "
        f"settle {SETTLE} s, overlap {args.overlap} s, poll {args.poll:g} s, load {os.getloadavg()[0]:.2f}",
        "",
        "| scenario | events/s | events | triggers | runs | p50 s | p95 s | max s | not visible after 30 s "
        "| backlog slope, events/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        label = SCENARIOS[r["scenario"]]
        lines.append(
            f"| {label} | {r['rate']:,} (sent {r['offered']:,.0f}) | {r['events']} | {r['triggers']} | {r['runs']} | "
            f"{r['p50']:.2f} | "
            f"{r['p95']:.2f} | {r['max']:.2f} | {r['missing']} | {r['backlog_slope']:+.0f} |"
        )
    lines += ["", "targets"]
    for r in results:
        if r["scenario"] == "trigger":
            verdict = "PASS" if r["p95"] < TARGET_P95 else "MISS"
            lines.append(
                f"  {verdict}  p95 under {TARGET_P95} s with the trigger at {r['rate']:,} events/s, overlap "
                f"{args.overlap} s: {r['p95']:.2f} s"
            )
        if r["scenario"] == "high":
            offered = r["offered"] >= (1 - GROWING_SHARE) * r["rate"]
            verdict = "PASS" if offered and r["backlog_grows"] is False and r["missing"] == 0 else "MISS"
            grows = "grows" if r["backlog_grows"] else "does not grow"
            lines.append(
                f"  {verdict}  keeps up with {r['rate']:,} events/s over {args.seconds:g} s (the loop sent "
                f"{r['offered']:,.0f} a second): the backlog {grows} "
                f"({r['backlog_first']} at the start, {r['backlog_last']} at the end, slope "
                f"{r['backlog_slope']:+.0f} events/s, limit {GROWING_SHARE * r['rate']:.0f}); "
                f"{r['missing']} not visible 30 s after the ingest"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run both scenarios and print the report."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    url = os.environ.get("RTARF_TEST_OPENSEARCH_URL")
    with tempfile.TemporaryDirectory(prefix="rtarf-fresh-") as tmp, PostgresCluster(durable=True) as pg:
        database_url = pg.create_database("rtarf_fresh")
        names = [name for name in args.scenarios.split(",") if name != "high" or args.high_rate > 0]
        if url:
            results = [scenario(name, database_url, EngineHttp(url, "opensearch"), Path(tmp), args) for name in names]
        else:
            with OpenSearchNode() as node:
                http = EngineHttp(node.url, "opensearch")
                results = [scenario(name, database_url, http, Path(tmp), args) for name in names]
    print(render(results, args), flush=True)
    print(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
