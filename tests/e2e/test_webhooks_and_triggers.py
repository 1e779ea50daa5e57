"""Webhooks and triggers under real gunicorn: restarts, two processes, two workers, start-up errors.

Real PostgreSQL, the real OpenSearch node, a real receiver; every wait is a
`wait_for` on an observable state (rows, run history, the delivery table).
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa

from rtarf_sync.sample import load_events
from tests.infra.gunicorn_process import ROOT, GunicornProcess
from tests.infra.harness.http import EngineHttp
from tests.infra.harness.process import free_port, spawn
from tests.infra.support import (
    count_rows,
    lease_holder,
    load_sample,
    runs_of,
    service_env,
    target_locked,
    wait_for,
    waiting_service_backends,
)
from tests.infra.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "trigger-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ServerFactory = Callable[..., GunicornProcess]


@pytest.fixture
def server_env(opensearch: EngineHttp, index_name: str, table_name: str, database_url: str) -> dict[str, str]:
    """A service reading 20 old events of the test index into the test table; interval runs an hour apart."""
    load_sample(opensearch, index_name, 20)
    return service_env(
        database_url,
        opensearch,
        index_name,
        table_name,
        **{
            "RTARF_GRACEFUL_TIMEOUT_SECONDS": "20",
            "RTARF_API_TOKEN": TOKEN,
        },
    )


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start gunicorn processes; kill whatever is left at the end."""
    started: list[GunicornProcess] = []

    def start(env: dict[str, str], *args: str, workers: int = 1) -> GunicornProcess:
        server = GunicornProcess(tmp_path / f"server{len(started)}", env, *args)
        started.append(server)
        return server.start(workers)

    yield start
    for server in started:
        server.close()


def index_now(engine: EngineHttp, index: str, count: int, first: int) -> None:
    """Index `count` new events stamped just now and make them searchable (what an ingest pipeline does)."""
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    load_events(
        engine.bulk, index, count, seed=7, first=first, start=start - timedelta(milliseconds=first), spacing_ms=1
    )
    engine.refresh(index)


def trigger_runs(db_engine: sa.Engine, table: str, finished: bool = True) -> list[dict[str, Any]]:
    """Runs started by triggers (only the finished ones unless asked)."""
    return [
        run
        for run in runs_of(db_engine, table)
        if run["trigger"] == "trigger" and (not finished or run["status"] != "running")
    ]


def idle(server: GunicornProcess) -> bool:
    """True when the (single) worker has no trigger pending and no run in progress."""
    status = server.get("/scheduler/status").json()
    return not (status["trigger"]["pending"] or status["trigger"]["running"] or status["sync_in_progress"])


def test_trigger_coalesces_bursts_queues_one_follow_up_and_refuses_while_paused(
    start_server: ServerFactory,
    server_env: dict[str, str],
    opensearch: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
) -> None:
    server = start_server({**server_env, "RTARF_TRIGGER_DEBOUNCE_SECONDS": "4"})
    wait_for(
        lambda: [r for r in runs_of(db_engine, table_name) if r["status"] == "success"],
        timeout=60,
        what="the first scheduled run",
    )
    assert server.post("/scheduler/trigger").status_code == 401  # token rules apply
    server.post("/scheduler/stop", headers=AUTH)
    paused = server.post("/scheduler/trigger", headers=AUTH)
    assert paused.status_code == 409 and "paused" in paused.json()["message"]

    # 100 triggers at once (gthread: four at a time) make one run.
    server.post("/scheduler/start", headers=AUTH)
    wait_for(lambda: idle(server) and len(runs_of(db_engine, table_name)) == 2, what="the run start makes")
    index_now(opensearch, index_name, 20, first=1000)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: server.post("/scheduler/trigger", headers=AUTH), range(100)))
    assert {answer.status_code for answer in answers} == {202}
    assert [answer.json()["coalesced"] for answer in answers].count(False) == 1
    assert answers[0].json()["message"] == "Sync requested"
    wait_for(lambda: idle(server) and trigger_runs(db_engine, table_name), timeout=60, what="the triggered run")
    assert len(trigger_runs(db_engine, table_name, finished=False)) == 1
    assert count_rows(db_engine, table_name) == 40

    # Triggers during a run queue exactly one follow-up, which reads what was indexed meanwhile.
    index_now(opensearch, index_name, 10, first=2000)
    with target_locked(db_engine, table_name):
        assert server.post("/scheduler/trigger", headers=AUTH).json()["coalesced"] is False
        wait_for(lambda: waiting_service_backends(db_engine) >= 1, timeout=30, what="the run held at its page")
        index_now(opensearch, index_name, 10, first=3000)
        during = [server.post("/scheduler/trigger", headers=AUTH).json()["coalesced"] for _ in range(5)]
    assert during == [False, True, True, True, True]
    wait_for(
        lambda: idle(server) and len(trigger_runs(db_engine, table_name)) == 3, timeout=60, what="the follow-up run"
    )
    assert len(trigger_runs(db_engine, table_name, finished=False)) == 3
    assert count_rows(db_engine, table_name) == 60
    assert server.get("/scheduler/status").json()["trigger"]["runs"] == 3


