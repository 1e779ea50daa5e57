"""GET /openapi.json: every route of the service, its parameters, bodies and answers, as OpenAPI 3.0.

Built with apispec from the tables below; tests/api/test_openapi.py checks that
every rule of the app's URL map is described here, and drives each operation
with Schemathesis. Error answers share one shape: {"error", "message", ...}.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from apispec import APISpec
from flask import Blueprint, Response, jsonify

from rtarf_sync.api.dead_letters import MAX_IDS
from rtarf_sync.api.safety.guards import MAX_DEPTH
from rtarf_sync.api.params import MAX_ID
from rtarf_sync.engine.runs.history import MAX_LIMIT, RUN_MODES, RUN_STATUSES, RUN_TRIGGERS
from rtarf_sync.engine.runs.plan import MODES

bp = Blueprint("openapi", __name__)

VERSION = "1.0.0"
_ERROR = {"$ref": "#/components/schemas/Error"}
_OBJECT = {"type": "object"}
_INSTANT = {"type": "string", "format": "date-time", "example": "2026-01-31T00:00:00Z"}
_REASONS = {
    200: "Done",
    202: "Accepted",
    400: "A parameter or body field is invalid; the message names it",
    401: "The bearer token is missing or wrong (only when RTARF_API_TOKEN is set)",
    403: "The request's Origin is neither this service nor listed in RTARF_CORS_ORIGINS",
    404: "No such record, or no such pipeline",
    409: "A run holds the lease, or the change was refused",
    413: "The body is larger than 1 MiB",
    415: "The body is not application/json",
    502: "The search engine is unreachable",
    503: "PostgreSQL (or, for /readyz, a dependency) is unreachable",
}
_WRITE_ERRORS = (400, 401, 403, 413, 415)


def _answers(ok: int, *errors: int, content: str = "application/json") -> dict[str, Any]:
    """The responses object: `ok` with a JSON (or `content`) body, each of `errors` with the error body."""
    body = {"schema": _OBJECT} if content == "application/json" else {"schema": {"type": "string"}}
    answers: dict[str, Any] = {str(ok): {"description": _REASONS[ok], "content": {content: body}}}
    for status in sorted(set(errors)):
        answers[str(status)] = {"description": _REASONS[status], "content": {"application/json": {"schema": _ERROR}}}
    return answers


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path_id(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"the {what}'s id",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    }


def _body(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """An optional JSON object body with exactly these fields."""
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return {
        "required": bool(required),
        "content": {"application/json": {"schema": schema}},
        "description": f"JSON, at most 1 MiB and {MAX_DEPTH} levels deep",
    }


def _read(
    summary: str,
    ok: int = 200,
    *errors: int,
    content: str = "application/json",
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "get": {"summary": summary, "parameters": parameters or [], "responses": _answers(ok, *errors, content=content)}
    }


def _write(
    summary: str, ok: int, *errors: int, body: dict[str, Any] | None = None, method: str = "post"
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": _answers(ok, *_WRITE_ERRORS, *errors),
        "security": [{}, {"bearer": []}],
    }
    operation["requestBody"] = body or _body({})
    return {method: operation}


def _enum(values: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _paging() -> list[dict[str, Any]]:
    return [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "page size"),
        _query("before", {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "the previous page's next_before"),
    ]


_PIPELINE = {
    "name": "pipeline",
    "in": "path",
    "required": True,
    "description": "the pipeline's name (GET /pipelines lists them); an unknown one answers 404",
    "schema": {"type": "string", "pattern": "^[a-z0-9_-]+$", "example": "default"},
}
_APP_WIDE = ("/scheduler/overview",)  # under /scheduler, but about the whole app, not one pipeline


def _per_pipeline(path: str, operations: dict[str, Any], named: bool) -> dict[str, Any]:
    """A /scheduler operation as it acts on one pipeline: with 404 for a missing pipeline, and under
    /pipelines/{pipeline} the name as a path parameter."""
    result: dict[str, Any] = {}
    for method, operation in operations.items():
        answers = dict(operation["responses"])
        answers.setdefault("404", {"description": _REASONS[404], "content": {"application/json": {"schema": _ERROR}}})
        parameters = [_PIPELINE, *operation.get("parameters", [])] if named else operation.get("parameters", [])
        result[method] = {**operation, "parameters": parameters, "responses": answers}
    return result


def _paths() -> dict[str, dict[str, Any]]:
    """Path -> operations, one entry per route of the app, per-pipeline ones also under /pipelines/{pipeline}."""
    paths = _routes()
    for path, operations in list(paths.items()):
        if path.startswith("/scheduler/") and path not in _APP_WIDE:
            paths[path] = _per_pipeline(path, operations, named=False)
            paths["/pipelines/{pipeline}" + path[len("/scheduler") :]] = _per_pipeline(path, operations, named=True)
    return paths


def _routes() -> dict[str, dict[str, Any]]:
    """Path -> operations of the app-wide routes and the /scheduler ones."""
    window = {"from": {**_INSTANT, "nullable": True}, "to": {**_INSTANT, "nullable": True}}
    return {
        "/": _read(
            "The HTML status page",
            200,
            content="text/html",
            parameters=[_query("refresh", {"type": "integer"}, "the page's refresh period in seconds (1 to 3600)")],
        ),
        "/healthz": _read("The process answers"),
        "/livez": _read("The process answers (same as /healthz)"),
        "/readyz": _read("The engine and PostgreSQL answer", 200, 503),
        "/metrics": _read("Prometheus metrics", 200, content="text/plain"),
        "/openapi.json": _read("This document"),
        "/pipelines": _read("Every pipeline with its short status"),
        "/scheduler/status": _read("Schedule state and run counters"),
        "/scheduler/jobs": _read("The APScheduler jobs"),
        "/scheduler/overview": _read("Everything the status page shows"),
        "/scheduler/webhooks": _read("Webhook endpoints (masked) and the latest deliveries", 200, 503),
        "/scheduler/cursor": {
            **_read("The stored cursor", 200, 503),
            **_write(
                "Set the cursor (null: read the whole history next)",
                200,
                409,
                502,
                503,
                method="put",
                body=_body(
                    {"cursor": {**_INSTANT, "nullable": True}, "force": {"type": "boolean"}}, required=("cursor",)
                ),
            ),
        },
        "/scheduler/sync-now": _write(
            "Run one sync now and answer when it is done",
            200,
            409,
            502,
            503,
            body=_body({"mode": _enum(MODES), "from": _INSTANT, "to": _INSTANT, "force": {"type": "boolean"}}),
        ),
        "/scheduler/start": _write("Start or resume the interval job", 200),
        "/scheduler/stop": _write("Pause the interval job", 200),
        "/scheduler/trigger": _write("Ask for a sync soon (bursts coalesce)", 202, 409),
        "/scheduler/verify": _write(
            "Compare per-bucket counts; repair differing buckets if asked",
            200,
            409,
            502,
            503,
            body=_body({**window, "bucket": {**_enum(("1h", "1d")), "nullable": True}, "repair": {"type": "boolean"}}),
        ),
        "/scheduler/retention": _write(
            "Drop the partitions older than retention_days now, except legal holds: {dropped, kept_for_hold}",
            200,
            409,
            503,
        ),
        "/scheduler/runs": _read(
            "Runs, newest first",
            200,
            400,
            503,
            parameters=[
                *_paging(),
                _query("status", _enum(RUN_STATUSES), "only runs that ended so"),
                _query("trigger", _enum(RUN_TRIGGERS), "only runs started so"),
                _query("mode", _enum(RUN_MODES), "only runs of this mode"),
            ],
        ),
        "/scheduler/runs/{run_id}": _read("One run", 200, 404, 503, parameters=[_path_id("run_id", "run")]),
        "/scheduler/dead-letters": _read(
            "Dead letters, newest first",
            200,
            400,
            503,
            parameters=[
                *_paging(),
                _query("resolved", _enum(("true", "false")), "only resolved or unresolved ones"),
                _query("reason", {"type": "string", "maxLength": 200}, "only this reason"),
            ],
        ),
        "/scheduler/dead-letters/{id}": {
            "get": {
                **_read(
                    "One dead letter with its raw document",
                    200,
                    401,
                    404,
                    503,
                    parameters=[_path_id("id", "dead letter")],
                )["get"],
                "security": [{}, {"bearer": []}],
            }
        },
        "/scheduler/dead-letters/replay": _write(
            "Replay dead letters",
            200,
            409,
            502,
            503,
            body=_body(
                {
                    "ids": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_IDS,
                        "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                    }
                }
            ),
        ),
    }


@lru_cache(maxsize=1)
def build_spec() -> dict[str, Any]:
    """The OpenAPI document of every route, as a dict."""
    spec = APISpec(
        title="RTARF Event Sync",
        version=VERSION,
        openapi_version="3.0.3",
        info={"description": "Keeps a PostgreSQL copy of Elasticsearch or OpenSearch events."},
    )
    spec.components.schema(
        "Error",
        {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        },
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for path, operations in _paths().items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.0 document of this service."""
    return jsonify(build_spec())
