"""The scheduler and the API with the real SyncService, real PostgreSQL and a real engine."""

from __future__ import annotations

import threading
from typing import Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.extension import scheduler_of
from rtarf_sync.scheduler import RtarfEventScheduler
from tests.esserver import EsProtocolServer
from tests.harness.http import EngineHttp
from tests.support import count_rows, load_sample, runs_of, wait_for

EVENTS = 60


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """Apps built by a test; their schedulers are shut down afterwards."""
    made: list[Flask] = []
    yield made
    for app in made:
        scheduler_of(app).shutdown(timeout=20)


def test_readme_python_example_syncs_events_into_postgresql(
        opensearch: EngineHttp, index_name: str, table_name: str, database_url: str,
        db_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    load_sample(opensearch, index_name, EVENTS)
    for name, value in {"RTARF_DATABASE_URL": database_url, "RTARF_ES_URL": opensearch.url,
                        "RTARF_ES_INDEX": index_name, "RTARF_TABLE": table_name,
                        "RTARF_SYNC_SETTLE_SECONDS": "0"}.items():
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
        opensearch: EngineHttp, index_name: str, table_name: str, db_engine: sa.Engine,
        make_settings: Callable[..., Settings], apps: list[Flask]) -> None:
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


def test_readyz_is_ready_with_both_engines_up(opensearch: EngineHttp, index_name: str,
                                             make_settings: Callable[..., Settings], apps: list[Flask]) -> None:
    app = create_app(make_settings(opensearch, index_name))
    apps.append(app)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"engine": None, "database": None}}


def test_readyz_names_the_unreachable_engine(make_settings: Callable[..., Settings], apps: list[Flask]) -> None:
    from tests.harness.process import free_port

    app = create_app(make_settings(RTARF_ES_URL=f"http://127.0.0.1:{free_port()}",
                                   RTARF_SOURCE_ENGINE="elasticsearch", RTARF_SYNC_MAX_RETRIES=0))
    apps.append(app)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["message"] == "unreachable: engine"
    assert response.get_json()["checks"]["database"] is None


def test_a_run_against_an_unreachable_engine_answers_502(make_settings: Callable[..., Settings],
                                                         apps: list[Flask]) -> None:
    from tests.harness.process import free_port

    app = create_app(make_settings(RTARF_ES_URL=f"http://127.0.0.1:{free_port()}",
                                   RTARF_SOURCE_ENGINE="elasticsearch", RTARF_SYNC_MAX_RETRIES=0))
    apps.append(app)
    response = app.test_client().post("/scheduler/sync-now")
    assert response.status_code == 502
    body = response.get_json()
    assert body["result"]["status"] == "failed"
    assert body["result"]["error"]
    assert body["unreachable"] == ["engine"]


def _slow_engine(server: EsProtocolServer, seconds: float) -> None:
    """Make every search of the protocol server take `seconds`, so a run stays open for a while."""
    server.faults.only_paths("_search")
    server.faults.delay_next(1000, seconds)


def test_sync_now_during_a_slow_scheduled_run_gets_409(
        elasticsearch: EngineHttp, es_server: EsProtocolServer, index_name: str, table_name: str,
        db_engine: sa.Engine, make_settings: Callable[..., Settings], apps: list[Flask]) -> None:
    load_sample(elasticsearch, index_name, 40)
    app = create_app(make_settings(elasticsearch, index_name, RTARF_SYNC_BATCH_SIZE=5,
                                   RTARF_SYNC_INTERVAL_SECONDS=3600), start_scheduler=True)
    apps.append(app)
    _slow_engine(es_server, 0.3)
    client = app.test_client()
    wait_for(lambda: count_rows(db_engine, table_name) > 0, timeout=60, what="the scheduled run's first page")
    response = client.post("/scheduler/sync-now")
    assert response.status_code == 409
    assert "scheduled sync" in response.get_json()["message"]
    wait_for(lambda: client.get("/scheduler/status").get_json()["total_syncs"] == 1, timeout=90,
             what="the scheduled run to finish")
    es_server.faults.reset()
    assert count_rows(db_engine, table_name) == 40
    assert len(runs_of(db_engine, table_name)) == 1  # the manual call never started a run


def test_shutdown_interrupts_a_running_sync_after_its_page_and_records_it(
        elasticsearch: EngineHttp, es_server: EsProtocolServer, index_name: str, table_name: str,
        db_engine: sa.Engine, make_settings: Callable[..., Settings]) -> None:
    load_sample(elasticsearch, index_name, 50)
    scheduler = RtarfEventScheduler(settings=make_settings(elasticsearch, index_name, RTARF_SYNC_BATCH_SIZE=5))
    _slow_engine(es_server, 0.3)
    outcome: list[int] = []
    manual = threading.Thread(target=lambda: outcome.append(scheduler.sync_now().total_processed))
    manual.start()
    wait_for(lambda: count_rows(db_engine, table_name) > 0, timeout=60, what="the first page")
    assert scheduler.shutdown(timeout=30) is True
    manual.join(30)
    es_server.faults.reset()
    status = scheduler.get_status()
    assert status["last_sync_status"] == "failed"
    assert "interrupted by shutdown" in status["last_result"]["error"]
    rows = count_rows(db_engine, table_name)
    assert 0 < rows < 50
    assert rows % 5 == 0  # whole pages only: the page in flight was never half-written
    assert outcome == [rows]
    [run] = runs_of(db_engine, table_name)
    assert run["status"] == "failed"
    assert "interrupted by shutdown" in run["error"]
