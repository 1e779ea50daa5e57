"""Search, count, point in time and scroll APIs.

Queries are compiled and sort columns bound while the store lock is held
(they read the mappings); filtering and sorting run after it is released,
which is safe because a searchable dict is never mutated, only replaced.
"""

from __future__ import annotations

import bisect
import time
import zlib
from dataclasses import dataclass
from typing import Any

from tests.infra.esserver.aggregations import run_aggregations
from tests.infra.esserver.contexts import Contexts, PointInTime
from tests.infra.esserver.errors import parsing_error, validation_failed
from tests.infra.esserver.fields import filter_source
from tests.infra.esserver.mapping import Mapping
from tests.infra.esserver.query import Predicate, compile_query
from tests.infra.esserver.request import SearchRequest, flag, keep_alive, parse_search_request
from tests.infra.esserver.sorting import SortField, SortPlan
from tests.infra.esserver.store import Doc, IndexView, Store


@dataclass(frozen=True, slots=True)
class Hit:
    """A matching document with its sort values and comparison key."""

    index: str
    doc: Doc
    values: list[Any]
    key: tuple[Any, ...]


@dataclass
class ScrollState:
    """What a scroll remembers between pages."""

    request: SearchRequest
    plan: SortPlan
    hits: list[Hit]
    shards: int


def shards(count: int, failed: int = 0) -> dict[str, Any]:
    """Return a `_shards` header for `count` one-shard indices."""
    return {"total": count, "successful": count - failed, "skipped": 0, "failed": failed}


def _views(store: Store, expression: str | None, params: dict[str, str], snapshot: bool = False) -> list[IndexView]:
    return store.views(expression, flag(params, "ignore_unavailable"), flag(params, "allow_no_indices", True), snapshot)


def _predicates(views: list[IndexView], query: Any) -> list[Predicate]:
    now = time.time_ns()
    if not views:
        # Still validate the query, as ES does even when nothing matches the pattern.
        compile_query(query, Mapping(), "_na_", now)
    return [compile_query(query, view.mapping, view.name, now) for view in views]


def in_slice(doc_id: str, slice_of: tuple[int, int] | None) -> bool:
    """Whether a document belongs to slice (id, max): a stable hash of its _id, as ES slices scrolls."""
    return slice_of is None or zlib.crc32(doc_id.encode()) % slice_of[1] == slice_of[0]


def _collect(
    views: list[IndexView], predicates: list[Predicate], plan: SortPlan, slice_of: tuple[int, int] | None = None
) -> list[Hit]:
    hits = []
    for view, matches in zip(views, predicates, strict=True):
        for doc in view.docs.values():
            if in_slice(doc.id, slice_of) and matches(doc):
                values = plan.values(view.name, doc)
                hits.append(Hit(view.name, doc, values, plan.key(values)))
    # Ties keep index order then write order, like shard order then doc id.
    hits.sort(key=lambda hit: (hit.index, hit.doc.order))
    if plan.explicit:
        hits.sort(key=lambda hit: hit.key)
    return hits


def _pit_sort(request: SearchRequest) -> list[SortField]:
    # ES appends an implicit _shard_doc tiebreaker to every PIT search.
    if any(spec.field == "_shard_doc" for spec in request.sort):
        return request.sort
    return [*request.sort, SortField("_shard_doc", False)]


def _source(request: SearchRequest, doc: Doc) -> dict[str, Any]:
    if request.includes or request.excludes:
        return filter_source(doc.source, request.includes, request.excludes)
    return doc.source


def _render_hit(hit: Hit, request: SearchRequest, plan: SortPlan) -> dict[str, Any]:
    rendered: dict[str, Any] = {"_index": hit.index, "_id": hit.doc.id}
    if request.version:
        rendered["_version"] = hit.doc.version
    if request.seq_no_primary_term:
        rendered["_seq_no"] = hit.doc.seq_no
        rendered["_primary_term"] = hit.doc.primary_term
    rendered["_score"] = 1.0 if plan.scores else None
    if request.source:
        rendered["_source"] = _source(request, hit.doc)
    if plan.explicit:
        rendered["sort"] = plan.shown(hit.values)
    return rendered


def _hits_section(page: list[Hit], total: int, request: SearchRequest, plan: SortPlan) -> dict[str, Any]:
    section: dict[str, Any] = {}
    track = request.track_total_hits
    if track is not False:
        limit = total if track is True else int(track)
        section["total"] = {"value": min(total, limit), "relation": "gte" if total > limit else "eq"}
    section["max_score"] = 1.0 if page and plan.scores else None
    section["hits"] = [_render_hit(hit, request, plan) for hit in page]
    return section


def _response(started: float, shard_count: int, hits: dict[str, Any], **ids: str) -> dict[str, Any]:
    took = int((time.monotonic() - started) * 1000)
    return {**ids, "took": took, "timed_out": False, "_shards": shards(shard_count), "hits": hits}


def _matching(
    store: Store, contexts: Contexts, expression: str | None, params: dict[str, str], request: SearchRequest
) -> tuple[list[Hit], SortPlan, list[IndexView], PointInTime | None]:
    pit = None
    with store.lock:
        if request.pit_id is not None:
            if expression:
                raise validation_failed(
                    "[indices] cannot be used with point in time. Do not specify any index with point in time."
                )
            pit = contexts.pit(request.pit_id, request.pit_keep_alive)
            views = pit.views
        else:
            if any(spec.field == "_shard_doc" for spec in request.sort):
                raise validation_failed("[_shard_doc] sort field cannot be used without [point in time]")
            views = _views(store, expression, params)
        plan = SortPlan(_pit_sort(request) if pit else request.sort, views)
        predicates = _predicates(views, request.query)
        cached = pit.cache.get(request.cache_key) if pit else None
    hits = cached if cached is not None else _collect(views, predicates, plan, request.slice)
    if pit and cached is None:
        with store.lock:
            pit.remember(request.cache_key, hits)
    return hits, plan, views, pit


