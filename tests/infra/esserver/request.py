"""Reading a search request from its URL parameters and JSON body."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.infra.esserver import dates
from tests.infra.esserver.aggregations import Aggregation, parse_aggregations
from tests.infra.esserver.errors import EsError, illegal_argument, parsing_error, validation_failed
from tests.infra.esserver.sorting import SortField, parse_sort

MAX_RESULT_WINDOW = 10_000
_SUPPORTED = {
    "query",
    "size",
    "from",
    "sort",
    "search_after",
    "pit",
    "seq_no_primary_term",
    "track_total_hits",
    "_source",
    "version",
    "slice",
    "aggs",
    "aggregations",
}
# Accepted and ignored: they change nothing the service under test looks at.
_IGNORED = {
    "timeout",
    "terminate_after",
    "stats",
    "track_scores",
    "explain",
    "profile",
    "fields",
    "docvalue_fields",
    "stored_fields",
    "highlight",
    "min_score",
    "indices_boost",
    "runtime_mappings",
}
_TOKENS = (
    (dict, "START_OBJECT"),
    (list, "START_ARRAY"),
    (bool, "VALUE_BOOLEAN"),
    (str, "VALUE_STRING"),
    ((int, float), "VALUE_NUMBER"),
)


def flag(params: dict[str, str], name: str, default: bool = False) -> bool:
    """Read a boolean URL parameter the way ES does (`?x` alone means true)."""
    if name not in params:
        return default
    value = params[name]
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    raise illegal_argument(f"Failed to parse value [{value}] as only [true] or [false] are allowed.")


def keep_alive(value: Any, name: str = "keep_alive") -> float:
    """Read a time value such as `1m` into seconds, or raise a 400."""
    try:
        return dates.parse_time_value(str(value))
    except ValueError:
        raise EsError(
            400,
            "parse_exception",
            f"failed to parse setting [{name}] with value [{value}] as a time value: unit is missing or unrecognized",
        ) from None


def _token(value: Any) -> str:
    for kind, name in _TOKENS:
        if isinstance(value, kind):
            return name
    return "VALUE_NULL"


def _non_negative(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise parsing_error(f"[{name}] failed to parse field [{value}]") from None
    if number < 0:
        raise illegal_argument(f"[{name}] parameter cannot be negative but was [{number}]")
    return number


@dataclass
class SearchRequest:
    """The parts of a search request this server acts on."""

    query: Any = None
    sort: list[SortField] = field(default_factory=list)
    size: int = 10
    offset: int = 0
    search_after: Any = None
    pit_id: str | None = None
    pit_keep_alive: float | None = None
    track_total_hits: bool | int = MAX_RESULT_WINDOW
    source: bool = True
    includes: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    seq_no_primary_term: bool = False
    version: bool = False
    scroll: float | None = None
    slice: tuple[int, int] | None = None  # (id, max)
    cache_key: str = ""
    aggs: list[Aggregation] | None = None


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _read_source(request: SearchRequest, spec: Any) -> None:
    if isinstance(spec, bool):
        request.source = spec
    elif isinstance(spec, str):
        request.includes = [spec]
    elif isinstance(spec, list):
        request.includes = [str(s) for s in spec]
    elif isinstance(spec, dict):
        request.includes = _strings(spec.get("includes", spec.get("include")))
        request.excludes = _strings(spec.get("excludes", spec.get("exclude")))
    else:
        raise parsing_error("[_source] must be a boolean, string, array or object")


def _read_total(spec: Any) -> bool | int:
    if isinstance(spec, bool):
        return spec
    if isinstance(spec, int):
        return spec
    if isinstance(spec, str) and spec in ("true", "false"):
        return spec == "true"
    return _non_negative(spec, "track_total_hits")


def _read_pit(request: SearchRequest, pit: Any) -> None:
    if not isinstance(pit, dict) or not isinstance(pit.get("id"), str):
        raise parsing_error("[pit] requires an [id]")
    request.pit_id = pit["id"]
    if pit.get("keep_alive") is not None:
        request.pit_keep_alive = keep_alive(pit["keep_alive"])


def _apply_body(request: SearchRequest, body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key not in _SUPPORTED and key not in _IGNORED:
            raise parsing_error(f"Unknown key for a {_token(value)} in [{key}].")
    request.query = body.get("query")
    request.sort = parse_sort(body.get("sort"))
    request.size = _non_negative(body.get("size", 10), "size")
    request.offset = _non_negative(body.get("from", 0), "from")
    request.search_after = body.get("search_after")
    request.seq_no_primary_term = bool(body.get("seq_no_primary_term", False))
    request.version = bool(body.get("version", False))
    if "track_total_hits" in body:
        request.track_total_hits = _read_total(body["track_total_hits"])
    if "_source" in body:
        _read_source(request, body["_source"])
    if body.get("pit") is not None:
        _read_pit(request, body["pit"])
    if "aggs" in body and "aggregations" in body:
        raise parsing_error("Found two aggregation type definitions in [aggs] and [aggregations]")
    spec = body.get("aggs", body.get("aggregations"))
    if spec is not None:
        request.aggs = parse_aggregations(spec)
    if body.get("slice") is not None:
        request.slice = _read_slice(body["slice"])


def _read_slice(spec: Any) -> tuple[int, int]:
    """`{"id": i, "max": n}`, checked as ES's SliceBuilder checks it."""
    if not isinstance(spec, dict):
        raise parsing_error("[slice] must be an object")
    unknown = set(spec) - {"id", "max", "field"}
    if unknown:
        raise parsing_error(f"[slice] unknown field [{sorted(unknown)[0]}]")
    if spec.get("field") not in (None, "_id", "_doc", "_shard_doc"):
        raise illegal_argument("this test server slices on [_id] only")
    slice_id, slice_max = spec.get("id"), spec.get("max")
    # The engines check while parsing: the answer is a parse error naming the field,
    # caused by the rule that was broken.
    for name, value, broken in (
        ("id", slice_id, "id must be greater than or equal to 0"),
        ("max", slice_max, "max must be greater than 1"),
    ):
        if not isinstance(value, int) or value < (0 if name == "id" else 2):
            raise _slice_field(name, broken)
    if slice_id >= slice_max:
        raise illegal_argument("max must be greater than id")
    return slice_id, slice_max


