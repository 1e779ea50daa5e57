"""gunicorn end to end: the real server process, real PostgreSQL, the real OpenSearch node.

gunicorn is started as a child process with `gunicorn.conf.py`; the routes
are called over HTTP; SIGTERM must stop it within the graceful timeout with
the run history recorded.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import psutil
import pytest
import requests
import sqlalchemy as sa

from config import Settings
from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.harness.http import EngineHttp
from tests.infra.support import (
    count_rows,
    lease_holder,
    load_sample,
    prepare_tables,
    runs_of,
    service_env,
    target_locked,
    wait_for,
    waiting_service_backends,
)

pytestmark = pytest.mark.e2e

EVENTS = 60
GRACEFUL = 20
LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \| [\w.]+ \| [A-Z]+ \| .*$")

ServerFactory = Callable[..., GunicornProcess]


@pytest.fixture
def server_env(opensearch: EngineHttp, index_name: str, table_name: str, database_url: str) -> dict[str, str]:
    """Environment of a service reading the test index into the test table."""
    load_sample(opensearch, index_name, EVENTS)
    return service_env(
        database_url,
        opensearch,
        index_name,
        table_name,
        **{
            "RTARF_GRACEFUL_TIMEOUT_SECONDS": str(GRACEFUL),
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


def _sigterm_and_check(server: GunicornProcess) -> None:
    workers = server.worker_pids()
    code, seconds = server.terminate(timeout=GRACEFUL + 10)
    assert code == 0, server.log()
    assert seconds < GRACEFUL  # within the graceful timeout, not killed at its end
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in workers)


def test_gunicorn_serves_the_routes_syncs_and_stops_on_sigterm(
    start_server: ServerFactory, server_env: dict[str, str], table_name: str, db_engine: sa.Engine
) -> None:
    server = start_server(server_env)
    # The first scheduled run starts with the worker.
    wait_for(
        lambda: server.get("/scheduler/status").json()["total_syncs"] == 1, timeout=90, what="the first scheduled run"
    )
    status = server.get("/scheduler/status").json()
    assert status["is_running"] is True
    assert status["last_sync_status"] == "success", status["last_result"]
    assert status["last_result"]["inserted"] == EVENTS
    assert count_rows(db_engine, table_name) == EVENTS

    manual = server.post("/scheduler/sync-now")
    assert manual.status_code == 200
    assert manual.json()["message"] == "Manual sync completed"
    assert manual.json()["result"]["inserted"] == 0
    assert {job["id"] for job in server.get("/scheduler/jobs").json()["jobs"]} == {"rtarf_event_sync", "rtarf_verify"}
    assert server.get("/readyz").status_code == 200
    assert server.get("/healthz").json() == {"status": "ok"}
    missing = server.get("/nowhere")
    assert (missing.status_code, missing.headers["Content-Type"]) == (404, "application/json")
    assert server.get("/scheduler/sync-now").status_code == 405
    assert server.post("/scheduler/stop").json()["scheduler_status"]["is_running"] is False
    assert server.post("/scheduler/start").json()["scheduler_status"]["is_running"] is True
    wait_for(
        lambda: server.get("/scheduler/status").json()["total_syncs"] == 3, timeout=60, what="the run a start triggers"
    )

    _sigterm_and_check(server)
    log = server.log()
    assert log.count("RTARF Event Scheduler started (interval: 3600s)") == 2  # boot, then the POST /start
    assert "RTARF Event Scheduler shut down" in log
    assert "Sync completed successfully: 60 events processed, 60 inserted, 0 updated" in log
    assert [run["status"] for run in runs_of(db_engine, table_name)] == ["success"] * 3
    app_lines = [line for line in log.splitlines() if "| rtarf_sync." in line]
    assert app_lines and all(LOG_LINE.match(line) for line in app_lines)


def test_the_scheduler_starts_once_in_the_worker_never_in_the_master(
    start_server: ServerFactory, server_env: dict[str, str]
) -> None:
    server = start_server(server_env)
    wait_for(
        lambda: server.get("/scheduler/status").json()["total_syncs"] == 1, timeout=90, what="the first scheduled run"
    )
    status = server.get("/scheduler/status").json()
    assert status["pid"] in server.worker_pids()
    assert status["pid"] != server.master_pid
    assert server.log().count("RTARF Event Scheduler started") == 1
    _sigterm_and_check(server)


def test_sigterm_during_a_sync_finishes_the_page_records_the_run_and_exits(
    start_server: ServerFactory,
    server_env: dict[str, str],
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
) -> None:
    env = {**server_env, "RTARF_SYNC_BATCH_SIZE": "5"}
    prepare_tables(make_settings(RTARF_TABLE=table_name))
    with target_locked(db_engine, table_name):  # the boot-time run reads page 1 and waits to write it
        server = start_server(env)
        wait_for(lambda: waiting_service_backends(db_engine) == 1, timeout=60, what="page 1 to wait")
        assert server.get("/scheduler/status").json()["sync_in_progress"] is True
        began = time.monotonic()
        server.signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM received" in server.log(), timeout=30, what="the worker to get SIGTERM")
    assert server.wait(GRACEFUL + 10) == 0, server.log()
    assert time.monotonic() - began < GRACEFUL  # the page finished and the worker left in time
    assert count_rows(db_engine, table_name) == 5  # the page in flight was committed, no page after it
    [run] = runs_of(db_engine, table_name)
    assert run["status"] == "failed"
    assert "interrupted by shutdown" in run["error"]
    assert run["finished_at"] is not None
    assert lease_holder(db_engine, table_name) is None
    assert "RTARF Event Scheduler shut down" in server.log()


def _post_into(server: GunicornProcess, answers: list[object]) -> None:
    """POST sync-now and keep the status, or the error if the call itself failed."""
    try:
        answers.append(server.post("/scheduler/sync-now", timeout=50).status_code)
    except requests.RequestException as error:
        answers.append(repr(error))


def test_two_workers_never_run_two_syncs_at_once(
    start_server: ServerFactory,
    server_env: dict[str, str],
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
) -> None:
    env = {**server_env, "RTARF_SYNC_BATCH_SIZE": "5"}
    prepare_tables(make_settings(RTARF_TABLE=table_name))
    answers: list[object] = []
    with target_locked(db_engine, table_name):
        server = start_server(env, "-w", "2", workers=2)
        # Both workers started a scheduler; one run holds the lease, the other waits for it or skips.
        wait_for(lambda: server.log().count("RTARF Event Scheduler started") == 2, timeout=30, what="both schedulers")
        wait_for(lambda: lease_holder(db_engine, table_name), timeout=60, what="one run to take the lease")
        wait_for(
            lambda: waiting_service_backends(db_engine) == 2 or "Sync skipped" in server.log(),
            timeout=60,
            what="the other worker's run to meet the lease",
        )
        callers = [threading.Thread(target=_post_into, args=(server, answers)) for _ in range(6)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(60)
        # While the lease is held, every manual call is refused at once, by either worker.
        assert answers == [409] * 6, server.log()[-3000:]
        assert server.get("/scheduler/status").status_code == 200  # and status still answers
    wait_for(
        lambda: "Sync skipped: another sync holds the lease" in server.log(),
        timeout=60,
        what="the second worker to log its skip",
    )
    wait_for(
        lambda: [run["status"] for run in runs_of(db_engine, table_name)] == ["success"],
        timeout=60,
        what="the one run to finish",
    )

    more: list[requests.Response] = []
    callers = [threading.Thread(target=lambda: more.append(server.post("/scheduler/sync-now"))) for _ in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(120)
    assert {answer.status_code for answer in more} <= {200, 409}
    assert any(answer.status_code == 200 for answer in more)
    runs = runs_of(db_engine, table_name)
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert later["started_at"] >= earlier["finished_at"], (earlier, later)  # never two at once
    assert count_rows(db_engine, table_name) == EVENTS
    _sigterm_and_check(server)
