"""Stop and start act on every process of one database: the intent is stored in rtarf_sync_controls.

Schedulers and apps in one test process stand for replicas (real PostgreSQL, a job callable
instead of the engine); tests/e2e/test_fleet_controls_processes.py does it with real processes.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterator

import pytest
from flask import Flask

from rtarf_sync import create_app
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.service.scheduler import RtarfEventScheduler
from tests.infra.support import GatedJob, offline_settings, wait_for

TTL = 5  # the controls job runs every third of it


@pytest.fixture
def replicas(database_url: str) -> Iterator[Callable[..., tuple[RtarfEventScheduler, GatedJob]]]:
    """Build schedulers on one table of the real database; shut them down afterwards."""
    table = f"ctl_{uuid.uuid4().hex[:8]}"
    made: list[RtarfEventScheduler] = []

    def build(**env: Any) -> tuple[RtarfEventScheduler, GatedJob]:
        environ = {"RTARF_DATABASE_URL": database_url, "RTARF_TABLE": table, "RTARF_LEASE_TTL_SECONDS": TTL}
        settings = offline_settings(**{**environ, "RTARF_SYNC_INTERVAL_SECONDS": 1, **env})
        job = GatedJob(gated=False)
        scheduler = RtarfEventScheduler(settings=settings, job=job)
        made.append(scheduler)
        return scheduler, job

    yield build
    for scheduler in made:
        scheduler.shutdown(timeout=5)


def _job_paused(scheduler: RtarfEventScheduler) -> bool:
    return scheduler.get_status()["next_run_time"] is None


def test_a_stop_on_one_pauses_the_job_of_the_other_and_a_start_on_one_resumes_both(
    replicas: Callable[..., tuple[RtarfEventScheduler, GatedJob]],
) -> None:
    (one, _), (two, two_job) = replicas(), replicas()
    assert one.start() and two.start()
    assert one.stop_everywhere() is True
    assert (one.state(), _job_paused(one)) == ("paused", True)
    wait_for(lambda: two.state() == "paused" and _job_paused(two), timeout=3 * TTL, what="the other to pause")
    assert two.get_status()["is_running"] is False
    assert two.stop_everywhere() is False  # already stopped, as stored: it still resumes with the others

    assert one.start_everywhere() is True
    before = two_job.call_count()
    wait_for(lambda: two.state() == "running", timeout=3 * TTL, what="the second to resume")
    wait_for(lambda: two_job.call_count() > before, timeout=3 * TTL, what="a run in the second again")
    assert one.state() == "running"


def test_a_process_that_starts_while_the_pipeline_is_stopped_starts_it_paused(
    replicas: Callable[..., tuple[RtarfEventScheduler, GatedJob]],
) -> None:
    operator, _ = replicas()
    operator.stop_everywhere()
    late, late_job = replicas()
    late.start()
    wait_for(lambda: _job_paused(late), timeout=3 * TTL, what="the late one to pause its job")
    assert late.state() == "paused"
    assert late_job.call_count() == 0  # its first turn read the intent and did not run
    assert late.sync_now().ok and late_job.call_count() == 1  # sync-now still runs a paused pipeline


def test_a_process_that_never_started_the_job_is_not_started_by_a_start_elsewhere(
    replicas: Callable[..., tuple[RtarfEventScheduler, GatedJob]],
) -> None:
    # A process that runs only the controls job (as a sharing process that owns nothing, or a
    # disabled one) follows the intent in its status but never starts the job for it.
    operator, _ = replicas()
    bystander, bystander_job = replicas()
    bystander.apscheduler.start()
    operator.stop_everywhere()
    wait_for(lambda: bystander.stopped_everywhere, timeout=3 * TTL, what="the bystander to read the stop")
    assert bystander.state() == "paused"
    operator.start_everywhere()
    wait_for(lambda: operator.state() == "running", timeout=3 * TTL, what="the operator's own job")
    wait_for(lambda: not bystander.stopped_everywhere, timeout=3 * TTL, what="the bystander to read the start")
    assert (bystander.state(), bystander_job.call_count()) == ("paused", 0)


@pytest.fixture
def apps(database_url: str) -> Iterator[Callable[..., Flask]]:
    """Build apps (started) on one table of the real database; shut them down afterwards."""
    table = f"ctl_{uuid.uuid4().hex[:8]}"
    made: list[Flask] = []

    def build(**env: Any) -> Flask:
        environ = {"RTARF_DATABASE_URL": database_url, "RTARF_TABLE": table, "RTARF_LEASE_TTL_SECONDS": TTL}
        settings = offline_settings(RTARF_SYNC_INTERVAL_SECONDS=1, **{**environ, **env})
        scheduler = RtarfEventScheduler(settings=settings, job=GatedJob(gated=False))
        app = create_app(settings, scheduler=scheduler, start_scheduler=True)
        made.append(app)
        return app

    yield build
    for app in made:
        scheduler_of(app).shutdown(timeout=5)


def test_the_routes_stop_and_start_every_app_and_a_disabled_one_stays_stopped(apps: Callable[..., Flask]) -> None:
    first, second = apps().test_client(), apps().test_client()
    disabled = apps(RTARF_SYNC_ENABLED="false").test_client()
    stopped = first.post("/scheduler/stop")
    assert stopped.status_code == 200
    assert stopped.get_json()["message"] == "Scheduler stopped"
    assert stopped.get_json()["scheduler_status"]["state"] == "paused"

    def state(client: Any) -> str:
        return str(client.get("/scheduler/status").get_json()["state"])

    wait_for(lambda: state(second) == "paused", timeout=3 * TTL, what="the second app to show paused")
    assert second.post("/scheduler/stop").get_json()["message"] == "Scheduler is already stopped"
    started = second.post("/scheduler/start")
    assert started.get_json()["message"] == "Scheduler started"
    assert started.get_json()["scheduler_status"]["is_running"] is True
    wait_for(lambda: state(first) == "running", timeout=3 * TTL, what="the first app to resume")
    assert first.post("/scheduler/start").get_json()["message"] == "Scheduler is already running"
    assert state(disabled) == "stopped"  # RTARF_SYNC_ENABLED=false: never started, whatever is stored


def test_a_read_begun_before_a_stop_here_does_not_undo_it(
    replicas: Callable[..., tuple[RtarfEventScheduler, GatedJob]],
) -> None:
    scheduler, _ = replicas(RTARF_SYNC_INTERVAL_SECONDS=3600)
    scheduler.start()
    scheduler.stop_everywhere()
    # The controls job read "not stopped" (no intent stored here yet: 0) just before the stop stored it.
    scheduler.apply_control(False, read_after=0)
    assert (scheduler.state(), _job_paused(scheduler)) == ("paused", True)
    scheduler.apply_control(False, read_after=1)  # a read begun after it: followed
    assert scheduler.state() == "running"