def search(
    store: Store, contexts: Contexts, expression: str | None, params: dict[str, str], body: Any
) -> dict[str, Any]:
    """Run `_search` (plain, with a PIT, or opening a scroll)."""
    started = time.monotonic()
    request = parse_search_request(params, body)
    hits, plan, views, pit = _matching(store, contexts, expression, params, request)
    start = 0
    if request.search_after is not None:
        start = bisect.bisect_right(hits, plan.after_key(request.search_after), key=lambda hit: hit.key)
    page = hits[start + request.offset : start + request.offset + request.size]
    ids: dict[str, str] = {"pit_id": pit.id} if pit else {}
    if request.scroll is not None:
        scroll = contexts.open_scroll(ScrollState(request, plan, hits, len(views)), request.scroll, len(page))
        ids = {"_scroll_id": scroll.id}
    answer = _response(started, len(views), _hits_section(page, len(hits), request, plan), **ids)
    if request.aggs is not None:
        mappings = {view.name: view.mapping for view in views}
        answer["aggregations"] = run_aggregations(
            request.aggs, ((hit.index, mappings[hit.index], hit.doc) for hit in hits)
        )
    return answer


def scroll_next(contexts: Contexts, params: dict[str, str], body: Any, path_id: str | None) -> dict[str, Any]:
    """Return the next page of a scroll."""
    started = time.monotonic()
    body = body if isinstance(body, dict) else {}
    scroll_id = path_id or body.get("scroll_id") or params.get("scroll_id")
    if not scroll_id:
        raise validation_failed("scrollId is missing")
    wanted = body.get("scroll") or params.get("scroll")
    scroll = contexts.scroll(scroll_id, keep_alive(wanted, "scroll") if wanted else None)
    state: ScrollState = scroll.state
    page = state.hits[scroll.position : scroll.position + state.request.size]
    scroll.position += len(page)
    section = _hits_section(page, len(state.hits), state.request, state.plan)
    return _response(started, state.shards, section, _scroll_id=scroll.id)


def clear_scroll(
    contexts: Contexts, params: dict[str, str], body: Any, path_ids: str | None
) -> tuple[int, dict[str, Any]]:
    """Clear scrolls; 404 with `num_freed: 0` when none was open, like ES."""
    raw = path_ids.split(",") if path_ids else (body or {}).get("scroll_id", params.get("scroll_id"))
    ids = [raw] if isinstance(raw, str) else list(raw or [])
    if not ids:
        raise validation_failed("no scroll ids specified")
    freed = contexts.clear_scrolls(ids)
    return (200 if freed else 404), {"succeeded": True, "num_freed": freed}


def count(store: Store, expression: str | None, params: dict[str, str], body: Any) -> dict[str, Any]:
    """Run `_count` on refreshed data."""
    body = body or {}
    if not isinstance(body, dict):
        raise parsing_error("request body must be a JSON object")
    for key in body:
        if key != "query":
            raise parsing_error(f"request does not support [{key}]")
    with store.lock:
        views = _views(store, expression, params)
        predicates = _predicates(views, body.get("query"))
    pairs = zip(views, predicates, strict=True)
    total = sum(1 for view, matches in pairs for doc in view.docs.values() if matches(doc))
    return {"count": total, "_shards": shards(len(views))}


def open_pit(store: Store, contexts: Contexts, expression: str, params: dict[str, str]) -> dict[str, Any]:
    """Open a point in time over the searchable state of the named indices."""
    if "keep_alive" not in params:
        raise validation_failed("[keep_alive] is not specified")
    seconds = keep_alive(params["keep_alive"])
    with store.lock:
        views = _views(store, expression, params, snapshot=True)
    pit = contexts.open_pit(views, seconds)
    return {"id": pit.id, "_shards": shards(len(views))}


def close_pit(contexts: Contexts, body: Any) -> tuple[int, dict[str, Any]]:
    """Close a point in time; an unknown one answers 404 like ES."""
    pit_id = body.get("id") if isinstance(body, dict) else None
    if not isinstance(pit_id, str):
        raise validation_failed("[id] is required")
    freed = contexts.close_pit(pit_id)
    return (200 if freed else 404), {"succeeded": bool(freed), "num_freed": freed}


def partial_failure(body: Any, reason: str) -> dict[str, Any]:
    """Return a 200 search answer whose only shard failed (an injected fault)."""
    pit = body.get("pit") if isinstance(body, dict) else None
    ids = {"pit_id": pit["id"]} if isinstance(pit, dict) and "id" in pit else {}
    failure = {
        "shard": 0,
        "index": None,
        "node": "esserver-node",
        "reason": {"type": "es_rejected_execution_exception", "reason": reason},
    }
    return {
        **ids,
        "took": 1,
        "timed_out": False,
        "_shards": {**shards(1, failed=1), "failures": [failure]},
        "hits": {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []},
    }


__all__ = ["clear_scroll", "close_pit", "count", "open_pit", "partial_failure", "scroll_next", "search"]
