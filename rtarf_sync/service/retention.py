"""Retention inside the service: the `rtarf_retention` job and what POST /scheduler/retention calls.

A pass holds the scheduler's process lock (never beside a sync of this process) and drops
each expired partition as a run under the pipeline's lease (engine/runs/retention.py). Its
drops are told to listeners (the metrics, the `retention.dropped` webhook), not to the run
listeners: a drop is not a sync, and must not read as one (sync.succeeded, sync.recovered).
The job runs at start-up and then hourly, a companion of the sync job.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable, cast

from flask import Flask

from rtarf_sync.engine.runs.retention import Retention, RetentionOutcome
from rtarf_sync.service.jobs import SyncBusy
from rtarf_sync.service.scheduler import RtarfEventScheduler

logger = logging.getLogger("rtarf_sync.retention")
JOB_ID = "rtarf_retention"
EXTENSION_KEY = "rtarf_retention"
INTERVAL_SECONDS = 3600
RetentionListener = Callable[[RetentionOutcome], None]


class Retentions:
    """Runs retention passes for one scheduler's target and tells listeners each outcome."""

    def __init__(self, scheduler: RtarfEventScheduler) -> None:
        self.scheduler = scheduler
        self._listeners: list[RetentionListener] = []

    def add_listener(self, listener: RetentionListener) -> None:
        """Call `listener(outcome)` after every pass that dropped something; keep it quick."""
        self._listeners.append(listener)

    def run(self, trigger: str = "manual", now: datetime | None = None) -> RetentionOutcome:
        """One pass now under the process lock (SyncBusy if a sync runs in this process)."""
        scheduler = self.scheduler
        with scheduler.exclusive("retention"):
            outcome = Retention(scheduler.service).run(trigger, now or datetime.now(timezone.utc))
        if outcome.runs:
            scheduler.stored_state.invalidate()
        if outcome.dropped:
            for listener in list(self._listeners):
                try:
                    listener(outcome)
                except Exception:  # a listener must never break a pass
                    logger.exception("A retention listener failed")
        return outcome

    def scheduled(self) -> None:
        """The retention job: one pass; never raises (the next hour tries again)."""
        try:
            outcome = self.run(trigger="scheduled")
            if outcome.error:
                logger.warning("Scheduled retention did not finish: %s", outcome.error)
        except SyncBusy as busy:
            logger.info("Scheduled retention skipped: %s", busy)
        except Exception:  # the log says why; the next interval tries again
            logger.exception("Scheduled retention failed")


def init_app(app: Flask, scheduler: RtarfEventScheduler, *, primary: bool = True) -> Retentions:
    """Build a pipeline's Retentions (the primary's is kept in `app.extensions`); add its hourly job
    (`rtarf_retention`, `rtarf_retention.NAME` for a pipeline not named default) when it sets retention_days."""
    retentions = Retentions(scheduler)
    if primary:
        app.extensions[EXTENSION_KEY] = retentions
    if scheduler.settings.retention_days is not None:
        scheduler.add_companion_job(
            retentions.scheduled, JOB_ID, "RTARF partition retention", INTERVAL_SECONDS, at_start=True
        )
    return retentions


def retentions_of(app: Flask | None = None) -> Retentions:
    """The Retentions of the pipeline the current request is about, else of `app`'s target pipeline."""
    from rtarf_sync.service.extension import pipeline_part

    return cast(Retentions, pipeline_part("retentions", EXTENSION_KEY, app))
