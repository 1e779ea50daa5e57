"""RtarfEventScheduler: one APScheduler BackgroundScheduler running the sync on an interval.

    scheduler = RtarfEventScheduler(interval_seconds=10)
    scheduler.start()
    print(scheduler.get_status())
    scheduler.stop()

The job is a thin adapter around `SyncService.run()`: a failed result raises
`SyncRunFailed` so APScheduler reports EVENT_JOB_ERROR, any other result is the
job's return value and reaches the listener as `event.retval`. Scheduled and
manual runs share one non-blocking lock, so they never overlap in this
process; across processes the lease inside `SyncService.run()` does the same.

`stop_everywhere()` / `start_everywhere()` (the stop and start routes) also record
the intent in `rtarf_sync_controls`; every process reads it before each scheduled
run and every third of the lease TTL, and pauses or resumes its job to match.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler

import sqlalchemy as sa

from config import DEFAULT_PIPELINE, Settings, load_settings
from rtarf_sync.logs import quiet_expected_failures
from rtarf_sync.run_context import in_run
from rtarf_sync.service.jobs import SyncBusy, SyncRunFailed, describe_job, failed_result, log_result
from rtarf_sync.engine.runs.lease import owner_id
from rtarf_sync.engine.runs.result import FAILED, SKIPPED, SyncResult, utc_iso
from rtarf_sync.engine.views.snapshot import StoredState, read_stored_state
from rtarf_sync.engine.target.controls import read_paused, write_paused
from rtarf_sync.engine.target.tables import is_missing_table
from rtarf_sync.service.pruning import HistoryPruner
from rtarf_sync.service.state_cache import StateCache, status_fields
from rtarf_sync.service.stats import SyncStats

if TYPE_CHECKING:
    from rtarf_sync.engine.runs.sync import SyncService

__all__ = ["JOB_ID", "RtarfEventScheduler", "SyncBusy", "SyncRunFailed", "pipeline_job_id"]

logger = logging.getLogger("rtarf_sync.scheduler")  # the name log filters know

JOB_ID = "rtarf_event_sync"
CONTROLS_JOB_ID = "rtarf_controls"  # follows the operators' stored intent; runs whenever the scheduler runs
JOB_EVENTS = EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
MIN_INTERVAL, MAX_INTERVAL = 1, 86400
HAND_OVER_SECONDS = 5.0

SyncJob = Callable[[], SyncResult]
ResultListener = Callable[[SyncResult], None]
PageObserver = Callable[[str, float], None]


def pipeline_job_id(base: str, pipeline: str) -> str:
    """A job's id for `pipeline`: `base` for the default pipeline, `base.NAME` for the others."""
    return base if pipeline == DEFAULT_PIPELINE else f"{base}.{pipeline}"


