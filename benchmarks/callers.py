"""Hostile callers: does /healthz keep answering while clients misbehave during a real sync?

    make callers                                     # 100,000 events, 20 s of attack
    .venv/bin/python -m benchmarks.callers --events 100000 --seconds 20

The real service runs under gunicorn against OpenSearch (RTARF_TEST_OPENSEARCH_URL
or a node of its own) and a durable PostgreSQL. Once the first sync is under way,
for `--seconds`: 200 idle keep-alive clients (one request each, then silence), 50
clients that send a trigger's body after its head and leave bytes after the answer,
20 slowloris connections (one header byte every 0.5 s, reconnecting when dropped),
a burst of 1,000 concurrent `GET /scheduler/status` in the middle, and a full
reconciliation kept running back to back. A probe asks `/healthz` every 50 ms on a
fresh connection. Target: 0 unanswered, 0 errors, `/healthz` p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any, Callable

import requests

from rtarf_sync.sample import load_events
from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.harness import OpenSearchNode, PostgresCluster
from tests.infra.harness.http import EngineHttp
from tests.infra.hostile_callers import connect, head, late_body, read_response

TOKEN = "callers-bench-token-0123456789"
ANSWER_SECONDS = 10.0  # a request unanswered after this counts as never answered


class Tally:
    """Thread-safe counts per scenario: answered, errors (unexpected status or refused), unanswered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, dict[str, int]] = {}
        self.probe_ms: list[float] = []
        self.probe_at: list[float] = []  # seconds into the attack when each probe started
        self.burst_at = (0.0, 0.0)  # seconds into the attack when the burst began and ended
        self.sync_samples: list[bool] = []

    def add(self, scenario: str, outcome: str) -> None:
        with self.lock:
            self.counts.setdefault(scenario, {"answered": 0, "errors": 0, "unanswered": 0})[outcome] += 1

    def call(self, scenario: str, expected: set[int], do: Callable[[], int]) -> None:
        """Run one request and count its outcome."""
        try:
            status = do()
        except (TimeoutError, ConnectionError, requests.Timeout, requests.ConnectionError):
            self.add(scenario, "unanswered")
            return
        except OSError:
            self.add(scenario, "errors")
            return
        self.add(scenario, "answered" if status in expected else "errors")


def _get(port: int, path: str) -> int:
    sock = connect(port, ANSWER_SECONDS)
    try:
        sock.sendall(head("GET", path))
        return read_response(sock, ANSWER_SECONDS)[0]
    finally:
        sock.close()


def probe(port: int, seconds: float, results: Any) -> None:
    """GET /healthz every 50 ms on a fresh connection, as an orchestrator's probe does (own process)."""
    tally, started = Tally(), time.monotonic()
    while time.monotonic() < started + seconds:
        began = time.monotonic()
        tally.call("healthz probe", {200}, lambda: _get(port, "/healthz"))
        tally.probe_ms.append((time.monotonic() - began) * 1000)
        tally.probe_at.append(began - started)
        time.sleep(max(0.0, 0.05 - (time.monotonic() - began)))
    results.put((tally.counts, tally.probe_ms, tally.probe_at))


def idle_clients(port: int, tally: Tally, count: int, held: list[socket.socket]) -> None:
    """`count` keep-alive clients: one GET /scheduler/status each, then the connection stays open and silent."""

    def once(sock: socket.socket) -> int:
        sock.sendall(head("GET", "/scheduler/status"))
        return read_response(sock, ANSWER_SECONDS)[0]

    for _ in range(count):
        sock = connect(port, ANSWER_SECONDS)
        held.append(sock)
        tally.call("idle keep-alive", {200}, partial(once, sock))


def leftover_client(port: int, tally: Tally, rounds: int, held: list[socket.socket]) -> None:
    """Triggers that leave bytes on the connection after their answer; every connection stays open.

    Even rounds send the body after the head (the old worker answered first, so the body came after the
    answer); odd rounds send two bodies where the head announces one.
    """
    for number in range(rounds):

        def once(number: int = number) -> int:
            if number % 2 == 0:
                sock, status = late_body(port, "POST", "/scheduler/trigger", token=TOKEN, pause=0.2)
            else:
                sock = connect(port, ANSWER_SECONDS)
                sock.sendall(head("POST", "/scheduler/trigger", 2, TOKEN) + b"{}{}")
                status = read_response(sock, ANSWER_SECONDS)[0]
            held.append(sock)
            return status

        tally.call("bytes after answers", {202}, once)


