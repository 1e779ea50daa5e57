"""Verification and self-repair inside the service: the `rtarf_verify` job and what the routes call.

Every verification (scheduled or asked for over HTTP) holds the scheduler's
process lock for each of its parts (the count, each repair, the count after
repairs), so it never runs beside a sync of this process; between parts the
lock is free, and a scheduled sync that came due runs there. Across processes
the sync lease does the same. Repair runs are counted through
`scheduler.record()`, so stats, metrics and webhooks see them like any other run.
The scheduled job is a companion of the sync job: it starts and pauses with it
(POST /scheduler/start and /stop).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Callable, TypeVar, cast

from flask import Flask

from rtarf_sync.engine.runs.lease import LeaseHeld
from rtarf_sync.engine.checks.repair import Busy, Step, verify_and_repair
from rtarf_sync.service.jobs import SyncBusy
from rtarf_sync.service.scheduler import RtarfEventScheduler

logger = logging.getLogger("rtarf_sync.verify")
T = TypeVar("T")

JOB_ID = "rtarf_verify"
EXTENSION_KEY = "rtarf_verification"
VerificationListener = Callable[[dict[str, Any]], None]


class Verifications:
    """Runs verifications for one scheduler's target and tells listeners each answer."""

    def __init__(self, scheduler: RtarfEventScheduler) -> None:
        self.scheduler = scheduler
        self._listeners: list[VerificationListener] = []

    def add_listener(self, listener: VerificationListener) -> None:
        """Call `listener(answer)` after every verification (webhooks for verify.drift, metrics); keep it quick."""
        self._listeners.append(listener)

    def verify(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        bucket: str | None = None,
        repair: bool = False,
        trigger: str = "manual",
    ) -> dict[str, Any]:
        """Verify now under the process lock (SyncBusy if a sync runs here, LeaseHeld if one runs elsewhere)."""
        scheduler = self.scheduler
        answer = verify_and_repair(
            scheduler.service,
            start=start,
            end=end,
            bucket=bucket,
            repair_drift=repair,
            trigger=trigger,
            record=scheduler.record,
            stopping=lambda: scheduler.stopping,
            step=self._stepper(),
        )
        for listener in list(self._listeners):
            try:
                listener(answer)
            except Exception:  # a listener must never break a verification
                logger.exception("A verification listener failed")
        return answer

    def _stepper(self) -> Step:
        """Each part of one verification under the process lock, released between parts: the first part
        refuses at once (SyncBusy), later ones first let a due scheduled sync run, then wait for the lock."""
        scheduler, parts = self.scheduler, [0]

        def step(work: Callable[[], T]) -> T:
            parts[0] += 1
            if parts[0] == 1:
                with scheduler.exclusive("verify"):
                    return work()
            scheduler.sync_if_due()
            try:
                with scheduler.exclusive("verify", wait=float(scheduler.settings.lease_ttl_seconds)):
                    return work()
            except SyncBusy as busy:
                raise Busy(str(busy)) from None

        return step

    def scheduled(self) -> None:
        """The `rtarf_verify` job: verify the default window, repairing if RTARF_VERIFY_REPAIR; never raises."""
        scheduler = self.scheduler
        try:
            scheduler.service.ensure_tables()
            if scheduler.service.sink.load_cursor() is None:
                logger.info("Scheduled verification skipped: nothing has been synced yet")
                return
            self.verify(repair=scheduler.settings.verify.repair, trigger="scheduled")
        except (SyncBusy, LeaseHeld) as busy:
            logger.info("Scheduled verification skipped: %s", busy)
        except Exception:  # the next interval tries again; the log says why this one failed
            logger.exception("Scheduled verification failed")


def init_app(app: Flask, scheduler: RtarfEventScheduler, *, primary: bool = True) -> Verifications:
    """Build a pipeline's Verifications (the primary's is kept in `app.extensions`); add its `rtarf_verify`
    job (`rtarf_verify.NAME` for a pipeline not named default) unless the verify interval is 0."""
    verifications = Verifications(scheduler)
    if primary:
        app.extensions[EXTENSION_KEY] = verifications
    seconds = scheduler.settings.verify.interval_seconds
    if seconds > 0:
        scheduler.add_companion_job(verifications.scheduled, JOB_ID, "RTARF verification and self-repair", seconds)
    return verifications


def verifications_of(app: Flask | None = None) -> Verifications:
    """The Verifications of the pipeline the current request is about, else of `app`'s target pipeline."""
    from rtarf_sync.service.extension import pipeline_part

    return cast(Verifications, pipeline_part("verifications", EXTENSION_KEY, app))
