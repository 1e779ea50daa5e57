"""The /scheduler routes of the original design: status, sync-now, start, stop, plus jobs."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from rtarf_sync.api.errors import RunNotCompleted
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.engine.result import FAILED

bp = Blueprint("scheduler", __name__, url_prefix="/scheduler")


@bp.get("/status")
def status() -> Response:
    """Schedule state and run counters."""
    return jsonify(scheduler_of().get_status())


@bp.get("/jobs")
def jobs() -> Response:
    """The APScheduler job: id, trigger, next run time, max instances, coalesce, misfire grace."""
    return jsonify({"jobs": scheduler_of().get_jobs()})


@bp.post("/sync-now")
def sync_now() -> Response:
    """Run one sync now and answer when it is done; 409 if one is already running."""
    scheduler = scheduler_of()
    result = scheduler.sync_now()  # SyncBusy becomes 409 in api.errors
    if result.status == FAILED:
        # Probe reachability so the answer says whether the engine or the database is down.
        raise RunNotCompleted(result, scheduler.get_status(), scheduler.check_ready())
    if not result.ok:
        raise RunNotCompleted(result, scheduler.get_status())
    return jsonify({"message": "Manual sync completed", "result": result.to_dict(),
                    "scheduler_status": scheduler.get_status()})


@bp.post("/start")
def start() -> Response:
    """Start or resume the interval job; idempotent."""
    scheduler = scheduler_of()
    changed = scheduler.start()
    message = "Scheduler started" if changed else "Scheduler is already running"
    return jsonify({"message": message, "scheduler_status": scheduler.get_status()})


@bp.post("/stop")
def stop() -> Response:
    """Pause the interval job; a sync in progress finishes. Idempotent."""
    scheduler = scheduler_of()
    changed = scheduler.stop()
    message = "Scheduler stopped" if changed else "Scheduler is already stopped"
    return jsonify({"message": message, "scheduler_status": scheduler.get_status()})
