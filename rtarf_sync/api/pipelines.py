"""GET /pipelines, and every per-pipeline route twice: under /scheduler (the target pipeline) and /pipelines/<name>.

The per-pipeline blueprints are registered a second time with the prefix `/pipelines/<pipeline>`;
a URL value preprocessor turns `<pipeline>` (or, under /scheduler, the target pipeline) into
`g.rtarf_pipeline`, which `scheduler_of()`, `verifications_of()`, `notifier_of()` and the trigger
route follow. An unknown name answers 404 before the route runs.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, request
from werkzeug.exceptions import NotFound

from rtarf_sync.api import dead_letters, runs, scheduler, trigger, verification, webhooks
from rtarf_sync.service.extension import pipelines_of

bp = Blueprint("pipelines", __name__)

# The blueprints whose routes act on one pipeline; all of them live under /scheduler.
PER_PIPELINE = (
    scheduler.bp,
    verification.bp,
    runs.bp,
    dead_letters.bp,
    trigger.bp,
    webhooks.bp,
)
PREFIX = "pipeline_"  # the second registration's blueprint names: pipeline_scheduler, pipeline_runs...


@bp.get("/pipelines")
def pipelines() -> Response:
    """Every pipeline, in configuration order, with its short status."""
    return jsonify({"pipelines": list(pipelines_of().statuses().values())})


def init_app(app: Flask) -> None:
    """Register the per-pipeline routes under /scheduler and /pipelines/<pipeline>, and GET /pipelines."""
    for blueprint in PER_PIPELINE:
        app.register_blueprint(blueprint)
        app.register_blueprint(blueprint, name=PREFIX + blueprint.name, url_prefix="/pipelines/<pipeline>")
    app.register_blueprint(bp)
    app.url_value_preprocessor(_choose_pipeline)


def _choose_pipeline(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Set g.rtarf_pipeline for a per-pipeline route; 404 for an unknown name."""
    registry = pipelines_of()
    if values and "pipeline" in values:
        name = values.pop("pipeline")
        chosen = registry.get(name)
        if chosen is None:
            raise NotFound(description=f"no pipeline named {name!r} (GET /pipelines lists them)")
        g.rtarf_pipeline = chosen
        return
    if request.blueprint not in {blueprint.name for blueprint in PER_PIPELINE}:
        return
    if registry.target is None:
        names = ", ".join(pipeline.name for pipeline in registry)
        rest = request.path[len("/scheduler") :]
        raise NotFound(description=f"no pipeline named default among {names}: use /pipelines/<name>{rest}")
    g.rtarf_pipeline = registry.target
