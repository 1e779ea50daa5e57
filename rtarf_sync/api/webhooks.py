"""GET /scheduler/webhooks: the endpoints (masked) and the delivery log."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from rtarf_sync.notify import notifier_of
from rtarf_sync.service.extension import scheduler_of

bp = Blueprint("webhooks", __name__, url_prefix="/scheduler")

LATEST = 50


@bp.get("/webhooks")
def webhooks() -> Response:
    """Configured endpoints (credentials masked, 410-disabled ones flagged) and the latest 50 messages."""
    notifier = notifier_of()
    scheduler_of().service.ensure_tables()
    return jsonify({"endpoints": notifier.endpoints(), "deliveries": notifier.outbox.deliveries(LATEST)})
