"""Liveness and readiness."""

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
