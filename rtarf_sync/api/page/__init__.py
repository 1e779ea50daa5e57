"""The status page for people (`GET /`) and the JSON it refreshes from (`GET /scheduler/overview`).

The page reads PostgreSQL itself (engine/views/overview.py) rather than the other
JSON routes, so it shows runs, dead letters and verifications whichever
routes this version has. The one exception is webhook health, whose tables
belong to the webhook feature: it is asked of `GET /scheduler/webhooks` inside
the process, and shown as "not available" when that route does not exist.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, cast

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from rtarf_sync.api.page.view import build_view
from rtarf_sync.engine.views.overview import read_overview
from rtarf_sync.service.extension import scheduler_of

logger = logging.getLogger(__name__)

bp = Blueprint("page", __name__)

DEFAULT_REFRESH_SECONDS = 5
# Nothing but this app's own files: an injected tag could neither load nor run anything.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _route_exists(path: str, method: str) -> bool:
    try:
        current_app.url_map.bind("localhost").match(path, method=method)
    except HTTPException:
        return False
    return True


def _route_json(path: str) -> dict[str, Any] | None:
    """The JSON answer of one of this app's GET routes; None when the route does not exist,
    {"unavailable": why} when it failed."""
    if not _route_exists(path, "GET"):
        return None
    with current_app.test_request_context(path, method="GET"):
        response = current_app.full_dispatch_request()
    if response.status_code != 200 or not response.is_json:
        logger.warning("GET %s answered %s for the status page", path, response.status_code)
        return {"unavailable": f"GET {path} answered {response.status_code}"}
    return cast("dict[str, Any]", response.get_json())


def _database_part() -> tuple[dict[str, Any] | None, str | None]:
    """The PostgreSQL overview, or None and a one-line reason when it cannot be read."""
    service = scheduler_of().service
    try:
        return read_overview(service.engine, service.tables, service.settings.es_index), None
    except (sa.exc.SQLAlchemyError, OSError) as error:
        first_line = (str(getattr(error, "orig", None) or error).strip().splitlines() or [""])[0]
        logger.warning("The status page could not read PostgreSQL: %s", first_line)
        return None, f"{type(error).__name__}: {first_line}"[:300]


def collect() -> dict[str, Any]:
    """Everything `GET /scheduler/overview` answers: the data, then the page's view of it."""
    scheduler = scheduler_of()
    now = datetime.now(timezone.utc)
    status, jobs = scheduler.get_status(), scheduler.get_jobs()
    overview, database_error = _database_part()
    webhooks = _route_json("/scheduler/webhooks")
    verify_route = _route_exists("/scheduler/verify", "POST")
    view = build_view(status, jobs, overview, database_error, webhooks, verify_route, now)
    settings = scheduler.settings
    data = {
        "generated_at": now.isoformat(),
        "table": settings.table,
        "source_index": settings.es_index,
        "database_error": database_error,
        "scheduler_status": status,
        "jobs": jobs,
    }
    data.update(
        overview or {"cursor": None, "lag_seconds": None, "runs": [], "dead_letters": None, "verification": None}
    )
    data.update(webhooks=webhooks, view=view)
    return data


def _refresh_seconds() -> int:
    """`?refresh=N` (1 to 3600 seconds) for a wall display or a test; 5 by default."""
    value = request.args.get("refresh", type=int)
    return DEFAULT_REFRESH_SECONDS if value is None else min(max(value, 1), 3600)


@bp.get("/")
def status_page() -> Response:
    """The HTML status page: rendered complete on the server, refreshed by its script."""
    data = collect()
    token_required = current_app.config["RTARF_SETTINGS"].api_token is not None
    html = render_template(
        "status.html", data=data, view=data["view"], refresh_ms=_refresh_seconds() * 1000, token_required=token_required
    )
    return Response(html, content_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@bp.get("/scheduler/overview")
def overview() -> Response:
    """Status, jobs, the last 50 runs, cursor and lag, dead letters, verification, webhooks, and the page's view."""
    response = jsonify(collect())
    response.headers["Cache-Control"] = "no-store"
    return response
