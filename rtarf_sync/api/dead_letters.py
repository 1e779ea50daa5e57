"""Dead letters over HTTP: list, show one (with its raw document), replay.

Only the detail route returns `raw_document`; with RTARF_API_TOKEN set it needs
the token like a POST (api/safety/auth.py), because event data can be sensitive.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from werkzeug.exceptions import NotFound

from rtarf_sync.api.errors import RunNotCompleted
from rtarf_sync.api.params import (
    MAX_ID,
    BadParameter,
    choice_param,
    handle_route_errors,
    int_param,
    json_object,
    path_id,
    text_param,
    with_tables,
)
from rtarf_sync.engine.checks.dead_letters import DeadLetters
from rtarf_sync.engine.runs.history import MAX_LIMIT
from rtarf_sync.engine.runs.result import FAILED
from rtarf_sync.service.extension import scheduler_of

bp = Blueprint("dead_letters", __name__, url_prefix="/scheduler")
handle_route_errors(bp)
DEFAULT_LIMIT = 50
MAX_IDS = 10_000


def _letters() -> DeadLetters:
    service = scheduler_of().service
    return DeadLetters(service.engine, service.tables)


@bp.get("/dead-letters")
def dead_letters() -> Response:
    """Dead letters newest first, without their documents: {"dead_letters", "unresolved", "next_before"}."""
    limit = int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT) or DEFAULT_LIMIT
    before = int_param("before", None, 1, MAX_ID)
    resolved = choice_param("resolved", ("true", "false"))
    reason = text_param("reason")
    page = with_tables(lambda: _letters().page(limit, before, reason, None if resolved is None else resolved == "true"))
    return jsonify({"dead_letters": page.items, "unresolved": page.unresolved, "next_before": page.next_before})


@bp.get("/dead-letters/<id>")
def dead_letter(id: str) -> Response:  # `id`, as the route documents it
    """One dead letter with raw_document (token required when one is set), or 404."""
    number = path_id(id, "dead letter")
    found = with_tables(lambda: _letters().get(number))
    if found is None:
        raise NotFound(description=f"no dead letter {number} for table {scheduler_of().settings.table}")
    return jsonify(found)


def _replay_ids(body: dict[str, Any]) -> list[int] | None:
    unknown = sorted(set(body) - {"ids"})
    if unknown:
        raise BadParameter(unknown[0], 'is not a field of a replay request (only "ids")')
    ids = body.get("ids")
    if ids is None:
        return None
    if (
        not isinstance(ids, list)
        or not ids
        or len(ids) > MAX_IDS
        or not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID for i in ids)
    ):
        raise BadParameter("ids", f"must be a list of 1 to {MAX_IDS} dead-letter ids (positive integers)")
    return sorted(set(ids))


@bp.post("/dead-letters/replay")
def replay() -> Response:
    """Fetch each dead letter's document again and write those that now convert: {replayed, still_failing, gone}."""
    from rtarf_sync.engine.checks.replay import TRIGGER, DeadLetterReplay, ReplayOutcome  # the sync core, on first use

    ids = _replay_ids(json_object())
    scheduler = scheduler_of()
    with scheduler.exclusive(TRIGGER):  # SyncBusy becomes 409 in api.errors
        outcome: ReplayOutcome = DeadLetterReplay(scheduler.service).run(ids)
    result = outcome.result
    if outcome.ran:  # nothing replayed (unknown or resolved ids): no run to count, no webhook to send
        scheduler.record(result)
    if result.status == FAILED:
        raise RunNotCompleted(result, scheduler.get_status(), scheduler.check_ready())
    if not result.ok:
        raise RunNotCompleted(result, scheduler.get_status())
    return jsonify(outcome.to_dict())
