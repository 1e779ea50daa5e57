"""Every error the API returns, as JSON, and the one place that maps outcomes to HTTP statuses.

    HTTPException (404, 405, 401, ...)  -> its own status
    SyncBusy                            -> 409 (a run is in progress in this process)
    RunNotCompleted(result, checks)     -> 409 when skipped (lease held elsewhere),
                                           503 when the database is unreachable,
                                           502 when the engine is unreachable,
                                           500 for any other failed run
    any other exception                 -> 500, details only in the log

Every JSON, text and HTML body (the status page) also passes through the
Redactor on its way out, so a secret that slipped into an error text never
leaves the process. Before that, an error body has every value the caller sent
masked (`echoes`), so the Redactor's `***` can never confirm a guessed secret.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from rtarf_sync.api.safety.echoes import mask_echoes, request_values
from rtarf_sync.logs import Redactor
from rtarf_sync.engine.runs.result import SKIPPED, SyncResult
from rtarf_sync.service.scheduler import SyncBusy

logger = logging.getLogger(__name__)


class RunNotCompleted(Exception):
    """A manual run ended failed or skipped; carries its result, the status and, if probed, reachability."""

    def __init__(
        self, result: SyncResult, scheduler_status: dict[str, Any], checks: dict[str, str | None] | None = None
    ) -> None:
        super().__init__(result.error or result.status)
        self.result = result
        self.scheduler_status = scheduler_status
        self.checks = checks or {}


def run_http_status(result: SyncResult, checks: dict[str, str | None]) -> int:
    """The HTTP status for a manual run that did not complete; `checks` is SyncService.check_ready()."""
    if result.status == SKIPPED:
        return 409
    if checks.get("database"):
        return 503  # our own store is down: the service cannot do its job
    if checks.get("engine"):
        return 502  # the upstream engine is down or refusing us
    return 500


def error_response(status: int, error: str, message: str, **extra: Any) -> tuple[Response, int]:
    """The JSON error body used everywhere: {"error": ..., "message": ..., ...}."""
    return jsonify({"error": error, "message": message, **extra}), status


def _http_error(error: HTTPException) -> tuple[Response, int]:
    response, status = error_response(error.code or 500, error.name, error.description or error.name)
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value  # keeps Allow on 405 and WWW-Authenticate on 401
    return response, status


def _busy(error: SyncBusy) -> tuple[Response, int]:
    return error_response(409, "Conflict", f"A sync is already running: {error}")


def _not_completed(error: RunNotCompleted) -> tuple[Response, int]:
    result = error.result
    status = run_http_status(result, error.checks)
    verb = "skipped" if result.status == SKIPPED else "failed"
    extra: dict[str, Any] = {"result": result.to_dict(), "scheduler_status": error.scheduler_status}
    unreachable = [name for name, problem in error.checks.items() if problem]
    if unreachable:
        extra["unreachable"] = unreachable
        extra["checks"] = error.checks
    return error_response(
        status, "Conflict" if status == 409 else "Sync failed", f"Manual sync {verb}: {result.error}", **extra
    )


def _unexpected(error: Exception) -> tuple[Response, int]:
    if isinstance(error, HTTPException):
        return _http_error(error)
    logger.exception("Unhandled error while serving a request")
    return error_response(500, "Internal Server Error", "unexpected error; see the service log")


def init_app(app: Flask, redactor: Redactor) -> None:
    """Register the JSON error handlers and the response redaction on `app`."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(SyncBusy, _busy)
    app.register_error_handler(RunNotCompleted, _not_completed)
    app.register_error_handler(Exception, _unexpected)

    @app.after_request
    def redact_body(response: Response) -> Response:
        if response.is_json or response.mimetype in ("text/plain", "text/html"):
            text = response.get_data(as_text=True)
            echoed = mask_echoes(text, request_values(request)) if response.status_code >= 400 else text
            cleaned = redactor(echoed)
            if cleaned != text:
                response.set_data(cleaned)
        return response
