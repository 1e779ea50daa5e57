"""The scheduler and the API with the real SyncService, real PostgreSQL and a real engine."""

from __future__ import annotations

import threading
from typing import Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.service.scheduler import RtarfEventScheduler
from tests.infra.harness.http import EngineHttp
from tests.infra.support import (
    count_rows,
    lease_holder,
    load_sample,
    prepare_tables,
    runs_of,
    target_locked,
    waiting_service_backends,
    wait_for,
)

EVENTS = 60


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """Apps built by a test; their schedulers are shut down afterwards."""
    made: list[Flask] = []
    yield made
    for app in made:
        scheduler_of(app).shutdown(timeout=20)


def test_readme_python_example_syncs_events_into_postgresql(
    opensearch: EngineHttp,
    index_name: str,
    table_name: str,
    database_url: str,
    db_engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load_sample(opensearch, index_name, EVENTS)
    for name, value in {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_ES_URL": opensearch.url,
        "RTARF_ES_INDEX": index_name,
        "RTARF_TABLE": table_name,
        "RTARF_SYNC_SETTLE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)

    # The original README's example, verbatim apart from the wait for the first run.
    scheduler = RtarfEventScheduler(interval_seconds=10)
    scheduler.start()
    status = scheduler.get_status()
    print(status)
    scheduler.stop()

    try:
        assert status["is_running"] is True
        assert status["interval_seconds"] == 10
        wait_for(lambda: scheduler.get_status()["total_syncs"] == 1, timeout=60, what="the first run")
        final = scheduler.get_status()
        assert final["last_sync_status"] == "success", final["last_result"]
        assert final["last_result"]["inserted"] == EVENTS
        assert count_rows(db_engine, table_name) == EVENTS
    finally:
        scheduler.shutdown(timeout=20)


def test_sync_now_over_the_api_lands_events_and_counts_them(
    opensearch: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
    apps: list[Flask],
) -> None:
    load_sample(opensearch, index_name, EVENTS)
    app = create_app(make_settings(opensearch, index_name))
    apps.append(app)
    client = app.test_client()
    first = client.post("/scheduler/sync-now")
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["result"]["inserted"] == EVENTS
    assert first.get_json()["result"]["engine"] == "opensearch"
    second = client.post("/scheduler/sync-now").get_json()
    assert (second["result"]["inserted"], second["result"]["updated"]) == (0, 0)
    assert count_rows(db_engine, table_name) == EVENTS
    status = client.get("/scheduler/status").get_json()
    assert (status["total_syncs"], status["failed_syncs"], status["success_rate"]) == (2, 0, "100.0%")
    assert [run["status"] for run in runs_of(db_engine, table_name)] == ["success", "success"]


def test_readyz_is_ready_with_both_engines_up(
    opensearch: EngineHttp, index_name: str, make_settings: Callable[..., Settings], apps: list[Flask]
) -> None:
    app = create_app(make_settings(opensearch, index_name))
    apps.append(app)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"engine": None, "database": None}}


def test_readyz_names_the_unreachable_engine(make_settings: Callable[..., Settings], apps: list[Flask]) -> None:
    from tests.infra.harness.process import free_port

    app = create_app(
        make_settings(
            RTARF_ES_URL=f"http://127.0.0.1:{free_port()}",
            RTARF_SOURCE_ENGINE="elasticsearch",
            RTARF_SYNC_MAX_RETRIES=0,
        )
    )
    apps.append(app)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["message"] == "unreachable: engine"
    assert response.get_json()["checks"]["database"] is None


def test_a_run_against_an_unreachable_engine_answers_502(
    make_settings: Callable[..., Settings], apps: list[Flask]
) -> None:
    from tests.infra.harness.process import free_port

    app = create_app(
        make_settings(
            RTARF_ES_URL=f"http://127.0.0.1:{free_port()}",
            RTARF_SOURCE_ENGINE="elasticsearch",
            RTARF_SYNC_MAX_RETRIES=0,
        )
    )
    apps.append(app)
    response = app.test_client().post("/scheduler/sync-now")
    assert response.status_code == 502
    body = response.get_json()
    assert body["result"]["status"] == "failed"
    assert body["result"]["error"]
    assert body["unreachable"] == ["engine"]


def test_sync_now_during_a_scheduled_run_gets_409(
    opensearch: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
    apps: list[Flask],
) -> None:
    load_sample(opensearch, index_name, 40)
    settings = make_settings(opensearch, index_name, RTARF_SYNC_BATCH_SIZE=5, RTARF_SYNC_INTERVAL_SECONDS=3600)
    prepare_tables(settings)
    app = create_app(settings)
    apps.append(app)
    client = app.test_client()
    with target_locked(db_engine, table_name):  # the scheduled run holds its lease and waits on page 1
        scheduler_of(app).start()
        wait_for(lambda: lease_holder(db_engine, table_name), timeout=60, what="the scheduled run's lease")
        response = client.post("/scheduler/sync-now")
        assert response.status_code == 409
        assert response.get_json()["error"] == "Conflict"
        assert "scheduled sync" in response.get_json()["message"]
        assert client.get("/scheduler/status").get_json()["sync_in_progress"] is True
    wait_for(
        lambda: client.get("/scheduler/status").get_json()["total_syncs"] == 1,
        timeout=60,
        what="the scheduled run to finish",
    )
    assert client.get("/scheduler/status").get_json()["last_sync_status"] == "success"
    assert count_rows(db_engine, table_name) == 40
    assert len(runs_of(db_engine, table_name)) == 1  # the manual call never started a run


def test_shutdown_interrupts_a_running_sync_after_its_page_and_records_it(
    opensearch: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
) -> None:
    load_sample(opensearch, index_name, 50)
    settings = make_settings(opensearch, index_name, RTARF_SYNC_BATCH_SIZE=5)
    prepare_tables(settings)
    scheduler = RtarfEventScheduler(settings=settings)
    outcome: list[int] = []
    manual = threading.Thread(target=lambda: outcome.append(scheduler.sync_now().total_processed))
    closer = threading.Thread(target=scheduler.shutdown, kwargs={"timeout": 30})
    with target_locked(db_engine, table_name):  # page 1 is read and waits to be written
        manual.start()
        wait_for(lambda: waiting_service_backends(db_engine) == 1, timeout=60, what="page 1 to wait for the lock")
        closer.start()
        wait_for(lambda: scheduler.stopping, what="the stop request")
    closer.join(40)
    manual.join(10)
    assert not closer.is_alive()
    status = scheduler.get_status()
    assert status["last_sync_status"] == "failed"
    assert "interrupted by shutdown" in status["last_result"]["error"]
    assert count_rows(db_engine, table_name) == 5  # the page in flight was finished, nothing after it
    assert outcome == [5]
    [run] = runs_of(db_engine, table_name)
    assert run["status"] == "failed"
    assert "interrupted by shutdown" in run["error"]
    assert lease_holder(db_engine, table_name) is None  # released at once, not left to expire
