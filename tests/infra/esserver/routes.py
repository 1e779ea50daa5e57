"""The route table: which endpoint answers which method and path.

Path templates use `{index}` for an index expression (never starting with
`_`, except `_all`) and other `{names}` for any one segment. A path that
exists for other methods answers 405, an unknown one 400, with the bare
string errors Elasticsearch sends for those.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from tests.infra.esserver import api
from tests.infra.esserver.errors import PlainError

Endpoint = Callable[..., api.Reply]


@dataclass(frozen=True)
class Route:
    """One method set and path template, and its endpoint."""

    methods: frozenset[str]
    template: tuple[str, ...]
    endpoint: Endpoint

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """Return the path parts if the segments fit the template."""
        if len(segments) != len(self.template):
            return None
        parts: dict[str, str] = {}
        for expected, actual in zip(self.template, segments, strict=True):
            if expected.startswith("{"):
                if not actual or (expected == "{index}" and actual.startswith("_") and actual != "_all"):
                    return None
                parts[expected.strip("{}")] = actual
            elif expected != actual:
                return None
        return parts


def _route(methods: str, path: str, endpoint: Endpoint) -> Route:
    template = tuple(segment for segment in path.split("/") if segment)
    return Route(frozenset(methods.split()), template, endpoint)


ROUTES = [
    _route("GET HEAD", "/", api.info),
    _route("GET", "/_cluster/health", api.cluster_health),
    _route("GET", "/_cluster/health/{index}", api.cluster_health),
    _route("GET POST", "/_search", api.run_search),
    _route("GET POST", "/{index}/_search", api.run_search),
    _route("GET POST", "/_search/scroll", api.scroll_next),
    _route("GET POST", "/_search/scroll/{scroll_id}", api.scroll_next),
    _route("DELETE", "/_search/scroll", api.clear_scroll),
    _route("DELETE", "/_search/scroll/{scroll_id}", api.clear_scroll),
    _route("GET POST", "/_count", api.run_count),
    _route("GET POST", "/{index}/_count", api.run_count),
    _route("POST", "/{index}/_pit", api.open_pit),
    _route("DELETE", "/_pit", api.close_pit),
    _route("GET POST", "/_refresh", api.refresh),
    _route("GET POST", "/{index}/_refresh", api.refresh),
    _route("POST PUT", "/_bulk", api.bulk),
    _route("POST PUT", "/{index}/_bulk", api.bulk),
    _route("GET", "/_mapping", api.get_mapping),
    _route("GET", "/{index}/_mapping", api.get_mapping),
    _route("PUT POST", "/{index}/_mapping", api.put_mapping),
    _route("POST", "/_aliases", api.update_aliases),
    _route("GET", "/_alias", api.get_alias),
    _route("GET", "/{index}/_alias", api.get_alias),
    _route("PUT POST", "/{index}/_alias/{name}", api.put_alias),
    _route("PUT POST", "/{index}/_aliases/{name}", api.put_alias),
    _route("GET", "/_resolve/index/{index}", api.resolve_index),
    _route("PUT", "/{index}", api.create_index),
    _route("DELETE", "/{index}", api.delete_index),
    _route("HEAD", "/{index}", api.index_exists),
    _route("GET", "/{index}", api.get_index),
    _route("POST", "/{index}/_doc", api.put_document),
    _route("PUT POST", "/{index}/_doc/{doc_id}", api.put_document),
    _route("PUT POST", "/{index}/_create/{doc_id}", api.create_document),
    _route("GET HEAD", "/{index}/_doc/{doc_id}", api.get_document),
    _route("DELETE", "/{index}/_doc/{doc_id}", api.delete_document),
    _route("POST", "/{index}/_update/{doc_id}", api.update_document),
]
SEARCH_ENDPOINTS = frozenset({api.run_search, api.scroll_next})


def split_path(path: str) -> list[str]:
    """Split a raw URL path into decoded segments (so `%2F` stays inside an id)."""
    return [unquote(segment) for segment in path.split("/") if segment]


def find(method: str, path: str, target: str) -> tuple[Endpoint, dict[str, Any]]:
    """Return the endpoint and path parts for a request, or raise the ES routing error."""
    segments = split_path(path)
    allowed: set[str] = set()
    for route in ROUTES:
        parts = route.match(segments)
        if parts is None:
            continue
        if method in route.methods:
            return route.endpoint, parts
        allowed |= route.methods
    if allowed:
        listed = ", ".join(sorted(allowed))
        raise PlainError(
            405,
            "method_not_allowed",
            f"Incorrect HTTP method for uri [{target}] and method [{method}], allowed: [{listed}]",
        )
    raise PlainError(400, "no_handler", f"no handler found for uri [{target}] and method [{method}]")
