"""Liveness and readiness: /healthz and /livez touch nothing outside the process; /readyz is bounded and cached."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify

from rtarf_sync.api.errors import error_response
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.server.readiness import Readiness

bp = Blueprint("health", __name__)

EXTENSION_KEY = "rtarf_readiness"


def init_app(app: Flask) -> Readiness:
    """Share one readiness check among the app's probes."""
    scheduler = scheduler_of(app)
    readiness = Readiness(scheduler.check_ready, names=("engine", "database"))
    app.extensions[EXTENSION_KEY] = readiness
    return readiness


@bp.get("/healthz")
def healthz() -> Response:
    """200 while the process can answer; checks nothing outside it."""
    return jsonify({"status": "ok"})


@bp.get("/livez")
def livez() -> Response:
    """The same as /healthz, under the name Kubernetes probes use."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    """200 when the engine and the database answer, else 503 naming what is unreachable (within 5 s)."""
    checks = current_app.extensions[EXTENSION_KEY].current()
    down = [name for name, problem in checks.items() if problem is not None]
    if down:
        return error_response(503, "Service Unavailable", "unreachable: " + ", ".join(down), checks=checks)
    return jsonify({"status": "ready", "checks": checks})
