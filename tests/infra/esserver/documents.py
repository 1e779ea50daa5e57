"""Document APIs: index, create, update, delete, get and _bulk.

Every write takes a new `_seq_no` from its index and bumps `_version`
(deletes too), so version-guarded consumers can be tested against the same
numbers a real shard would hand out. Callers hold the store lock.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.infra.esserver.errors import EsError, illegal_argument, index_not_found, validation_failed, version_conflict
from tests.infra.esserver.store import Doc, Index, Store, random_id

SHARDS = {"total": 2, "successful": 1, "failed": 0}
_ACTIONS = ("index", "create", "update", "delete")


def _result(index: Index, doc_id: str, version: int, seq_no: int, result: str) -> dict[str, Any]:
    return {
        "_index": index.name,
        "_id": doc_id,
        "_version": version,
        "result": result,
        "_shards": dict(SHARDS),
        "_seq_no": seq_no,
        "_primary_term": index.primary_term,
    }


def _check_expected(index: Index, doc_id: str, if_seq_no: Any, if_primary_term: Any) -> None:
    """Apply optimistic concurrency control (if_seq_no / if_primary_term)."""
    if if_seq_no is None and if_primary_term is None:
        return
    current = index.live.get(doc_id)
    wanted = f"required seqNo [{if_seq_no}], primary term [{if_primary_term}]."
    if current is None:
        raise version_conflict(index.name, doc_id, f"{wanted} but no document was found")
    if int(if_seq_no) != current.seq_no or int(if_primary_term) != current.primary_term:
        raise version_conflict(
            index.name,
            doc_id,
            f"{wanted} current document has seqNo [{current.seq_no}] and primary term [{current.primary_term}]",
        )


def _require_object(source: Any) -> dict[str, Any]:
    if not isinstance(source, dict):
        raise EsError(400, "document_parsing_exception", "[1:1] failed to parse: the document must be an object")
    return source


def index_document(
    store: Store,
    target: str,
    doc_id: str | None,
    source: Any,
    op_type: str = "index",
    if_seq_no: Any = None,
    if_primary_term: Any = None,
) -> tuple[int, dict[str, Any]]:
    """Index (or create) one document; return (status, body)."""
    index = store.write_target(target)
    doc_id = doc_id if doc_id is not None else random_id()
    source = _require_object(source)
    existing = index.live.get(doc_id)
    if op_type == "create" and existing is not None:
        raise version_conflict(index.name, doc_id, f"document already exists (current version [{existing.version}])")
    _check_expected(index, doc_id, if_seq_no, if_primary_term)
    index.mapping.learn(index.name, doc_id, source)
    doc = index.put(doc_id, source, store.next_order())
    result = "updated" if existing is not None else "created"
    return (200 if existing else 201), _result(index, doc_id, doc.version, doc.seq_no, result)


def delete_document(
    store: Store, target: str, doc_id: str, if_seq_no: Any = None, if_primary_term: Any = None
) -> tuple[int, dict[str, Any]]:
    """Delete one document; a missing one still answers (404, "not_found")."""
    if target not in store.indices and target not in store.aliases:
        raise index_not_found(target)  # deletes never create an index
    index = store.write_target(target)
    _check_expected(index, doc_id, if_seq_no, if_primary_term)
    found, version, seq_no = index.remove(doc_id)
    return (200 if found else 404), _result(index, doc_id, version, seq_no, "deleted" if found else "not_found")


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def update_document(
    store: Store, target: str, doc_id: str, body: Any, if_seq_no: Any = None, if_primary_term: Any = None
) -> tuple[int, dict[str, Any]]:
    """Apply a partial-document update (`doc`, `doc_as_upsert`, `upsert`)."""
    if not isinstance(body, dict) or "script" in body:
        raise illegal_argument("only partial-document updates ([doc]) are supported")
    index = store.write_target(target)
    existing = index.live.get(doc_id)
    if existing is None:
        seed = body.get("doc") if body.get("doc_as_upsert") else body.get("upsert")
        if seed is None:
            raise EsError(
                404,
                "document_missing_exception",
                f"[{doc_id}]: document missing",
                index_uuid=index.uuid,
                shard="0",
                index=index.name,
            )
        return index_document(store, index.name, doc_id, seed, "create")
    _check_expected(index, doc_id, if_seq_no, if_primary_term)
    merged = _deep_merge(existing.source, _require_object(body.get("doc", {})))
    if merged == existing.source and body.get("detect_noop", True):
        return 200, _result(index, doc_id, existing.version, existing.seq_no, "noop")
    index.mapping.learn(index.name, doc_id, merged)
    doc = index.put(doc_id, merged, store.next_order())
    return 200, _result(index, doc_id, doc.version, doc.seq_no, "updated")


def get_document(store: Store, target: str, doc_id: str) -> tuple[int, dict[str, Any]]:
    """Get one document, realtime (unrefreshed writes included)."""
    indices = store.resolve(target)
    if not indices:
        raise index_not_found(target)
    doc: Doc | None = None
    index = indices[0]
    for candidate in indices:
        doc = candidate.live.get(doc_id)
        if doc is not None:
            index = candidate
            break
    if doc is None:
        return 404, {"_index": index.name, "_id": doc_id, "found": False}
    return 200, {
        "_index": index.name,
        "_id": doc_id,
        "_version": doc.version,
        "_seq_no": doc.seq_no,
        "_primary_term": doc.primary_term,
        "found": True,
        "_source": doc.source,
    }


def _parse_line(line: bytes, number: int) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise EsError(400, "x_content_parse_exception", f"[{number}:1] Unexpected token: {exc}") from None


def parse_bulk(payload: bytes, default_index: str | None) -> list[tuple[str, dict[str, Any], Any]]:
    """Split an NDJSON bulk body into (action, metadata, source) triples."""
    lines = [line for line in payload.split(b"\n") if line.strip()]
    operations: list[tuple[str, dict[str, Any], Any]] = []
    number = 0
    while number < len(lines):
        header = _parse_line(lines[number], number + 1)
        if not isinstance(header, dict) or len(header) != 1 or next(iter(header)) not in _ACTIONS:
            found = next(iter(header)) if isinstance(header, dict) and header else header
            raise illegal_argument(
                f"Malformed action/metadata line [{number + 1}], expected field "
                f"[create], [delete], [index] or [update] but found [{found}]"
            )
        ((action, meta),) = header.items()
        meta = dict(meta or {})
        meta.setdefault("_index", default_index)
        if meta["_index"] is None:
            raise validation_failed("index is missing")
        source = None
        if action != "delete":
            number += 1
            if number >= len(lines):
                raise validation_failed(f"{action} requires a source line")
            source = _parse_line(lines[number], number + 1)
        operations.append((action, meta, source))
        number += 1
    if not operations:
        raise validation_failed("no requests added")
    return operations


def _run_operation(store: Store, action: str, meta: dict[str, Any], source: Any) -> tuple[int, dict[str, Any]]:
    target, doc_id = meta["_index"], meta.get("_id")
    guards = (meta.get("if_seq_no"), meta.get("if_primary_term"))
    if action in ("index", "create"):
        return index_document(store, target, doc_id, source, action, *guards)
    if doc_id is None:
        raise validation_failed(f"id is missing for [{action}]")
    if action == "delete":
        return delete_document(store, target, doc_id, *guards)
    return update_document(store, target, doc_id, source, *guards)


def bulk(store: Store, payload: bytes, default_index: str | None) -> tuple[dict[str, Any], set[str]]:
    """Run a bulk request; return the response body and the names of indices written."""
    started = time.monotonic()
    items: list[dict[str, Any]] = []
    touched: set[str] = set()
    for action, meta, source in parse_bulk(payload, default_index):
        try:
            status, result = _run_operation(store, action, meta, source)
            touched.add(result["_index"])
            items.append({action: {**result, "status": status}})
        except EsError as exc:
            error = {"type": exc.error_type, "reason": exc.reason, **exc.extra}
            items.append(
                {action: {"_index": meta["_index"], "_id": meta.get("_id"), "status": exc.status, "error": error}}
            )
    took = int((time.monotonic() - started) * 1000)
    has_errors = any(next(iter(item.values())).get("error") for item in items)
    return {"errors": has_errors, "took": took, "items": items}, touched
