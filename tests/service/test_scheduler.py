"""RtarfEventScheduler on its own: the APScheduler job, the shared lock, listeners, start/stop/shutdown.

These tests give the scheduler a job callable so a run can be held open or
made to fail on purpose; tests/service/test_scheduler_with_sync.py runs it with the real
SyncService against the real engines.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent

from rtarf_sync.engine.runs.result import FAILED, SKIPPED, SUCCESS, SyncResult
from rtarf_sync.service.scheduler import JOB_ID, RtarfEventScheduler, SyncBusy, SyncRunFailed
from tests.infra.support import GatedJob, offline_settings, wait_for


@pytest.fixture
def schedulers() -> Iterator[list[RtarfEventScheduler]]:
    """Collects schedulers built by a test and shuts them all down afterwards."""
    made: list[RtarfEventScheduler] = []
    yield made
    for scheduler in made:
        scheduler.shutdown(timeout=5)


def build(schedulers: list[RtarfEventScheduler], job: GatedJob | None = None, **env: object) -> RtarfEventScheduler:
    scheduler = RtarfEventScheduler(settings=offline_settings(**env), job=job or GatedJob(gated=False))
    schedulers.append(scheduler)
    return scheduler


def test_the_job_is_one_interval_job_with_explicit_limits(schedulers: list[RtarfEventScheduler]) -> None:
    scheduler = build(schedulers, RTARF_SYNC_INTERVAL_SECONDS=300, RTARF_SYNC_MISFIRE_GRACE_SECONDS=45)
    jobs = scheduler.get_jobs()
    assert len(jobs) == 1
    job = jobs[0]
    assert job["id"] == "rtarf_event_sync"
    assert job["trigger"] == "interval[0:05:00]"
    assert job["interval_seconds"] == 300
    assert (job["max_instances"], job["coalesce"], job["misfire_grace_time"]) == (1, True, 45)
    assert job["timezone"] == "UTC"
    assert str(scheduler.apscheduler.timezone) == "UTC"


def test_readme_constructor_reads_the_environment_and_overrides_the_interval(
    monkeypatch: pytest.MonkeyPatch, schedulers: list[RtarfEventScheduler]
) -> None:
    monkeypatch.setenv("RTARF_TABLE", "readme_events")
    monkeypatch.setenv("RTARF_SYNC_INTERVAL_SECONDS", "600")
    scheduler = RtarfEventScheduler(interval_seconds=10)
    schedulers.append(scheduler)
    assert scheduler.settings.table == "readme_events"
    assert scheduler.get_status()["interval_seconds"] == 10
    assert scheduler.get_jobs()[0]["trigger"] == "interval[0:00:10]"


@pytest.mark.parametrize("bad", [0, -5, 90000, True])
def test_an_interval_out_of_range_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="interval_seconds"):
        RtarfEventScheduler(bad, settings=offline_settings())


def test_nothing_runs_before_start(schedulers: list[RtarfEventScheduler]) -> None:
    job = GatedJob(gated=False)
    scheduler = build(schedulers, job)
    status = scheduler.get_status()
    assert (status["is_running"], status["state"], status["next_run_time"]) == (False, "stopped", None)
    assert job.call_count() == 0


def test_the_first_run_starts_as_soon_as_the_scheduler_starts(schedulers: list[RtarfEventScheduler]) -> None:
    job = GatedJob(gated=False)
    scheduler = build(schedulers, job, RTARF_SYNC_INTERVAL_SECONDS=3600)
    assert scheduler.start() is True
    wait_for(lambda: scheduler.get_status()["total_syncs"] == 1, what="the first scheduled run")
    status = scheduler.get_status()
    assert status["is_running"] is True
    assert status["last_sync_status"] == SUCCESS
    assert status["last_result"]["inserted"] == 10
    assert status["success_rate"] == "100.0%"
    next_run = datetime.fromisoformat(status["next_run_time"])
    assert next_run > datetime.now(timezone.utc) + timedelta(minutes=50)  # then every interval


def test_results_reach_listeners_as_retval_and_failures_as_job_errors(schedulers: list[RtarfEventScheduler]) -> None:
    failing = SyncResult(status=FAILED, error="PostgreSQL: connection refused")
    job = GatedJob(failing, gated=False)
    scheduler = build(schedulers, job, RTARF_SYNC_INTERVAL_SECONDS=3600)
    seen: list[JobExecutionEvent] = []
    scheduler.apscheduler.add_listener(seen.append, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.start()
    wait_for(lambda: scheduler.get_status()["failed_syncs"] == 1, what="the failed run to be counted")
    assert seen[0].code == EVENT_JOB_ERROR
    assert isinstance(seen[0].exception, SyncRunFailed)
    assert seen[0].exception.result is failing
    status = scheduler.get_status()
    assert (status["total_syncs"], status["last_sync_status"], status["success_rate"]) == (1, FAILED, "0.0%")
    assert status["last_result"]["error"] == "PostgreSQL: connection refused"

    job.result = SyncResult(status=SUCCESS, inserted=2, total_processed=2)
    scheduler.apscheduler.modify_job(JOB_ID, next_run_time=datetime.now(timezone.utc))
    wait_for(lambda: scheduler.get_status()["total_syncs"] == 2, what="the second run")
    assert seen[-1].code == EVENT_JOB_EXECUTED
    assert seen[-1].retval is job.result
    assert scheduler.get_status()["success_rate"] == "50.0%"


def test_a_job_that_raises_is_counted_as_failed(schedulers: list[RtarfEventScheduler]) -> None:
    def broken() -> SyncResult:
        raise KeyError("cursor")

    scheduler = RtarfEventScheduler(settings=offline_settings(), job=broken)
    schedulers.append(scheduler)
    scheduler.start()
    wait_for(lambda: scheduler.get_status()["failed_syncs"] == 1, what="the failure to be counted")
    assert scheduler.get_status()["last_result"]["error"] == "unexpected error: 'cursor'"
    manual = scheduler.sync_now()
    assert manual.status == FAILED
    assert scheduler.get_status()["failed_syncs"] == 2


def test_sync_now_during_a_scheduled_run_is_refused(schedulers: list[RtarfEventScheduler]) -> None:
    job = GatedJob()
    scheduler = build(schedulers, job)
    scheduler.start()
    assert job.started.wait(10)
    status = scheduler.get_status()
    assert status["sync_in_progress"] is True
    assert status["current_run"]["trigger"] == "scheduled"
    with pytest.raises(SyncBusy, match="scheduled sync"):
        scheduler.sync_now()
    job.release.set()
    wait_for(lambda: scheduler.get_status()["total_syncs"] == 1, what="the scheduled run to end")
    assert job.call_count() == 1
    assert scheduler.sync_now().status == SUCCESS
    assert scheduler.get_status()["total_syncs"] == 2


def test_a_scheduled_run_during_a_manual_one_is_skipped_and_counted(schedulers: list[RtarfEventScheduler]) -> None:
    job = GatedJob()
    scheduler = build(schedulers, job)
    manual = threading.Thread(target=scheduler.sync_now)
    manual.start()
    assert job.started.wait(10)
    scheduler.start()  # its first run is due now, while the manual run holds the lock
    wait_for(lambda: scheduler.get_status()["skipped_syncs"] == 1, what="the scheduled run to be skipped")
    job.release.set()
    manual.join(10)
    status = scheduler.get_status()
    assert job.call_count() == 1  # the two never overlapped
    assert (status["total_syncs"], status["skipped_syncs"]) == (1, 1)
    assert "manual sync" in status["last_skip_reason"]


def test_two_manual_runs_never_overlap(schedulers: list[RtarfEventScheduler]) -> None:
    job = GatedJob()
    scheduler = build(schedulers, job)
    first = threading.Thread(target=scheduler.sync_now)
    first.start()
    assert job.started.wait(10)
    with pytest.raises(SyncBusy):
        scheduler.sync_now()
    job.release.set()
    first.join(10)
    assert job.call_count() == 1


def test_sync_now_works_when_not_started_and_when_paused(schedulers: list[RtarfEventScheduler]) -> None:
    job = GatedJob(gated=False)
    scheduler = build(schedulers, job, RTARF_SYNC_INTERVAL_SECONDS=3600)
    assert scheduler.sync_now().status == SUCCESS
    scheduler.start()
    wait_for(lambda: scheduler.get_status()["total_syncs"] == 2, what="the first scheduled run")
    scheduler.stop()
    assert scheduler.sync_now().status == SUCCESS
    status = scheduler.get_status()
    assert (status["total_syncs"], status["state"]) == (3, "paused")


def test_stop_pauses_start_resumes_and_both_are_idempotent(schedulers: list[RtarfEventScheduler]) -> None:
    scheduler = build(schedulers, RTARF_SYNC_INTERVAL_SECONDS=3600)
    assert scheduler.stop() is False  # nothing to stop yet
    assert scheduler.start() is True
    assert scheduler.start() is False
    assert scheduler.stop() is True
    assert scheduler.stop() is False
    paused = scheduler.get_status()
    assert (paused["is_running"], paused["state"], paused["next_run_time"]) == (False, "paused", None)
    assert scheduler.start() is True
    resumed = scheduler.get_status()
    assert resumed["is_running"] is True
    assert resumed["next_run_time"] is not None


def test_a_start_after_stop_runs_at_once(schedulers: list[RtarfEventScheduler]) -> None:
    job = GatedJob(gated=False)
    scheduler = build(schedulers, job, RTARF_SYNC_INTERVAL_SECONDS=3600)
    scheduler.start()
    wait_for(lambda: scheduler.get_status()["total_syncs"] == 1, what="the first run")
    scheduler.stop()
    scheduler.start()
    wait_for(lambda: scheduler.get_status()["total_syncs"] == 2, what="the run after the restart")
    assert job.call_count() == 2


def test_a_hundred_start_stop_cycles_raise_nothing(schedulers: list[RtarfEventScheduler]) -> None:
    job = GatedJob(gated=False)
    scheduler = build(schedulers, job, RTARF_SYNC_INTERVAL_SECONDS=3600)
    for _ in range(100):
        scheduler.start()
        scheduler.stop()
    scheduler.start()
    assert scheduler.get_status()["is_running"] is True
    wait_for(lambda: scheduler.get_status()["total_syncs"] >= 1, what="a run after the last start")
    wait_for(lambda: scheduler.get_status()["total_syncs"] == job.call_count(), what="every run to be counted")


def test_a_run_still_going_at_the_next_tick_is_counted_as_overlapping(schedulers: list[RtarfEventScheduler]) -> None:
    job = GatedJob()
    scheduler = build(schedulers, job, RTARF_SYNC_INTERVAL_SECONDS=1)
    scheduler.start()
    assert job.started.wait(10)
    wait_for(lambda: scheduler.get_status()["overlapping_runs"] >= 1, what="a max-instances event")
    assert job.call_count() == 1  # max_instances=1: the tick did not start a second run
    job.release.set()


def test_a_run_later_than_the_grace_time_is_counted_as_missed(schedulers: list[RtarfEventScheduler]) -> None:
    job = GatedJob(gated=False)
    scheduler = build(schedulers, job, RTARF_SYNC_INTERVAL_SECONDS=7200, RTARF_SYNC_MISFIRE_GRACE_SECONDS=1)
    scheduler.start()
    wait_for(lambda: scheduler.get_status()["total_syncs"] == 1, what="the first run")
    scheduler.apscheduler.modify_job(JOB_ID, next_run_time=datetime.now(timezone.utc) - timedelta(hours=1))
    wait_for(lambda: scheduler.get_status()["missed_runs"] == 1, what="the missed run to be counted")
    assert job.call_count() == 1


def test_a_listener_failure_never_escapes(
    schedulers: list[RtarfEventScheduler], caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = build(schedulers)
    # An event whose retval is not a SyncResult makes the stats update fail inside the listener.
    bad = JobExecutionEvent(EVENT_JOB_EXECUTED, JOB_ID, "default", datetime.now(timezone.utc), retval=object())
    scheduler._on_job_event(bad)  # the listener itself is under test
    assert "Could not record the outcome" in caplog.text
    assert scheduler.get_status()["total_syncs"] == 0


def test_shutdown_waits_for_the_running_sync_then_refuses_new_ones(schedulers: list[RtarfEventScheduler]) -> None:
    job = GatedJob()
    scheduler = build(schedulers, job)
    scheduler.start()
    assert job.started.wait(10)
    outcome: list[bool] = []
    closer = threading.Thread(target=lambda: outcome.append(scheduler.shutdown(timeout=20)))
    closer.start()
    wait_for(lambda: scheduler.state() == "stopped", what="shutdown to begin")
    assert closer.is_alive()  # it waits for the run, which holds the lock until released
    job.release.set()
    closer.join(25)
    assert outcome == [True]
    assert scheduler.get_status()["state"] == "stopped"
    assert not scheduler.apscheduler.running
    with pytest.raises(SyncBusy, match="shutting down"):
        scheduler.sync_now()
    with pytest.raises(RuntimeError, match="shut down"):
        scheduler.start()
    assert scheduler.shutdown(timeout=1) is True  # idempotent


def test_shutdown_gives_up_after_its_timeout(schedulers: list[RtarfEventScheduler]) -> None:
    job = GatedJob()
    scheduler = build(schedulers, job)
    scheduler.start()
    assert job.started.wait(10)
    assert scheduler.shutdown(timeout=0.5) is False
    job.release.set()


def test_skipped_results_of_the_job_are_counted_apart(schedulers: list[RtarfEventScheduler]) -> None:
    skipped = SyncResult(status=SKIPPED, error="another sync holds the lease on ev_x (host:1:ab, until ...)")
    scheduler = build(schedulers, GatedJob(skipped, gated=False))
    scheduler.start()
    wait_for(lambda: scheduler.get_status()["skipped_syncs"] == 1, what="the skipped run")
    status = scheduler.get_status()
    assert (status["total_syncs"], status["failed_syncs"], status["last_sync_status"]) == (0, 0, None)
    assert status["last_skip_reason"].startswith("another sync holds the lease")


def test_result_listeners_see_manual_and_scheduled_runs_and_cannot_break_them(
    schedulers: list[RtarfEventScheduler],
) -> None:
    scheduler = build(schedulers, RTARF_SYNC_INTERVAL_SECONDS=3600)
    seen: list[SyncResult] = []

    def broken(result: SyncResult) -> None:
        raise RuntimeError("listener bug")

    scheduler.add_result_listener(broken)
    scheduler.add_result_listener(seen.append)
    manual = scheduler.sync_now()
    assert manual.status == SUCCESS and seen == [manual]
    scheduler.start()  # its first run starts at once, on the scheduler's thread
    wait_for(lambda: len(seen) == 2, what="the scheduled run reaching the listener")
    assert scheduler.get_status()["total_syncs"] == 2
