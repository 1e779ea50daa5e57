"""GET /scheduler/runs and /scheduler/runs/<id> against real PostgreSQL, and run-history pruning.

The history holds runs of several triggers, modes and outcomes, written by
RunHistory as the services write them, plus one real failed sync (the engine
port has nothing listening), so the routes page and filter real rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.service.pruning import PRUNE_EVERY_SECONDS, HistoryPruner
from tests.infra.harness.process import free_port
from tests.infra.oracle import scalar
from tests.infra.support import offline_settings

# (trigger, mode, status) of the recorded runs, oldest first.
HISTORY = [
    ("scheduled", "incremental", "success"),
    ("manual", "full", "failed"),
    ("cli", "range", "partial"),
    ("scheduled", "incremental", "success"),
    ("replay", "replay", "success"),
]


@pytest.fixture
def app(make_settings: Callable[..., Settings]) -> Iterator[Flask]:
    """An app on the test database whose engine cannot be reached, with HISTORY and one failed sync recorded."""
    settings = make_settings(
        RTARF_ES_URL=f"http://127.0.0.1:{free_port()}", RTARF_SOURCE_ENGINE="elasticsearch", RTARF_SYNC_MAX_RETRIES="0"
    )
    application = create_app(settings)
    service = scheduler_of(application).service
    service.ensure_tables()
    start = datetime.now(timezone.utc) - timedelta(hours=1)
    for n, (trigger, mode, status) in enumerate(HISTORY):
        run_id = service.history.start(trigger, "test:1:abc", start + timedelta(minutes=n), mode)
        service.history.finish(
            SyncResult(
                run_id=run_id,
                status=status,
                finished_at=start + timedelta(minutes=n, seconds=2),
                error="boom" if status == "failed" else None,
            )
        )
    failed = application.test_client().post("/scheduler/sync-now")
    assert failed.status_code == 502 and failed.get_json()["result"]["status"] == "failed"
    yield application
    scheduler_of(application).shutdown(timeout=10)


def test_runs_page_newest_first_with_keyset_paging(app: Flask) -> None:
    client = app.test_client()
    everything = client.get("/scheduler/runs").get_json()
    assert everything["next_before"] is None
    runs = everything["runs"]
    assert [(r["trigger"], r["mode"], r["status"]) for r in runs] == [
        ("manual", "incremental", "failed"),
        *reversed(HISTORY),
    ]
    assert list(runs[0]) == [
        "run_id",
        "trigger",
        "mode",
        "status",
        "owner",
        "started_at",
        "finished_at",
        "duration_seconds",
        "pages",
        "total_processed",
        "inserted",
        "updated",
        "unchanged",
        "failed",
        "known_bad",
        "deleted",
        "cursor",
        "error",
        "range_from",
        "range_to",
    ]
    assert "Connection" in runs[0]["error"] or "connect" in runs[0]["error"].lower()
    paged, before = [], None
    while True:
        page = client.get("/scheduler/runs", query_string={"limit": 2, **({"before": before} if before else {})})
        body = page.get_json()
        assert len(body["runs"]) <= 2
        paged += body["runs"]
        before = body["next_before"]
        if before is None:
            break
        assert before == body["runs"][-1]["run_id"]
    assert paged == runs
    one = client.get(f"/scheduler/runs/{runs[2]['run_id']}")
    assert one.status_code == 200 and one.get_json() == runs[2]
    assert runs[2]["duration_seconds"] == 2.0


def test_runs_filter_by_status_trigger_and_mode(app: Flask) -> None:
    client = app.test_client()

    def picked(**query: str) -> list[tuple[str, str, str]]:
        return [
            (r["trigger"], r["mode"], r["status"])
            for r in client.get("/scheduler/runs", query_string=query).get_json()["runs"]
        ]

    assert picked(status="failed") == [("manual", "incremental", "failed"), ("manual", "full", "failed")]
    assert picked(trigger="scheduled", mode="incremental", status="success") == [HISTORY[3], HISTORY[0]]
    assert picked(mode="range") == [HISTORY[2]]
    assert picked(trigger="repair") == []


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("before=-3", "before"),
        ("before=1.5", "before"),
        ("status=done", "status"),
        ("trigger=cron", "trigger"),
        ("mode=fast", "mode"),
    ],
)
def test_bad_query_values_answer_400_naming_the_parameter(app: Flask, query: str, parameter: str) -> None:
    response = app.test_client().get(f"/scheduler/runs?{query}")
    assert response.status_code == 400
    body = response.get_json()
    assert (body["error"], body["parameter"]) == ("Bad Request", parameter)
    assert body["message"].startswith(f"{parameter}: ")


def test_an_unknown_run_is_a_json_404(app: Flask) -> None:
    client = app.test_client()
    for path in ("/scheduler/runs/999999999", "/scheduler/runs/99999999999999999999", "/scheduler/runs/abc"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.get_json()["error"] == "Not Found"


def test_runs_older_than_the_retention_are_pruned_about_hourly(
    app: Flask, db_engine: sa.Engine, table_name: str
) -> None:
    service = scheduler_of(app).service
    old = datetime.now(timezone.utc) - timedelta(days=31)
    for _ in range(2):
        service.history.start("scheduled", "test:1:old", old)
    now = [1000.0]
    pruner = HistoryPruner(lambda: service, 30, clock=lambda: now[0])
    count = "SELECT count(*) FROM rtarf_sync_runs WHERE target_table = :t"
    assert scalar(db_engine, count, t=table_name) == len(HISTORY) + 3
    pruner(SyncResult(run_id=1))
    assert scalar(db_engine, count, t=table_name) == len(HISTORY) + 1  # every recent run kept
    service.history.start("scheduled", "test:1:old", old)
    pruner(SyncResult(run_id=2))  # within the hour: not again
    assert scalar(db_engine, count, t=table_name) == len(HISTORY) + 2
    now[0] += PRUNE_EVERY_SECONDS
    pruner(SyncResult(run_id=3))
    assert scalar(db_engine, count, t=table_name) == len(HISTORY) + 1


def test_the_scheduler_prunes_after_a_counted_run(app: Flask, db_engine: sa.Engine, table_name: str) -> None:
    service = scheduler_of(app).service
    service.history.start("scheduled", "test:1:old", datetime.now(timezone.utc) - timedelta(days=45))
    # The fixture's failed sync-now already pruned once in this process; a new app prunes after its first run.
    fresh = create_app(scheduler_of(app).settings)
    try:
        fresh.test_client().post("/scheduler/sync-now")
        assert (
            scalar(
                db_engine,
                "SELECT count(*) FROM rtarf_sync_runs WHERE target_table = :t "
                "AND started_at < now() - interval '30 days'",
                t=table_name,
            )
            == 0
        )
    finally:
        scheduler_of(fresh).shutdown(timeout=10)


def test_record_routes_answer_503_at_once_while_postgresql_is_down() -> None:
    settings = offline_settings()  # nothing listens on its database port
    app = create_app(settings)
    try:
        client = app.test_client()
        for path in ("/scheduler/runs", "/scheduler/runs/1", "/scheduler/dead-letters"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert response.get_json()["message"].startswith("PostgreSQL cannot be read: "), path
        status = client.get("/scheduler/status").get_json()
        assert (status["lag_seconds"], status["dead_letters_unresolved"]) == (None, None)
    finally:
        scheduler_of(app).shutdown(timeout=10)
