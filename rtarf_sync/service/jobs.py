"""What the interval job raises and reports: the pieces RtarfEventScheduler builds on."""

from __future__ import annotations

import logging
from typing import Any

from apscheduler.job import Job

from rtarf_sync.engine.runs.result import FAILED, PARTIAL, SKIPPED, SUCCESS, SyncResult, utc_iso

logger = logging.getLogger("rtarf_sync.scheduler")


class SyncBusy(RuntimeError):
    """A run is already in progress in this process; the caller should try again later."""


class SyncRunFailed(RuntimeError):
    """Raised by the scheduled job when a run failed, so APScheduler reports EVENT_JOB_ERROR."""

    def __init__(self, result: SyncResult) -> None:
        super().__init__(result.error or "sync failed")
        self.result = result


def log_result(result: SyncResult) -> None:
    """Say how a run of a custom job ended, in the wording SyncService uses for its own runs."""
    counts = f"{result.total_processed} events processed, {result.inserted} inserted, {result.updated} updated"
    if result.status == SUCCESS:
        logger.info("Sync completed successfully: %s", counts)
    elif result.status == PARTIAL:
        logger.warning("Sync completed with %d failed events: %s", result.failed, counts)
    elif result.status == SKIPPED:
        logger.info("Sync skipped: %s", result.error)
    else:
        logger.error("Sync failed: %s", result.error)


def failed_result(error: BaseException | None) -> SyncResult:
    """The result behind an EVENT_JOB_ERROR: the failed run's own, or one describing the crash."""
    if isinstance(error, SyncRunFailed):
        return error.result
    return SyncResult(status=FAILED, trigger="scheduled", error=f"unexpected error: {error}")


def describe_job(job: Job) -> dict[str, Any]:
    """The APScheduler job as GET /scheduler/jobs shows it."""
    interval = getattr(job.trigger, "interval", None)
    return {
        "id": job.id,
        "name": job.name,
        "trigger": str(job.trigger),
        "interval_seconds": int(interval.total_seconds()) if interval is not None else None,
        "next_run_time": utc_iso(job.next_run_time),
        "paused": job.next_run_time is None,
        "max_instances": job.max_instances,
        "coalesce": job.coalesce,
        "misfire_grace_time": job.misfire_grace_time,
        "timezone": str(getattr(job.trigger, "timezone", "")),
    }