def test_two_workers_behind_one_lease_lose_no_trigger_and_make_no_storm(
    start_server: ServerFactory,
    server_env: dict[str, str],
    opensearch: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
) -> None:
    server = start_server({**server_env, "RTARF_TRIGGER_DEBOUNCE_SECONDS": "0.5"}, "-w", "2", workers=2)
    wait_for(
        lambda: count_rows(db_engine, table_name) == 20 and lease_holder(db_engine, table_name) is None,
        timeout=60,
        what="the first scheduled run",
    )
    rounds, expected = 2, 20
    for number in range(rounds):
        with target_locked(db_engine, table_name):
            index_now(opensearch, index_name, 10, first=10_000 * (number + 1))
            _trigger_both_workers(server)
            wait_for(lambda: waiting_service_backends(db_engine) >= 1, timeout=30, what="a run held at its page")
            index_now(opensearch, index_name, 10, first=10_000 * (number + 1) + 5000)
            _trigger_both_workers(server)  # the worker without the lease now has a trigger pending too
        expected += 20
        wait_for(
            lambda rows=expected: count_rows(db_engine, table_name) == rows,
            timeout=60,
            what=f"round {number}: every triggered event in PostgreSQL",
        )
    # Each round: the run that was held, then at most one follow-up per worker.
    assert len(trigger_runs(db_engine, table_name, finished=False)) <= 3 * rounds
    assert all(run["status"] in ("success", "running") for run in runs_of(db_engine, table_name))


def _trigger_both_workers(server: GunicornProcess) -> None:
    """Post triggers until both workers have answered one."""
    pids: set[int] = set()

    def both() -> bool:
        answer = server.post("/scheduler/trigger", headers=AUTH)
        assert answer.status_code == 202, answer.text
        pids.add(answer.json()["scheduler_status"]["pid"])
        return len(pids) == 2

    wait_for(both, timeout=30, what="a trigger answered by each worker")


def test_a_backlog_survives_a_restart_and_two_processes_send_each_message_once(
    start_server: ServerFactory, server_env: dict[str, str], table_name: str, db_engine: sa.Engine
) -> None:
    receiver = WebhookReceiver(SECRET, free_port())  # down for now
    env = {
        **server_env,
        "RTARF_SYNC_ENABLED": "false",
        "RTARF_WEBHOOK_URLS": receiver.url(),
        "RTARF_WEBHOOK_SECRET": SECRET,
        "RTARF_WEBHOOK_EVENTS": "*",
        "RTARF_WEBHOOK_RETRY_SECONDS": "0.2",
        "RTARF_WEBHOOK_MAX_ATTEMPTS": "100",
    }
    first, second = start_server(env), start_server(env)
    for server in (first, second, first, second):
        assert server.post("/scheduler/sync-now", headers=AUTH).status_code == 200
    wait_for(lambda: _statuses(db_engine, table_name) == ["failed"] * 4, timeout=30, what="four failed attempts")
    for server in (first, second):
        assert server.terminate(30)[0] == 0

    receiver.start()
    try:
        restarted = [start_server(env), start_server(env)]
        wait_for(lambda: _statuses(db_engine, table_name) == ["delivered"] * 4, timeout=60, what="the backlog")
        for server in restarted:
            assert server.terminate(30)[0] == 0  # nothing can still be in flight after this
    finally:
        receiver.stop()
    ids = receiver.ids()
    assert len(ids) == 4 and len(set(ids)) == 4  # each message once, by webhook-id
    assert all(request.verified for request in receiver.requests)
    assert sum("delivered to" in server.log() for server in restarted) >= 1


def _statuses(db_engine: sa.Engine, table: str) -> list[str]:
    with db_engine.connect() as connection:
        return list(
            connection.execute(
                sa.text("SELECT status FROM rtarf_sync_webhook_messages WHERE target_table = :t ORDER BY id"),
                {"t": table},
            ).scalars()
        )


@pytest.mark.parametrize(
    ("name", "value"),
    [("RTARF_WEBHOOK_SECRET", "whsec_not*base64"), ("RTARF_WEBHOOK_URLS", "ftp://user:pw-sekrit@example.org/h")],
)
def test_a_bad_webhook_setting_stops_start_up_naming_the_variable(
    tmp_path: Path, server_env: dict[str, str], name: str, value: str
) -> None:
    env = {**server_env, "RTARF_WEBHOOK_URLS": "http://127.0.0.1:9/hook", "RTARF_WEBHOOK_SECRET": SECRET, name: value}
    server = GunicornProcess(tmp_path, env)
    process = spawn(server.argv, server.log_path, env=server.env, cwd=ROOT)
    assert process.wait(60) != 0
    wsgi = subprocess.run(
        [sys.executable, "-c", "import wsgi"], env=server.env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert wsgi.returncode == 2
    for output in (server.log(), wsgi.stderr):
        errors = [line for line in output.splitlines() if "configuration error" in line]
        assert len(errors) == 1 and name in errors[0]
        assert "pw-sekrit" not in output and "not*base64" not in output