class RtarfEventScheduler:
    """The interval job, its lock and its stats; `start`, `stop` and `get_status` are synchronous."""

    def __init__(
        self,
        interval_seconds: int | None = None,
        *,
        settings: Settings | None = None,
        service: SyncService | None = None,
        job: SyncJob | None = None,
        apscheduler: BackgroundScheduler | None = None,
    ) -> None:
        settings = settings if settings is not None else load_settings(os.environ)
        if interval_seconds is not None:
            if isinstance(interval_seconds, bool) or not MIN_INTERVAL <= int(interval_seconds) <= MAX_INTERVAL:
                raise ValueError(
                    f"interval_seconds={interval_seconds!r} is invalid: "
                    f"expected an integer from {MIN_INTERVAL} to {MAX_INTERVAL}"
                )
            settings = replace(settings, sync_interval_seconds=int(interval_seconds))
        self.settings = settings
        self.stats = SyncStats()
        self._result_listeners: list[ResultListener] = []
        self._status_providers: list[Callable[[], dict[str, Any]]] = []
        self._page_observers: list[PageObserver] = []  # handed to the SyncService when it is built
        self._service = service
        self._job = job
        self._run_lock = threading.Lock()  # one run at a time in this process, scheduled or manual
        self._state_lock = threading.RLock()  # start/stop/shutdown never interleave
        self._service_lock = threading.Lock()
        self._current: dict[str, Any] | None = None
        self._last_sync_at: float | None = None  # monotonic start of the last sync of this process
        self._handed_over = threading.Event()  # set when APScheduler has taken up a due run
        self._stopping = False
        self._closed = False
        self._companions: list[str] = []  # other interval jobs that start and pause with the sync job
        self._at_start: set[str] = set()  # companions that also run when the sync job starts
        self._fleet_paused = False  # the operators' intent in rtarf_sync_controls, as last read or written
        self._held = False  # the job is paused by that intent, and resumes here once it is cleared
        self._intent_writes = 0  # bumped by each stop/start stored here: a read begun before is stale
        self.job_id = pipeline_job_id(JOB_ID, settings.pipeline)
        self.controls_job_id = pipeline_job_id(CONTROLS_JOB_ID, settings.pipeline)
        # Each pipeline's jobs run on an executor of their own with one thread: its sync and its verification
        # never run side by side, and a pipeline whose run hangs never holds up another pipeline's jobs.
        self._executor = "default" if settings.pipeline == DEFAULT_PIPELINE else f"pipeline.{settings.pipeline}"
        self._owns_scheduler = apscheduler is None  # a shared scheduler is shut down by whoever made it
        self._scheduler = self._build_scheduler(apscheduler)
        self.stored_state = StateCache(self._read_stored_state)
        self.add_result_listener(HistoryPruner(lambda: self.service, settings.run_history_days))

    def _build_scheduler(self, shared: BackgroundScheduler | None) -> BackgroundScheduler:
        scheduler = shared if shared is not None else BackgroundScheduler(timezone=timezone.utc)
        scheduler.add_executor(ThreadPoolExecutor(max_workers=1), self._executor)
        if self._executor != "default":
            quiet_expected_failures(f"apscheduler.executors.{self._executor}")
        scheduler.add_listener(self._on_job_event, JOB_EVENTS)
        scheduler.add_listener(self._on_hand_over, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
        # Added paused; start() gives it next_run_time=now so the first run starts at once.
        scheduler.add_job(
            self._scheduled_run,
            "interval",
            id=self.job_id,
            name="RTARF event sync"
            if self.settings.pipeline == DEFAULT_PIPELINE
            else f"RTARF event sync ({self.settings.pipeline})",
            executor=self._executor,
            seconds=self.settings.sync_interval_seconds,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=self.settings.misfire_grace_seconds,
            next_run_time=None,
        )
        # Not on the pipeline's executor: a long run there must not delay following a stop or start.
        with contextlib.suppress(ValueError):  # another pipeline on this scheduler added it
            scheduler.add_executor(ThreadPoolExecutor(max_workers=1), "controls")
        scheduler.add_job(
            self._follow_controls,
            "interval",
            id=self.controls_job_id,
            name=f"RTARF stop/start intent ({self.settings.pipeline})",
            executor="controls",
            seconds=max(1.0, self.settings.lease_ttl_seconds / 3),  # the membership heartbeat's period
            max_instances=1,
            coalesce=True,
        )
        return scheduler

    @property
    def interval_seconds(self) -> int:
        """Seconds between scheduled runs."""
        return self.settings.sync_interval_seconds

    @property
    def stopping(self) -> bool:
        """True once a shutdown was requested: no new run starts."""
        return self._stopping

    @property
    def apscheduler(self) -> BackgroundScheduler:
        """The underlying APScheduler scheduler, for inspection and extra listeners."""
        return self._scheduler

    @property
    def service(self) -> SyncService:
        """The SyncService, built on first use so importing or constructing touches no network."""
        with self._service_lock:
            if self._service is None:
                from rtarf_sync.engine.runs.sync import SyncService  # the sync core is only needed once a run starts

                self._service = SyncService(self.settings)
            if self._page_observers:
                for observer in self._page_observers:
                    self._service.add_page_observer(observer)
                self._page_observers = []
            return self._service

    # -- running one sync --------------------------------------------------------------

    @contextmanager
    def exclusive(self, trigger: str, wait: float = 0.0, **current: Any) -> Iterator[None]:
        """Hold the process lock, as a sync does, for work that must not overlap one (verify, repair).

        Raises SyncBusy if a sync or other such work is still in progress after `wait` seconds (at
        once by default), or on shutdown; `current` adds to what the status shows of the work in progress.
        """
        acquired = self._run_lock.acquire(timeout=wait) if wait > 0 else self._run_lock.acquire(blocking=False)
        if acquired and self._stopping:
            self._run_lock.release()
            acquired = False
        if not acquired:
            raise SyncBusy(self._busy_reason())
        try:
            self._current = {"trigger": trigger, **current, "started_at": utc_iso(datetime.now(timezone.utc))}
            yield
        finally:
            self._current = None
            self._run_lock.release()

    def _execute(self, trigger: str, **run: Any) -> SyncResult:
        """Run one sync under the process lock; raise SyncBusy if one is already running.

        `run` holds SyncService.run's mode, start, end and force, when not the defaults.
        """
        with self.exclusive(trigger, mode=run.get("mode", "incremental")):
            self._last_sync_at = time.monotonic()
            return self._call(trigger, **run)

    def sync_if_due(self) -> None:
        """Between the repairs of a verification: run the scheduled sync now if its interval has passed,
        so long repairs never starve it (the scheduler's one worker may be the one repairing)."""
        last = self._last_sync_at
        if self.state() != "running" or (last is not None and time.monotonic() - last < self.interval_seconds):
            return
        # SyncBusy: a sync (or another verification) holds the lock: it is running, which is what we wanted.
        with contextlib.suppress(SyncBusy):
            self.record(self._execute("scheduled"))

    def _call(self, trigger: str, **run: Any) -> SyncResult:
        try:
            if self._job is None:
                return self.service.run(trigger=trigger, **run)  # logs its own start and outcome
            result = self._job()
        except Exception as error:  # SyncService.run never raises for a failed run; a bug or a custom job might
            logger.exception("Sync raised an unexpected error")
            return SyncResult(status=FAILED, trigger=trigger, error=f"unexpected error: {error}")
        if not isinstance(result, SyncResult):
            result = SyncResult(status=FAILED, trigger=trigger, error=f"job returned {type(result).__name__}")
        log_result(result)
        return result

    def _busy_reason(self) -> str:
        if self._stopping:
            return "the service is shutting down"
        current = self._current
        if current is None:
            return "a sync is already in progress"
        return f"a {current['trigger']} sync started at {current['started_at']} is still in progress"

    def _scheduled_run(self) -> SyncResult | None:
        """The APScheduler job: its return value reaches listeners as event.retval (None: not run)."""
        self._follow_controls()
        if self._fleet_paused:  # stopped on some replica: the job is paused now, this turn does not run
            return None
        try:
            result = self._execute("scheduled")
        except SyncBusy as busy:
            result = SyncResult(status=SKIPPED, trigger="scheduled", error=str(busy))
            log_result(result)
        if result.status == FAILED:
            raise SyncRunFailed(result)
        return result

    def sync_now(
        self,
        trigger: str = "manual",
        mode: str = "incremental",
        start: datetime | None = None,
        end: datetime | None = None,
        force: bool = False,
    ) -> SyncResult:
        """Run one sync in the calling thread and count it; raise SyncBusy if one is running.

        mode, start, end and force are SyncService.run's (full and range runs, the delete valve).
        """
        run: dict[str, Any] = {}
        if (mode, start, end, force) != ("incremental", None, None, False):
            run = {"mode": mode, "start": start, "end": end, "force": force}
        result = self._execute(trigger, **run)
        self.record(result)
        return result

    def add_companion_job(
        self, func: Callable[[], Any], job_id: str, name: str, seconds: int, at_start: bool = False
    ) -> None:
        """Add another interval job on this pipeline's one worker (so it never runs beside a scheduled
        sync) that starts and pauses with the sync job; its first run is at most one interval after start,
        or right after the start's first sync with `at_start`.

        `job_id` is the default pipeline's; other pipelines' get their name appended."""
        job_id = pipeline_job_id(job_id, self.settings.pipeline)
        self._scheduler.add_job(
            func,
            "interval",
            id=job_id,
            executor=self._executor,
            name=name,
            seconds=seconds,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=self.settings.misfire_grace_seconds,
            next_run_time=None,
            replace_existing=True,
        )
        if job_id not in self._companions:
            self._companions.append(job_id)
        if at_start:
            self._at_start.add(job_id)
        if self.state() == "running":
            self._resume_companion(job_id)

    def _resume_companion(self, job_id: str) -> None:
        if job_id in self._at_start:
            self._scheduler.modify_job(job_id, next_run_time=datetime.now(timezone.utc))
        else:
            self._scheduler.resume_job(job_id)

    def add_result_listener(self, listener: ResultListener) -> None:
        """Call `listener(result)` after every run this scheduler counts (metrics, webhooks); it must be quick."""
        self._result_listeners.append(listener)

    def add_status_provider(self, provider: Callable[[], dict[str, Any]]) -> None:
        """Merge `provider()` into every `get_status()` (e.g. the trigger's state); it must be quick."""
        self._status_providers.append(provider)

    def add_page_observer(self, observer: PageObserver) -> None:
        """Have the SyncService call `observer(stage, seconds)` for every page, without building it now."""
        with self._service_lock:
            if self._service is None:
                self._page_observers.append(observer)
                return
        self._service.add_page_observer(observer)

    def record(self, result: SyncResult) -> None:
        """Count one finished run and tell the result listeners; a failing listener is logged, never raised."""
        self.stats.record(result)
        self.stored_state.invalidate()
        with in_run(result):  # what the listeners log (webhooks, metrics) names the run
            for listener in list(self._result_listeners):
                try:
                    listener(result)
                except Exception:  # a listener must never break the run's bookkeeping
                    logger.exception("A result listener failed")

    def _on_job_event(self, event: JobEvent) -> None:
        """Listener: fold one job event into the stats; never lets an exception escape."""
        try:
            if event.job_id != self.job_id:
                return
            if event.code == EVENT_JOB_EXECUTED:
                if event.retval is not None:  # None: the pipeline is stopped, nothing ran
                    self.record(event.retval)
            elif event.code == EVENT_JOB_ERROR:
                self.record(failed_result(event.exception))
            elif event.code == EVENT_JOB_MISSED:
                self.stats.record_missed()
                logger.warning(
                    "A scheduled sync was missed: it could not start within %ss of its time",
                    self.settings.misfire_grace_seconds,
                )
            elif event.code == EVENT_JOB_MAX_INSTANCES:
                self.stats.record_overlap()
        except Exception:
            logger.exception("Could not record the outcome of a sync run")

    def _on_hand_over(self, event: JobEvent) -> None:
        """Listener: a due run was submitted (or refused because one is still running)."""
        if event.job_id == self.job_id:
            self._handed_over.set()

    # -- controlling the schedule ------------------------------------------------------

    def _job_or_none(self) -> Job | None:
        return self._scheduler.get_job(self.job_id)

    def start(self) -> bool:
        """Start the scheduler if needed and run the job now, then every interval; False if already active."""
        with self._state_lock:
            if self._closed:
                raise RuntimeError("the scheduler has been shut down")
            if not self._scheduler.running:
                self._scheduler.start()
            if self._job_active():
                return False
            # Like the first start, a start after stop runs at once and then every interval. Waiting
            # for the hand-over keeps start() synchronous: a stop() right after it cannot cancel
            # that first run, as in the README's start / get_status / stop example.
            self._handed_over.clear()
            self._scheduler.modify_job(self.job_id, next_run_time=datetime.now(timezone.utc))
            if not self._handed_over.wait(HAND_OVER_SECONDS):
                logger.warning("The first run was not taken up within %ss", HAND_OVER_SECONDS)
            for job_id in self._companions:
                self._resume_companion(job_id)  # next run on its own interval, unless it runs at start
            logger.info("RTARF Event Scheduler started (interval: %ss)", self.interval_seconds)
            return True

    def stop(self) -> bool:
        """Pause the interval job (a run in progress finishes); return False if it was not active."""
        with self._state_lock:
            self._held = False  # this process no longer wants the job, whatever the stored intent says
            if not self._job_active():
                return False
            self._pause_jobs()
            logger.info("RTARF Event Scheduler stopped")
            return True

    def _job_active(self) -> bool:
        job = self._job_or_none()
        return job is not None and job.next_run_time is not None

    def _pause_jobs(self) -> None:
        for job_id in (self.job_id, *self._companions):
            self._scheduler.pause_job(job_id)

    # -- the operators' intent, shared by every replica --------------------------------

    def stop_everywhere(self) -> bool:
        """Record the pipeline as stopped for every process, then pause the job here; False if it was
        already stopped. If the database cannot be written, this process alone stops (logged)."""
        previous, recorded = self._write_intent(True)
        with self._state_lock:
            active, held = self._job_active(), self._held
            self.stop()
            if not recorded:
                return active
            self._intent_writes += 1
            self._fleet_paused = True
            self._held = active or held  # so a start on any replica resumes it here too
        return active or previous is not True

    def start_everywhere(self) -> bool:
        """Record the pipeline as started for every process, then start the job here; False if it was
        already running. Processes that paused it for the stored intent resume it within a heartbeat."""
        previous, recorded = self._write_intent(False)
        with self._state_lock:
            if recorded:
                self._intent_writes += 1
                self._fleet_paused = False
            started = self.start()
        return started or (recorded and previous is True)

    @property
    def stopped_everywhere(self) -> bool:
        """Whether the stored intent, as last read or written here, says the pipeline is stopped."""
        return self._fleet_paused

    def apply_control(self, paused: bool, read_after: int | None = None) -> None:
        """Follow the stored intent: pause the job here while `paused`, resume it once cleared if it paused it.

        `read_after`: the count of intents stored here when the read began; if one was stored since, the read is
        stale and ignored."""
        with self._state_lock:
            if read_after is not None and read_after != self._intent_writes:
                return
            self._fleet_paused = paused
            if self._closed or self._stopping:
                return
            if paused and self._job_active():
                self._pause_jobs()
                self._held = True
                logger.info("RTARF Event Scheduler paused: the pipeline was stopped for every replica")
            elif not paused and self._held:
                self._held = False
                self.start()

    def _follow_controls(self) -> None:
        """The controls job (and the first step of each scheduled run): read the intent and follow it."""
        if self._stopping:
            return
        read_after = self._intent_writes
        try:
            service = self.service
            paused = read_paused(service.engine, service.tables.controls, self.settings.table)
        except Exception as error:  # noqa: BLE001 - database down: keep following the intent last read
            logger.debug("The stored stop/start intent could not be read: %s", str(error).splitlines()[0][:300])
            return
        self.apply_control(bool(paused), read_after)

    def _write_intent(self, paused: bool) -> tuple[bool | None, bool]:
        """Store the intent: (the one it replaced, None if none; whether it was stored)."""
        service = self.service

        def write() -> bool | None:
            return write_paused(service.engine, service.tables.controls, self.settings.table, paused, owner_id())

        try:
            try:
                return write(), True
            except sa.exc.ProgrammingError as error:
                if not is_missing_table(error):
                    raise
                service.ensure_tables()  # a database no run has prepared yet
                return write(), True
        except Exception as error:  # noqa: BLE001 - the route still acts on this process
            logger.warning(
                "Could not record for every replica that the pipeline is %s; only this process is: %s",
                "stopped" if paused else "started",
                str(error).splitlines()[0][:300],
            )
            return None, False

    def request_stop(self) -> None:
        """Refuse new runs and ask a running one to stop after its page; safe in a signal handler."""
        self._stopping = True
        if self._service is not None:
            self._service.request_stop()

    def shutdown(self, timeout: float = 25.0) -> bool:
        """Stop for good: interrupt a running sync, wait up to `timeout` for it, release resources.

        Returns True when no run was left running.
        """
        with self._state_lock:
            if self._closed:
                return True
            self._closed = True
            self.request_stop()
            if self._scheduler.running:
                for job_id in (self.job_id, self.controls_job_id, *self._companions):
                    self._scheduler.pause_job(job_id)
            finished = self._run_lock.acquire(timeout=timeout)
            if finished:
                self._run_lock.release()
            else:
                logger.warning("A sync was still running after %ss; exiting without it", timeout)
            if self._scheduler.running and self._owns_scheduler:
                self._scheduler.shutdown(wait=False)
            if finished and self._service is not None:
                self._service.close()
            logger.info("RTARF Event Scheduler shut down")
            return finished

    # -- reading the state -------------------------------------------------------------

    @property
    def in_progress(self) -> bool:
        """True while a run holds this process's run lock."""
        return self._current is not None

    def _read_stored_state(self) -> StoredState:
        service = self.service
        return read_stored_state(service.engine, service.tables, self.settings.es_index)

    def state(self) -> str:
        """ "running" (job active), "paused" (scheduler up, job paused or stopped for every replica) or "stopped"."""
        if self._closed or not self._scheduler.running:
            return "stopped"
        if self._fleet_paused:  # as stored: the same answer on every replica, whichever runs the pipeline
            return "paused"
        return "running" if self._job_active() else "paused"

    def get_status(self) -> dict[str, Any]:
        """Everything `GET /scheduler/status` shows: schedule state plus the run stats."""
        job = self._job_or_none()
        current = self._current
        status: dict[str, Any] = {
            "is_running": self.state() == "running",
            "state": self.state(),
            "interval_seconds": self.interval_seconds,
            "next_run_time": utc_iso(job.next_run_time) if job is not None else None,
            "sync_in_progress": current is not None,
            "current_run": dict(current) if current else None,
            "job_id": self.job_id,
            "pid": os.getpid(),  # tells gunicorn workers apart
        }
        status.update(self.stats.snapshot())
        status.update(status_fields(self.stored_state.get()))  # from PostgreSQL, cached
        for provider in list(self._status_providers):
            try:
                status.update(provider())
            except Exception:  # status must answer even if an add-on cannot
                logger.exception("A status provider failed")
        return status

    def get_jobs(self) -> list[dict[str, Any]]:
        """This pipeline's APScheduler jobs as `GET /scheduler/jobs` shows them."""
        own = (self.job_id, *self._companions)
        return [describe_job(job) for job in self._scheduler.get_jobs() if job.id in own]

    def check_ready(self) -> dict[str, str | None]:
        """Reachability of the engine and the database: None where reachable, else the error."""
        return self.service.check_ready()