def slowloris(port: int, tally: Tally, count: int, until: float) -> None:
    """`count` connections sending a request head one byte every 0.5 s, reconnecting when dropped."""
    data = head("GET", "/scheduler/status")
    conns: list[tuple[socket.socket, int]] = [(connect(port), 0) for _ in range(count)]
    while time.monotonic() < until:
        for number, (sock, offset) in enumerate(conns):
            try:
                sock.send(data[offset : offset + 1])
                conns[number] = (sock, min(offset + 1, len(data) - 2))  # never the end of the head
            except OSError:
                sock.close()
                tally.add("slowloris dropped by the server", "answered")
                conns[number] = (connect(port), 0)
        time.sleep(0.5)
    for sock, _ in conns:
        sock.close()


def burst(port: int, tally: Tally, count: int) -> None:
    """`count` concurrent GET /scheduler/status: all sent, then all answers read."""
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytes] = {}
    for _ in range(count):
        try:
            sock = connect(port, ANSWER_SECONDS)
            sock.sendall(head("GET", "/scheduler/status").replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        except OSError:
            tally.add("1,000 concurrent status", "errors")
            continue
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        buffers[sock] = b""
    deadline = time.monotonic() + 3 * ANSWER_SECONDS
    while buffers and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj  # type: ignore[assignment]  # only sockets are registered
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            buffers[sock] += chunk
            if not chunk:  # Connection: close, so the answer is complete when the server closes
                answer = buffers.pop(sock)
                ok = answer.startswith(b"HTTP/1.1 200")
                tally.add("1,000 concurrent status", "answered" if ok else ("errors" if answer else "unanswered"))
                selector.unregister(sock)
                sock.close()
    for sock in buffers:
        tally.add("1,000 concurrent status", "unanswered")
        sock.close()


def keep_syncing(url: str, tally: Tally, until: float) -> None:
    """Full reconciliations back to back, so a real sync runs all through the attack."""
    while time.monotonic() < until:
        try:
            status = requests.post(
                f"{url}/scheduler/sync-now",
                json={"mode": "full"},
                timeout=600,
                headers={"Authorization": f"Bearer {TOKEN}"},
            ).status_code
        except requests.RequestException:
            tally.add("full sync (sync-now)", "unanswered")
            continue
        if status == 409:  # a sync is running already (the scheduled one): ask again later
            tally.add("full sync refused: one is running (409)", "answered")
            time.sleep(0.5)
        else:
            tally.add("full sync (sync-now)", "answered" if status == 200 else "errors")


def sample_sync(url: str, tally: Tally, until: float) -> None:
    """Whether a sync is in progress, every 0.5 s."""
    while time.monotonic() < until:
        try:
            busy = bool(requests.get(f"{url}/scheduler/status", timeout=ANSWER_SECONDS).json()["sync_in_progress"])
        except requests.RequestException:
            busy = False
        with tally.lock:
            tally.sync_samples.append(busy)
        time.sleep(0.5)


def attack(server: GunicornProcess, seconds: float) -> Tally:
    """Every hostile caller at once for `seconds`; the 1,000-request burst in the middle."""
    tally, held = Tally(), list[socket.socket]()
    # The probe runs in a process of its own: in this one it would measure this process's own GIL too.
    results: multiprocessing.Queue[Any] = multiprocessing.Queue()
    prober = multiprocessing.Process(target=probe, args=(server.port, seconds, results))
    prober.start()
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(target=sample_sync, args=(server.url, tally, until)),
        threading.Thread(target=keep_syncing, args=(server.url, tally, until)),
        threading.Thread(target=slowloris, args=(server.port, tally, 20, until)),
        threading.Thread(target=idle_clients, args=(server.port, tally, 200, held)),
    ]
    threads += [threading.Thread(target=leftover_client, args=(server.port, tally, 3, held)) for _ in range(50)]
    for thread in threads:
        thread.start()
    time.sleep(seconds / 2)
    began = time.monotonic()
    burst(server.port, tally, 1000)
    tally.burst_at = (began - until + seconds, time.monotonic() - until + seconds)
    for thread in threads:
        thread.join(timeout=seconds + 660)
    for sock in held:
        sock.close()
    counts, tally.probe_ms, tally.probe_at = results.get(timeout=seconds + 60)
    prober.join(timeout=10)
    tally.counts.update(counts)
    return tally


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def report(tally: Tally, args: argparse.Namespace, log: str) -> dict[str, Any]:
    """Print the figures; return them for the JSON line."""
    unanswered = sum(c["unanswered"] for c in tally.counts.values())
    errors = sum(c["errors"] for c in tally.counts.values())
    p50, p99 = statistics.median(tally.probe_ms), percentile(tally.probe_ms, 0.99)
    busy = sum(tally.sync_samples) / max(len(tally.sync_samples), 1)
    print(
        f"callers: {args.events:,} events, {args.seconds:g} s of attack, load {os.getloadavg()[0]:.2f}"
        + (f", gunicorn {args.server_args}" if args.server_args else "")
    )
    print("| scenario | answered | errors | never answered |\n|---|---|---|---|")
    for name, c in tally.counts.items():
        print(f"| {name} | {c['answered']} | {c['errors']} | {c['unanswered']} |")
    print(
        f"\n/healthz: {len(tally.probe_ms)} probes, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"max {max(tally.probe_ms):.1f} ms"
    )
    slow = sorted(zip(tally.probe_ms, tally.probe_at, strict=True), reverse=True)[:5]
    print(
        f"1,000-request burst from {tally.burst_at[0]:.1f} s to {tally.burst_at[1]:.1f} s; slowest probes: "
        + ", ".join(f"{ms:.0f} ms at {at:.1f} s" for ms, at in slow)
    )
    print(f"sync in progress in {busy:.0%} of the samples; tracebacks in the service log: {log.count('Traceback')}")
    met = unanswered == 0 and errors == 0 and p99 < 100
    print(
        f"errors {errors}, never answered {unanswered}; target (0, 0, p99 < 100 ms): {'met' if met else 'missed'}",
        flush=True,
    )
    return {
        "events": args.events,
        "seconds": args.seconds,
        "counts": tally.counts,
        "healthz_p50_ms": p50,
        "healthz_p99_ms": p99,
        "healthz_max_ms": max(tally.probe_ms),
        "sync_busy": busy,
        "errors": errors,
        "unanswered": unanswered,
        "met": met,
    }


