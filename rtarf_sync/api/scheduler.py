"""The /scheduler routes of the original design: status, sync-now, start, stop, plus jobs and retention."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from rtarf_sync.api.errors import RunNotCompleted, error_response
from rtarf_sync.api.run_request import BadRunRequest, parse_run_request
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.engine.runs.result import FAILED, SKIPPED
from rtarf_sync.service.retention import retentions_of

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
def sync_now() -> Response | tuple[Response, int]:
    """Run one sync now (optional body: mode, from, to, force) and answer when it is done; 409 if busy."""
    try:
        run = parse_run_request(_json_body())
    except BadRunRequest as bad:
        return error_response(400, "Bad Request", str(bad), field=bad.field)
    scheduler = scheduler_of()
    result = scheduler.sync_now(**run.as_kwargs())  # SyncBusy becomes 409 in api.errors
    if result.status == FAILED:
        # Probe reachability so the answer says whether the engine or the database is down.
        raise RunNotCompleted(result, scheduler.get_status(), scheduler.check_ready())
    if not result.ok:
        raise RunNotCompleted(result, scheduler.get_status())
    return jsonify(
        {"message": "Manual sync completed", "result": result.to_dict(), "scheduler_status": scheduler.get_status()}
    )


def _json_body() -> object:
    """The request's JSON, None without a body; a body that is not JSON is a bad body."""
    if not request.get_data(cache=True).strip():
        return None
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise BadRunRequest("body", "the body is not valid JSON")
    return body


@bp.post("/start")
def start() -> Response:
    """Start or resume the interval job, here and (as stored in PostgreSQL) on every replica; idempotent."""
    scheduler = scheduler_of()
    changed = scheduler.start_everywhere()
    message = "Scheduler started" if changed else "Scheduler is already running"
    return jsonify({"message": message, "scheduler_status": scheduler.get_status()})


@bp.post("/stop")
def stop() -> Response:
    """Pause the interval job on every replica (stored in PostgreSQL); a sync in progress finishes. Idempotent."""
    scheduler = scheduler_of()
    changed = scheduler.stop_everywhere()
    message = "Scheduler stopped" if changed else "Scheduler is already stopped"
    return jsonify({"message": message, "scheduler_status": scheduler.get_status()})


@bp.post("/retention")
def retention() -> Response | tuple[Response, int]:
    """Drop the partitions past retention_days now (legal holds kept); 409 if a run holds the lease."""
    outcome = retentions_of().run()  # SyncBusy becomes 409 in api.errors
    answer = {"dropped": outcome.dropped, "kept_for_hold": outcome.kept_for_hold}
    if outcome.status == SKIPPED:
        return error_response(409, "Conflict", outcome.error or "the lease is held", **answer)
    if outcome.status == FAILED:
        return error_response(503, "Service Unavailable", outcome.error or "retention failed", **answer)
    return jsonify(answer)
