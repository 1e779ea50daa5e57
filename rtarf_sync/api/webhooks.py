"""GET /scheduler/webhooks: the endpoints (masked) and the delivery log."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from rtarf_sync.api.params import handle_route_errors, with_tables
from rtarf_sync.notify import notifier_of

bp = Blueprint("webhooks", __name__, url_prefix="/scheduler")
handle_route_errors(bp)  # PostgreSQL down answers 503, as the other record routes do

LATEST = 50


@bp.get("/webhooks")
def webhooks() -> Response:
    """Configured endpoints (credentials masked, 410-disabled ones flagged) and the latest 50 messages."""
    notifier = notifier_of()
    return jsonify(
        with_tables(lambda: {"endpoints": notifier.endpoints(), "deliveries": notifier.outbox.deliveries(LATEST)})
    )
