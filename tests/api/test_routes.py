"""The HTTP API through the app factory: routes and fields of docs/design.md, JSON errors everywhere.

The scheduler gets a job callable here so runs can be held open or made to
fail; tests/service/test_scheduler_with_sync.py and the gunicorn tests use the real service.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import pytest
from flask import Flask

from rtarf_sync import create_app
from rtarf_sync.api.errors import run_http_status
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.engine.runs.result import FAILED, SKIPPED, SyncResult
from rtarf_sync.service.scheduler import RtarfEventScheduler
from tests.infra.support import GatedJob, offline_settings, wait_for

AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app() -> Iterator[AppFactory]:
    """Build apps around a job callable; shut their schedulers down afterwards."""
    apps: list[Flask] = []

    def build(job: Any = None, *, start: bool = False, **env: Any) -> Flask:
        settings = offline_settings(**env)
        scheduler = RtarfEventScheduler(settings=settings, job=job or GatedJob(gated=False))
        app = create_app(settings, scheduler=scheduler, start_scheduler=start)
        apps.append(app)
        return app

    yield build
    for app in apps:
        scheduler_of(app).shutdown(timeout=5)


def test_the_factory_builds_and_starts_nothing(make_app: AppFactory) -> None:
    job = GatedJob(gated=False)
    app = make_app(job)
    status = app.test_client().get("/scheduler/status").get_json()
    assert status["is_running"] is False
    assert job.call_count() == 0
    assert not scheduler_of(app).apscheduler.running


def test_the_factory_starts_the_job_only_when_asked_and_enabled(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    enabled = make_app(start=True, RTARF_SYNC_INTERVAL_SECONDS=3600)
    assert scheduler_of(enabled).get_status()["is_running"] is True
    disabled = make_app(start=True, RTARF_SYNC_ENABLED="false")
    assert scheduler_of(disabled).get_status()["is_running"] is False
    assert "Interval sync is disabled (RTARF_SYNC_ENABLED=false)" in caplog.text


def test_status_has_the_documented_fields(make_app: AppFactory) -> None:
    client = make_app(RTARF_SYNC_INTERVAL_SECONDS=300).test_client()
    response = client.get("/scheduler/status")
    assert response.status_code == 200
    body = response.get_json()
    assert body["is_running"] is False
    assert body["interval_seconds"] == 300
    assert body["last_sync_time"] is None
    assert body["last_sync_status"] is None
    assert (body["total_syncs"], body["failed_syncs"], body["success_rate"]) == (0, 0, "0.0%")
    assert body["next_run_time"] is None
    assert body["skipped_syncs"] == 0


def test_sync_now_answers_when_the_run_is_done(make_app: AppFactory) -> None:
    client = make_app().test_client()
    response = client.post("/scheduler/sync-now")
    assert response.status_code == 200
    body = response.get_json()
    assert body["message"] == "Manual sync completed"
    assert body["result"]["status"] == "success"
    assert (body["result"]["total_processed"], body["result"]["inserted"], body["result"]["updated"]) == (150, 10, 140)
    assert body["scheduler_status"]["total_syncs"] == 1
    assert body["scheduler_status"]["last_sync_status"] == "success"
    assert body["scheduler_status"]["last_sync_time"] is not None


def test_sync_now_during_a_slow_scheduled_run_gets_409(make_app: AppFactory) -> None:
    job = GatedJob()
    app = make_app(job, start=True)
    client = app.test_client()
    assert job.started.wait(10)
    assert client.get("/scheduler/status").get_json()["sync_in_progress"] is True
    response = client.post("/scheduler/sync-now")
    assert response.status_code == 409
    assert response.get_json()["error"] == "Conflict"
    assert "scheduled sync" in response.get_json()["message"]
    job.release.set()
    wait_for(lambda: client.get("/scheduler/status").get_json()["total_syncs"] == 1, what="the scheduled run")
    assert job.call_count() == 1


def test_two_overlapping_manual_calls_second_gets_409(make_app: AppFactory) -> None:
    job = GatedJob()
    app = make_app(job)
    answers: list[int] = []
    first = threading.Thread(target=lambda: answers.append(app.test_client().post("/scheduler/sync-now").status_code))
    first.start()
    assert job.started.wait(10)
    assert app.test_client().post("/scheduler/sync-now").status_code == 409
    job.release.set()
    first.join(10)
    assert answers == [200]


def test_a_failed_run_answers_5xx_with_the_error(make_app: AppFactory) -> None:
    failing = SyncResult(status=FAILED, error="PostgreSQL: connection refused")
    client = make_app(GatedJob(failing, gated=False)).test_client()
    response = client.post("/scheduler/sync-now")
    # Nothing listens on the test's engine and database ports, so the answer says the database is down.
    assert response.status_code == 503
    body = response.get_json()
    assert body["result"]["status"] == "failed"
    assert body["result"]["error"] == "PostgreSQL: connection refused"
    assert body["error"] == "Sync failed"
    assert "PostgreSQL: connection refused" in body["message"]
    assert body["unreachable"] == ["engine", "database"]
    assert body["scheduler_status"]["failed_syncs"] == 1


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        ({"engine": None, "database": None}, 500),
        ({"engine": "ConnectionError: refused", "database": None}, 502),
        ({"engine": None, "database": "OperationalError: refused"}, 503),
        ({"engine": "ConnectionError", "database": "OperationalError"}, 503),
    ],
)
def test_failed_runs_map_to_http_statuses_in_one_place(checks: dict[str, str | None], expected: int) -> None:
    assert run_http_status(SyncResult(status=FAILED, error="x"), checks) == expected
    assert run_http_status(SyncResult(status=SKIPPED, error="x"), checks) == 409


def test_a_skipped_run_answers_409_with_the_reason(make_app: AppFactory) -> None:
    skipped = SyncResult(status=SKIPPED, error="another sync holds the lease on ev_x (h:1:ab, until 10:00)")
    client = make_app(GatedJob(skipped, gated=False)).test_client()
    response = client.post("/scheduler/sync-now")
    assert response.status_code == 409
    body = response.get_json()
    assert body["result"]["status"] == "skipped"
    assert "another sync holds the lease" in body["message"]
    assert body["scheduler_status"]["skipped_syncs"] == 1


def test_start_and_stop_are_idempotent_and_answer_with_the_status(make_app: AppFactory) -> None:
    client = make_app(RTARF_SYNC_INTERVAL_SECONDS=3600).test_client()
    first = client.post("/scheduler/start")
    assert first.status_code == 200
    assert first.get_json()["message"] == "Scheduler started"
    assert first.get_json()["scheduler_status"]["is_running"] is True
    assert client.post("/scheduler/start").get_json()["message"] == "Scheduler is already running"
    stopped = client.post("/scheduler/stop")
    assert stopped.get_json()["message"] == "Scheduler stopped"
    assert stopped.get_json()["scheduler_status"]["is_running"] is False
    assert client.post("/scheduler/stop").get_json()["message"] == "Scheduler is already stopped"
    for _ in range(20):
        assert client.post("/scheduler/start").status_code == 200
        assert client.post("/scheduler/stop").status_code == 200
    assert client.get("/scheduler/status").get_json()["next_run_time"] is None


def test_jobs_shows_the_apscheduler_job(make_app: AppFactory) -> None:
    client = make_app(RTARF_SYNC_INTERVAL_SECONDS=120, RTARF_SYNC_MISFIRE_GRACE_SECONDS=30).test_client()
    client.post("/scheduler/start")
    jobs = client.get("/scheduler/jobs").get_json()["jobs"]
    assert [job["id"] for job in jobs] == ["rtarf_event_sync", "rtarf_verify"]
    job = jobs[0]
    assert job["trigger"] == "interval[0:02:00]"
    assert (job["max_instances"], job["coalesce"], job["misfire_grace_time"]) == (1, True, 30)
    assert job["next_run_time"] is not None


def test_healthz_answers_while_a_sync_runs(make_app: AppFactory) -> None:
    job = GatedJob()
    client = make_app(job, start=True).test_client()
    assert job.started.wait(10)
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz").get_json() == {"status": "ok"}
    job.release.set()


def test_readyz_names_what_is_unreachable(make_app: AppFactory) -> None:
    response = make_app().test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["message"] == "unreachable: engine, database"
    assert body["checks"]["engine"] and body["checks"]["database"]


def test_errors_are_json_404_405_500(make_app: AppFactory) -> None:
    app = make_app()

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("internal detail that must not leak")

    client = app.test_client()
    missing = client.get("/scheduler/nope")
    assert missing.status_code == 404
    assert missing.is_json and missing.get_json()["error"] == "Not Found"
    wrong = client.get("/scheduler/sync-now")
    assert wrong.status_code == 405
    assert wrong.is_json and wrong.get_json()["error"] == "Method Not Allowed"
    assert "POST" in wrong.headers["Allow"]
    assert client.delete("/scheduler/status").status_code == 405
    broken = client.get("/boom")
    assert broken.status_code == 500
    assert broken.is_json and broken.get_json()["error"] == "Internal Server Error"
    assert "internal detail" not in broken.get_data(as_text=True)


def test_metrics_are_prometheus_text(make_app: AppFactory) -> None:
    client = make_app().test_client()
    client.post("/scheduler/sync-now")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    lines = response.get_data(as_text=True).splitlines()
    assert 'rtarf_sync_runs_total{mode="incremental",status="success",trigger="manual"} 1.0' in lines
    assert 'rtarf_sync_events_total{outcome="updated"} 140.0' in lines
    assert "# TYPE rtarf_sync_runs_total counter" in lines
    assert "rtarf_sync_runs_failed_total" not in response.get_data(as_text=True)  # the old hand-written series
