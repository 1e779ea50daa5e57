"""The run history over HTTP: GET /scheduler/runs (filters, keyset paging) and /scheduler/runs/<id>."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from werkzeug.exceptions import NotFound

from rtarf_sync.api.params import MAX_ID, choice_param, handle_route_errors, int_param, path_id, with_tables
from rtarf_sync.engine.runs.history import MAX_LIMIT, RUN_MODES, RUN_STATUSES, RUN_TRIGGERS, RunFilter, list_runs
from rtarf_sync.service.extension import scheduler_of

bp = Blueprint("runs", __name__, url_prefix="/scheduler")
handle_route_errors(bp)
DEFAULT_LIMIT = 20


@bp.get("/runs")
def runs() -> Response:
    """Runs of this target, newest first: {"runs": [...], "next_before": id or null}."""
    limit = int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT) or DEFAULT_LIMIT
    before = int_param("before", None, 1, MAX_ID)
    where = RunFilter(
        status=choice_param("status", RUN_STATUSES),
        trigger=choice_param("trigger", RUN_TRIGGERS),
        mode=choice_param("mode", RUN_MODES),
    )
    service = scheduler_of().service
    page = with_tables(lambda: list_runs(service.engine, service.tables, limit, before, where))
    return jsonify({"runs": page.runs, "next_before": page.next_before})


@bp.get("/runs/<run_id>")
def run(run_id: str) -> Response:
    """One run object, or 404."""
    number = path_id(run_id, "run")
    service = scheduler_of().service
    found = with_tables(lambda: service.history.get(number))
    if found is None:
        raise NotFound(description=f"no run {run_id} for table {service.settings.table}")
    return jsonify(found)