def _slice_field(name: str, cause: str) -> EsError:
    reason = f"[1:1] [slice] failed to parse field [{name}]"
    return EsError(
        400, "x_content_parse_exception", reason, caused_by={"type": "illegal_argument_exception", "reason": cause}
    )


def _apply_params(request: SearchRequest, params: dict[str, str]) -> None:
    if "q" in params:
        raise illegal_argument("the [q] parameter (query string syntax) is not supported by this test server")
    if "size" in params:
        request.size = _non_negative(params["size"], "size")
    if "from" in params:
        request.offset = _non_negative(params["from"], "from")
    if "sort" in params:
        request.sort = parse_sort(params["sort"].split(","))
    if "track_total_hits" in params:
        request.track_total_hits = _read_total(params["track_total_hits"])
    if "_source" in params:
        value = params["_source"]
        _read_source(request, value == "true" if value in ("true", "false") else value.split(","))
    for name, target in (("_source_includes", request.includes), ("_source_excludes", request.excludes)):
        if name in params:
            target.extend(params[name].split(","))
    request.seq_no_primary_term = flag(params, "seq_no_primary_term", request.seq_no_primary_term)
    request.version = flag(params, "version", request.version)
    if "scroll" in params:
        request.scroll = keep_alive(params["scroll"], "scroll")


def _validate(request: SearchRequest) -> None:
    if request.scroll is not None:
        for present, what in (
            (request.offset, "[from]"),
            (request.search_after, "[search_after]"),
            (request.pit_id, "[point in time]"),
        ):
            if present:
                raise illegal_argument(f"using {what} is not allowed in a scroll context")
    elif request.offset + request.size > MAX_RESULT_WINDOW:
        raise illegal_argument(
            f"Result window is too large, from + size must be less than or equal to: [{MAX_RESULT_WINDOW}] "
            f"but was [{request.offset + request.size}]. See the scroll api for a more efficient way to "
            "request large data sets. This limit can be set by changing the [index.max_result_window] "
            "index level setting."
        )
    if request.slice is not None and request.pit_id is None and request.scroll is None:
        raise validation_failed("[slice] can only be used with [scroll] or [point-in-time] requests")
    if request.search_after is not None and request.offset:
        raise illegal_argument("[from] parameter must be set to 0 when [search_after] is used")


def parse_search_request(params: dict[str, str], body: Any) -> SearchRequest:
    """Build a SearchRequest; raise a 400 EsError on anything malformed."""
    if body is not None and not isinstance(body, dict):
        raise parsing_error("request body must be a JSON object")
    request = SearchRequest()
    _apply_body(request, body or {})
    _apply_params(request, params)
    _validate(request)
    # Hits depend only on the query and the sort, so those key a PIT's cache.
    raw = [(body or {}).get("query"), (body or {}).get("sort"), params.get("sort"), (body or {}).get("slice")]
    request.cache_key = json.dumps(raw, sort_keys=True, default=str)
    return request
