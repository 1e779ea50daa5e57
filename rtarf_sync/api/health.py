"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from rtarf_sync.api.errors import error_response
from rtarf_sync.service.extension import scheduler_of

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 while the process can answer; checks nothing outside it."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    """200 when the engine and the database answer, else 503 naming what is unreachable."""
    checks = scheduler_of().check_ready()
    down = [name for name, problem in checks.items() if problem is not None]
    if down:
        return error_response(503, "Service Unavailable", "unreachable: " + ", ".join(down), checks=checks)
    return jsonify({"status": "ready", "checks": checks})


_METRICS = (
    ("rtarf_sync_runs_total", "counter", "Runs started, scheduled and manual.", "total_syncs"),
    ("rtarf_sync_runs_failed_total", "counter", "Runs that ended failed.", "failed_syncs"),
    ("rtarf_sync_runs_skipped_total", "counter", "Runs skipped because another owner held the lease.",
     "skipped_syncs"),
    ("rtarf_sync_runs_missed_total", "counter", "Scheduled runs missed by more than the grace time.",
     "missed_runs"),
    ("rtarf_sync_events_processed_total", "counter", "Events read and written by finished runs.",
     "events_processed"),
)


@bp.get("/metrics")
def metrics() -> Response:
    """The run counters in the Prometheus text format."""
    status = scheduler_of().get_status()
    lines: list[str] = []
    for name, kind, help_text, key in _METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {status[key]}"]
    lines += ["# HELP rtarf_sync_scheduler_running 1 while the interval job is active.",
              "# TYPE rtarf_sync_scheduler_running gauge",
              f"rtarf_sync_scheduler_running {int(status['is_running'])}",
              "# HELP rtarf_sync_in_progress 1 while a sync runs in this process.",
              "# TYPE rtarf_sync_in_progress gauge",
              f"rtarf_sync_in_progress {int(status['sync_in_progress'])}"]
    return Response("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4; charset=utf-8")