def run(http: EngineHttp, database_url: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Load the events, start the service, attack it once its first sync is under way."""
    suffix = uuid.uuid4().hex[:8]
    index = f"rtarf-callers-{suffix}"
    http.create_index(index)
    load_events(http.bulk, index, args.events)
    http.refresh(index)
    env = {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_ES_URL": http.url,
        "RTARF_ES_INDEX": index,
        "RTARF_TABLE": f"callers_{suffix}",
        "RTARF_SOURCE_ENGINE": "opensearch",
        "RTARF_API_TOKEN": TOKEN,
        "RTARF_SYNC_SETTLE_SECONDS": "0",
        "RTARF_SYNC_INTERVAL_SECONDS": "3600",
    }
    server = GunicornProcess(workdir, env, *args.server_args.split()).start()
    try:
        deadline = time.monotonic() + 60
        while not server.get("/scheduler/status", timeout=10).json()["sync_in_progress"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the first sync did not start")
            time.sleep(0.1)
        return report(attack(server, args.seconds), args, server.log())
    finally:
        server.terminate(60)
        server.close()
        http.delete_index(index)


def main(argv: list[str] | None = None) -> int:
    """Run once and print the report, then one JSON line."""
    parser = argparse.ArgumentParser(prog="callers", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events in the index (default 100,000)")
    parser.add_argument("--seconds", type=float, default=20, help="length of the attack (default 20)")
    parser.add_argument(
        "--server-args",
        default="",
        help='extra gunicorn options, for comparisons (e.g. "--worker-class gthread --threads 64")',
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    url = os.environ.get("RTARF_TEST_OPENSEARCH_URL")
    with tempfile.TemporaryDirectory(prefix="rtarf-callers-") as tmp, PostgresCluster(durable=True) as pg:
        database_url = pg.create_database("rtarf_callers")
        if url:
            result = run(EngineHttp(url, "opensearch"), database_url, Path(tmp), args)
        else:
            with OpenSearchNode() as node:
                result = run(EngineHttp(node.url, "opensearch"), database_url, Path(tmp), args)
    print(json.dumps(result, default=str))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
