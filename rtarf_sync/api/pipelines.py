"""GET /pipelines, and every per-pipeline route for each pipeline: /pipelines/<name>/X is /scheduler/X.

A small WSGI wrapper serves `/pipelines/<name>/X` with the route of `/scheduler/X`, noting the name
in the request's environ, so each route exists once in the URL map (one token check, one OpenAPI
operation per route, no second copy to drift). Before the route runs (after the token check),
`g.rtarf_pipeline` is set to that pipeline (or, for /scheduler/X, to the target one);
`scheduler_of()`, `verifications_of()`, `notifier_of()` and the trigger route follow it. An
unknown name answers 404 before the route runs.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

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
ENVIRON_KEY = "rtarf.pipeline"
_PIPELINE_PATH = re.compile(r"/pipelines/([^/]+)(/.+)")
_APP_WIDE = ("/overview",)  # under /scheduler, but about the whole app (the page's data), not one pipeline
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class PipelinePaths:
    """WSGI: serve /pipelines/<name>/X with the /scheduler/X route, for pipeline <name>."""

    def __init__(self, wsgi_app: WsgiApp) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        match = _PIPELINE_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is not None and match.group(2) not in _APP_WIDE:
            environ[ENVIRON_KEY] = match.group(1)
            environ["PATH_INFO"] = "/scheduler" + match.group(2)
        return self.wsgi_app(environ, start_response)


@bp.get("/pipelines")
def pipelines() -> Response:
    """Every pipeline, in configuration order, with its short status."""
    return jsonify({"pipelines": list(pipelines_of().statuses().values())})


def init_app(app: Flask) -> None:
    """Register the per-pipeline routes (under /scheduler, and through PipelinePaths under /pipelines/<name>)."""
    for blueprint in PER_PIPELINE:
        app.register_blueprint(blueprint)
    app.register_blueprint(bp)
    # A before_request hook registered after the token and request checks: a caller without the token
    # gets 401 for /pipelines/<any name>/..., not a 404 that tells which names exist.
    app.before_request(_choose_pipeline)
    app.wsgi_app = PipelinePaths(app.wsgi_app)  # type: ignore[method-assign]


def _choose_pipeline() -> None:
    """Set g.rtarf_pipeline for a per-pipeline route; 404 for an unknown name (before any route runs)."""
    registry = pipelines_of()
    name = request.environ.get(ENVIRON_KEY)
    if name is not None:
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
