"""POST /scheduler/trigger: ask for a sync soon; bursts are coalesced, busy is never an error."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify

from rtarf_sync.api.errors import error_response
from rtarf_sync.service.extension import requested_pipeline, scheduler_of
from rtarf_sync.service.scheduler import RtarfEventScheduler
from rtarf_sync.service.trigger import SyncTrigger, TriggerRefused

bp = Blueprint("trigger", __name__, url_prefix="/scheduler")

EXTENSION_KEY = "rtarf_trigger"


def init_app(app: Flask, scheduler: RtarfEventScheduler | None = None, *, primary: bool = True) -> SyncTrigger:
    """Build the trigger of a pipeline's scheduler (the app's by default); its state shows in its status."""
    scheduler = scheduler if scheduler is not None else scheduler_of(app)
    trigger = SyncTrigger(scheduler)
    scheduler.add_status_provider(lambda: {"trigger": trigger.state()})
    if primary:
        app.extensions[EXTENSION_KEY] = trigger
    return trigger


@bp.post("/trigger")
def trigger() -> tuple[Response, int]:
    """202 and whether this request joined a run already requested; 409 while the interval job is paused."""
    chosen = requested_pipeline()
    trigger = (
        chosen.trigger if chosen is not None and chosen.trigger is not None else current_app.extensions[EXTENSION_KEY]
    )
    coalesced = trigger.request()
    return jsonify(
        {"message": "Sync requested", "coalesced": coalesced, "scheduler_status": scheduler_of().get_status()}
    ), 202


@bp.errorhandler(TriggerRefused)
def _refused(error: TriggerRefused) -> tuple[Response, int]:
    return error_response(409, "Conflict", f"Sync trigger refused: {error}")
