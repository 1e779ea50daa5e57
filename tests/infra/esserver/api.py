"""REST endpoints: one function per Elasticsearch API, with no HTTP in them.

Each takes the backend, the parsed request and the path parts, and returns
(status, JSON body). Errors are raised as `EsError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.infra.esserver import documents, search
from tests.infra.esserver.contexts import Contexts
from tests.infra.esserver.errors import EsError, illegal_argument, index_not_found, x_content_parse
from tests.infra.esserver.request import flag
from tests.infra.esserver.store import Store, random_id

Reply = tuple[int, Any]
VERSION = "8.15.0"
ACKNOWLEDGED = {"acknowledged": True}


@dataclass
class Request:
    """An HTTP request, reduced to what the endpoints read."""

    method: str
    target: str
    params: dict[str, str]
    payload: bytes = b""

    def json(self) -> Any:
        """Return the parsed JSON body (None when empty); raise a 400 if it is not JSON."""
        if not self.payload.strip():
            return None
        try:
            return json.loads(self.payload)
        except ValueError as exc:
            raise x_content_parse(f"[1:1] Unexpected character: {exc}") from None


@dataclass
class Backend:
    """The state the endpoints work on."""

    store: Store
    contexts: Contexts = field(default_factory=Contexts)
    cluster_uuid: str = field(default_factory=lambda: random_id(16))


def info(backend: Backend, request: Request) -> Reply:
    """GET / : who this node claims to be."""
    return 200, {
        "name": "esserver-node",
        "cluster_name": "esserver",
        "cluster_uuid": backend.cluster_uuid,
        "version": {
            "number": VERSION,
            "build_flavor": "default",
            "build_type": "tar",
            "build_hash": "1a77947f34deddb41af25e6f0ddb8e830159c179",
            "build_date": "2024-08-05T10:05:34.233336849Z",
            "build_snapshot": False,
            "lucene_version": "9.11.1",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
    }


def cluster_health(backend: Backend, request: Request, index: str | None = None) -> Reply:
    """GET /_cluster/health : always green, one node."""
    with backend.store.lock:
        shards = len(backend.store.resolve(index))
    return 200, {
        "cluster_name": "esserver",
        "status": "green",
        "timed_out": False,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": shards,
        "active_shards": shards,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0,
    }


def _refresh_wanted(request: Request) -> bool:
    value = request.params.get("refresh")
    if value is None or value == "false":
        return False
    if value in ("", "true", "wait_for"):
        return True
    raise illegal_argument(f"Unknown value for refresh: [{value}].")


def _after_write(backend: Backend, request: Request, indices: set[str], body: dict[str, Any]) -> None:
    """Honour `?refresh=true|wait_for` once the write is done."""
    if _refresh_wanted(request):
        for name in indices:
            backend.store.indices[name].refresh()
        if request.params.get("refresh") != "wait_for":
            body["forced_refresh"] = True


def put_document(
    backend: Backend, request: Request, index: str, doc_id: str | None = None, op_type: str | None = None
) -> Reply:
    """PUT/POST /<index>/_doc[/<id>] and /<index>/_create/<id>."""
    op = op_type or request.params.get("op_type", "index")
    if op not in ("index", "create"):
        raise illegal_argument(f"opType must be 'create' or 'index', found: [{op}]")
    with backend.store.lock:
        status, body = documents.index_document(
            backend.store,
            index,
            doc_id,
            request.json(),
            op,
            request.params.get("if_seq_no"),
            request.params.get("if_primary_term"),
        )
        _after_write(backend, request, {body["_index"]}, body)
    return status, body


def create_document(backend: Backend, request: Request, index: str, doc_id: str) -> Reply:
    """PUT/POST /<index>/_create/<id>: fails with 409 when the id exists."""
    return put_document(backend, request, index, doc_id, "create")


def delete_document(backend: Backend, request: Request, index: str, doc_id: str) -> Reply:
    """DELETE /<index>/_doc/<id>."""
    with backend.store.lock:
        status, body = documents.delete_document(
            backend.store, index, doc_id, request.params.get("if_seq_no"), request.params.get("if_primary_term")
        )
        _after_write(backend, request, {body["_index"]}, body)
    return status, body


def update_document(backend: Backend, request: Request, index: str, doc_id: str) -> Reply:
    """POST /<index>/_update/<id> with a partial `doc`."""
    with backend.store.lock:
        status, body = documents.update_document(
            backend.store,
            index,
            doc_id,
            request.json(),
            request.params.get("if_seq_no"),
            request.params.get("if_primary_term"),
        )
        _after_write(backend, request, {body["_index"]}, body)
    return status, body


def get_document(backend: Backend, request: Request, index: str, doc_id: str) -> Reply:
    """GET/HEAD /<index>/_doc/<id>, realtime."""
    with backend.store.lock:
        return documents.get_document(backend.store, index, doc_id)


def bulk(backend: Backend, request: Request, index: str | None = None) -> Reply:
    """POST /[<index>/]_bulk with an NDJSON body."""
    with backend.store.lock:
        body, touched = documents.bulk(backend.store, request.payload, index)
        _after_write(backend, request, touched, body)
    return 200, body


def create_index(backend: Backend, request: Request, index: str) -> Reply:
    """PUT /<index> with optional mappings, settings and aliases."""
    body = request.json()
    if body is not None and not isinstance(body, dict):
        raise x_content_parse("[1:1] index body must be an object")
    with backend.store.lock:
        backend.store.create_index(index, body)
    return 200, {**ACKNOWLEDGED, "shards_acknowledged": True, "index": index}


def delete_index(backend: Backend, request: Request, index: str) -> Reply:
    """DELETE /<index>[,<index>...]; PITs opened earlier keep their snapshot."""
    with backend.store.lock:
        backend.store.delete_indices(index)
    return 200, dict(ACKNOWLEDGED)


def index_exists(backend: Backend, request: Request, index: str) -> Reply:
    """HEAD /<index>."""
    try:
        with backend.store.lock:
            found = backend.store.resolve(index, allow_no_indices=False)
    except EsError:
        found = []
    return (200 if found else 404), None


def get_index(backend: Backend, request: Request, index: str) -> Reply:
    """GET /<index>."""
    with backend.store.lock:
        return 200, {i.name: i.info() for i in _indices(backend, request, index)}


def _indices(backend: Backend, request: Request, index: str | None) -> list[Any]:
    return backend.store.resolve(
        index, flag(request.params, "ignore_unavailable"), flag(request.params, "allow_no_indices", True)
    )


def get_mapping(backend: Backend, request: Request, index: str | None = None) -> Reply:
    """GET /[<index>/]_mapping."""
    with backend.store.lock:
        return 200, {i.name: {"mappings": i.mapping.body()} for i in _indices(backend, request, index)}


def put_mapping(backend: Backend, request: Request, index: str) -> Reply:
    """PUT /<index>/_mapping with `properties`."""
    body = request.json() or {}
    with backend.store.lock:
        for target in _indices(backend, request, index):
            target.mapping.merge(body.get("properties") or {})
    return 200, dict(ACKNOWLEDGED)


def refresh(backend: Backend, request: Request, index: str | None = None) -> Reply:
    """POST /[<index>/]_refresh: make every write so far searchable."""
    with backend.store.lock:
        indices = _indices(backend, request, index)  # honours ignore_unavailable and allow_no_indices
        for target in indices:
            target.refresh()
    count = len(indices)
    return 200, {"_shards": {"total": count * 2, "successful": count, "failed": 0}}


def run_search(backend: Backend, request: Request, index: str | None = None) -> Reply:
    """GET/POST /[<index>/]_search."""
    return 200, search.search(backend.store, backend.contexts, index, request.params, request.json())


def run_count(backend: Backend, request: Request, index: str | None = None) -> Reply:
    """GET/POST /[<index>/]_count."""
    return 200, search.count(backend.store, index, request.params, request.json())


def open_pit(backend: Backend, request: Request, index: str) -> Reply:
    """POST /<index>/_pit?keep_alive=1m."""
    return 200, search.open_pit(backend.store, backend.contexts, index, request.params)


def close_pit(backend: Backend, request: Request) -> Reply:
    """DELETE /_pit with `{"id": ...}`."""
    return search.close_pit(backend.contexts, request.json())


def scroll_next(backend: Backend, request: Request, scroll_id: str | None = None) -> Reply:
    """GET/POST /_search/scroll[/<id>]."""
    return 200, search.scroll_next(backend.contexts, request.params, request.json(), scroll_id)


def clear_scroll(backend: Backend, request: Request, scroll_id: str | None = None) -> Reply:
    """DELETE /_search/scroll[/<id>|_all]."""
    return search.clear_scroll(backend.contexts, request.params, request.json(), scroll_id)


def update_aliases(backend: Backend, request: Request) -> Reply:
    """POST /_aliases with `add` and `remove` actions."""
    body = request.json() or {}
    with backend.store.lock:
        for action in body.get("actions", []):
            ((kind, spec),) = action.items()
            targets = spec.get("indices") or [spec.get("index")]
            for target in targets:
                if target is None:
                    raise index_not_found("_na_")
                if kind == "add":
                    backend.store.put_alias(target, spec["alias"])
                elif kind == "remove":
                    backend.store.remove_alias(target, spec["alias"])
                else:
                    raise illegal_argument(f"unsupported alias action [{kind}]")
    return 200, dict(ACKNOWLEDGED)


def put_alias(backend: Backend, request: Request, index: str, name: str) -> Reply:
    """PUT /<index>/_alias/<name>."""
    with backend.store.lock:
        backend.store.put_alias(index, name)
    return 200, dict(ACKNOWLEDGED)


def resolve_index(backend: Backend, request: Request, index: str) -> Reply:
    """GET /_resolve/index/<expression>: the indices and aliases it names (this server has no closed
    indices and no data streams)."""
    with backend.store.lock:
        store = backend.store
        names, aliases = store.resolve_names(index, flag(request.params, "ignore_unavailable"))
        listed = []
        for name in names:
            entry: dict[str, Any] = {"name": name}
            member_of = sorted(alias for alias, members in store.aliases.items() if name in members)
            if member_of:  # Elasticsearch leaves the key out when there are none
                entry["aliases"] = member_of
            listed.append({**entry, "attributes": ["open"]})
        return 200, {
            "indices": listed,
            "aliases": [
                {"name": alias, "indices": sorted(store.aliases[alias] & store.indices.keys())} for alias in aliases
            ],
            "data_streams": [],
        }


def get_alias(backend: Backend, request: Request, index: str | None = None) -> Reply:
    """GET /[<index>/]_alias."""
    with backend.store.lock:
        names = [i.name for i in _indices(backend, request, index)]
        aliases = backend.store.aliases
        return 200, {n: {"aliases": {a: {} for a, m in sorted(aliases.items()) if n in m}} for n in names}
