"""POST /scheduler/verify and GET/PUT /scheduler/cursor.

Bodies are checked field by field; a bad one answers 400 naming the field and
nothing runs. Times are ISO-8601; one without a zone is taken as UTC, like
every time the service shows. Errors of these routes map to HTTP here:

    SyncBusy (api.errors)   -> 409 a sync or verification runs in this process
    LeaseHeld               -> 409 a run of another process holds the lease
    CursorRefused           -> 409 the cursor could skip events (send "force": true)
    RtarfSyncError or       -> 503 when PostgreSQL is unreachable, 502 when the engine is,
    SQLAlchemyError            500 otherwise (both ends are probed, as for a failed sync-now)
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest

from rtarf_sync.api.errors import error_response
from rtarf_sync.engine.runs.cursor import CursorControl, CursorRefused
from rtarf_sync.engine.errors import RtarfSyncError, redact
from rtarf_sync.engine.runs.lease import LeaseHeld
from rtarf_sync.engine.runs.plan import parse_bound
from rtarf_sync.engine.checks.verify import WindowError
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.service.verification import verifications_of

bp = Blueprint("verification", __name__, url_prefix="/scheduler")

_VERIFY_FIELDS = ("from", "to", "bucket", "repair")
_CURSOR_FIELDS = ("cursor", "force")


def _body(allowed: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object body (empty when none was sent); an unknown field is a 400 naming it."""
    if not request.get_data():
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest(description="the body must be a JSON object")
    for name in body:
        if name not in allowed:
            raise BadRequest(description=f"{name}: unknown field; expected any of {', '.join(allowed)}")
    return body


def _instant(body: dict[str, Any], name: str) -> datetime | None:
    """An ISO-8601 time from the body (UTC when it has no zone), or None when absent or null."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(description=f"{name}: {repr(value)[:50]} is not an ISO-8601 time such as 2026-01-31T00:00:00Z")
    try:
        moment = parse_bound(value, naive_utc=True)
    except ValueError as error:
        raise BadRequest(
            description=f"{name}: {error}; expected an ISO-8601 time such as 2026-01-31T00:00:00Z"
        ) from None
    return moment.astimezone(timezone.utc)


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(description=f"{name}: must be true or false, not {value!r}")
    return value


@bp.post("/verify")
def verify() -> Response:
    """Compare per-bucket counts of the engine and PostgreSQL; with "repair": true, repair each differing bucket."""
    body = _body(_VERIFY_FIELDS)
    bucket = body.get("bucket")
    if bucket is not None and not isinstance(bucket, str):
        raise BadRequest(description=f'bucket: must be "1h" or "1d", not {bucket!r}')
    start, end, repair = _instant(body, "from"), _instant(body, "to"), _flag(body, "repair")
    try:
        answer = verifications_of().verify(start=start, end=end, bucket=bucket, repair=repair)
    except WindowError as error:
        raise BadRequest(description=f"{error.field}: {error}") from None
    return jsonify(answer)


@bp.get("/cursor")
def cursor() -> Response:
    """The stored cursor of (index setting, target table)."""
    return jsonify(CursorControl(scheduler_of().service).show())


@bp.put("/cursor")
def set_cursor() -> Response:
    """Set the cursor (null: read the whole history next); a later one needs "force": true."""
    body = _body(_CURSOR_FIELDS)
    if "cursor" not in body:
        raise BadRequest(description="cursor: required (an ISO-8601 time, or null to read the whole history)")
    wanted, force = _instant(body, "cursor"), _flag(body, "force")
    scheduler = scheduler_of()
    with scheduler.exclusive("cursor"):  # no run of this process moves the cursor meanwhile
        return jsonify(CursorControl(scheduler.service).set(wanted, force=force))


@bp.errorhandler(LeaseHeld)
def _lease_held(error: LeaseHeld) -> tuple[Response, int]:
    return error_response(409, "Conflict", f"A sync is already running: {error}")


@bp.errorhandler(CursorRefused)
def _cursor_refused(error: CursorRefused) -> tuple[Response, int]:
    return error_response(409, "Conflict", f"Cursor not changed: {error}")


@bp.errorhandler(RtarfSyncError)
@bp.errorhandler(sa.exc.SQLAlchemyError)
def _failed(error: Exception) -> tuple[Response, int]:
    """Which end failed decides the status, as for a failed sync-now: probe both (api.errors.run_http_status)."""
    scheduler = scheduler_of()
    first = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    message = redact(first, scheduler.service.secrets())[:500]
    checks = scheduler.check_ready()
    if checks.get("database"):
        return error_response(503, "Service Unavailable", f"PostgreSQL cannot be used: {message}", checks=checks)
    if checks.get("engine"):
        return error_response(502, "Bad Gateway", f"The search engine cannot be used: {message}", checks=checks)
    return error_response(500, "Internal Server Error", f"Failed: {message}", checks=checks)
