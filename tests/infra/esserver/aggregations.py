"""Aggregations: `date_histogram`, `missing`, `terms` on `_index`, and `sum`, `min`, `max`.

They follow Elasticsearch 8: histogram buckets are keyed by epoch milliseconds
of the bucket start, sorted ascending, and a document is counted once per bucket
however many of its values fall into it; with `min_doc_count: 0` the empty
buckets between the first and the last one are filled in. A `missing`
aggregation counts the matching documents without an indexed value (every
document of an index where the field is unmapped). `terms` groups by index
name (the only field it takes here), most documents first, and says how many
documents its `size` left out. The metrics read numbers, dates (in
milliseconds, `date_nanos` too, as Elasticsearch aggregates them) and
`_seq_no`; a sum of nothing is 0, a least or greatest of nothing is null.
`terms` and `date_histogram` take sub-aggregations. Anything else, such as
calendar months or time zones other than UTC, answers 400 rather than a wrong
answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from tests.infra.esserver import dates
from tests.infra.esserver.errors import illegal_argument, parsing_error
from tests.infra.esserver.fields import indexed_values
from tests.infra.esserver.mapping import DATE_TYPES, NUMERIC_TYPES, Mapping
from tests.infra.esserver.store import Doc

_FIXED = re.compile(r"(\d+)(ms|s|m|h|d)")
_FIXED_MILLIS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_CALENDAR_MILLIS = {
    "1m": 60_000,
    "minute": 60_000,
    "1h": 3_600_000,
    "hour": 3_600_000,
    "1d": 86_400_000,
    "day": 86_400_000,
}
_UTC_ZONES = frozenset({"UTC", "Z", "+00:00", "Etc/UTC", "GMT", "+0000", "00:00"})
_HISTOGRAM_OPTIONS = frozenset({"field", "fixed_interval", "calendar_interval", "time_zone", "min_doc_count", "keyed"})


@dataclass(frozen=True)
class DateHistogram:
    """A `date_histogram` over one field with a fixed bucket width in milliseconds."""

    name: str
    field: str
    width: int
    min_doc_count: int
    subs: tuple[Aggregation, ...] = ()


@dataclass(frozen=True)
class Missing:
    """A `missing` aggregation over one field."""

    name: str
    field: str


@dataclass(frozen=True)
class Terms:
    """A `terms` aggregation on `_index`: one bucket per index name."""

    name: str
    size: int
    subs: tuple[Aggregation, ...] = ()


@dataclass(frozen=True)
class Metric:
    """A `sum`, `min` or `max` over one numeric or date field, or `_seq_no`."""

    name: str
    kind: str
    field: str


Aggregation = DateHistogram | Missing | Terms | Metric
_METRICS = frozenset({"sum", "min", "max"})
_TERMS_OPTIONS = frozenset({"field", "size"})


def _width(name: str, spec: dict[str, Any]) -> int:
    fixed, calendar = spec.get("fixed_interval"), spec.get("calendar_interval")
    if "interval" in spec:
        raise illegal_argument(
            "[interval] on [date_histogram] is not supported; use [fixed_interval] or [calendar_interval]"
        )
    if (fixed is None) == (calendar is None):
        raise illegal_argument(
            f"Invalid interval specified for [{name}]: exactly one of [fixed_interval] "
            "or [calendar_interval] is required"
        )
    if fixed is not None:
        match = _FIXED.fullmatch(str(fixed))
        if not match or int(match.group(1)) == 0:
            raise illegal_argument(
                f"failed to parse setting [date_histogram.fixedInterval] with value "
                f"[{fixed}] as a time value: unit is missing or unrecognized"
            )
        return int(match.group(1)) * _FIXED_MILLIS[match.group(2)]
    if str(calendar) not in _CALENDAR_MILLIS:
        raise illegal_argument(f"calendar_interval [{calendar}] is not supported by this test server")
    return _CALENDAR_MILLIS[str(calendar)]


def _histogram(name: str, spec: Any, subs: tuple[Aggregation, ...]) -> DateHistogram:
    if not isinstance(spec, dict) or not isinstance(spec.get("field"), str):
        raise parsing_error(f"[date_histogram] of [{name}] requires a [field]")
    unknown = set(spec) - _HISTOGRAM_OPTIONS
    if unknown:
        raise parsing_error(f"[date_histogram] unknown field [{sorted(unknown)[0]}]")
    zone = spec.get("time_zone", "UTC")
    if zone not in _UTC_ZONES:
        raise illegal_argument(f"time_zone [{zone}] is not supported by this test server (UTC only)")
    if spec.get("keyed"):
        raise illegal_argument("[keyed] buckets are not supported by this test server")
    count = spec.get("min_doc_count", 0)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise illegal_argument(f"[min_doc_count] must be greater than or equal to 0. Found [{count}] in [{name}]")
    return DateHistogram(name, spec["field"], _width(name, spec), count, subs)


def _terms(name: str, spec: Any, subs: tuple[Aggregation, ...]) -> Terms:
    if not isinstance(spec, dict) or not isinstance(spec.get("field"), str):
        raise parsing_error(f"[terms] of [{name}] requires a [field]")
    unknown = set(spec) - _TERMS_OPTIONS
    if unknown:
        raise parsing_error(f"[terms] unknown field [{sorted(unknown)[0]}]")
    if spec["field"] != "_index":
        raise illegal_argument("[terms] on fields other than [_index] is not supported by this test server")
    size = spec.get("size", 10)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise illegal_argument(f"[size] must be greater than 0. Found [{size}] in [{name}]")
    return Terms(name, size, subs)


def _metric(name: str, kind: str, spec: Any) -> Metric:
    if not isinstance(spec, dict) or set(spec) != {"field"} or not isinstance(spec["field"], str):
        raise parsing_error(f"[{kind}] of [{name}] takes exactly a [field]")
    return Metric(name, kind, spec["field"])


def _one(name: str, body: Any) -> Aggregation:
    if not isinstance(body, dict):
        raise parsing_error(f"Expected [START_OBJECT] under [{name}]")
    nested = {key: body[key] for key in ("aggs", "aggregations") if key in body}
    kinds = {key: value for key, value in body.items() if key not in nested}
    if len(kinds) != 1 or len(nested) > 1:
        raise parsing_error(f"Expected exactly one aggregation type under [{name}]")
    subs = tuple(parse_aggregations(next(iter(nested.values())))) if nested else ()
    kind, spec = next(iter(kinds.items()))
    if subs and kind not in ("date_histogram", "terms"):
        raise illegal_argument(f"Aggregator [{name}] of type [{kind}] cannot accept sub-aggregations")
    if kind == "date_histogram":
        return _histogram(name, spec, subs)
    if kind == "terms":
        return _terms(name, spec, subs)
    if kind in _METRICS:
        return _metric(name, kind, spec)
    if kind == "missing":
        if not isinstance(spec, dict) or set(spec) != {"field"} or not isinstance(spec["field"], str):
            raise parsing_error(f"[missing] of [{name}] takes exactly a [field]")
        return Missing(name, spec["field"])
    raise parsing_error(f"Unknown aggregation type [{kind}] did you mean [date_histogram] or [missing]?")


def parse_aggregations(spec: Any) -> list[Aggregation]:
    """Read the `aggs` of a search body, or raise the 400 ES sends for a malformed one."""
    if not isinstance(spec, dict):
        raise parsing_error("Expected [START_OBJECT] under [aggs]")
    return [_one(str(name), body) for name, body in spec.items()]


def _millis(value: Any, nanos: bool) -> int:
    return int(value) // dates.NANOS_PER_MILLI if nanos else int(value)


def _bucket_keys(doc: Doc, mapping: Mapping, agg: DateHistogram) -> set[int]:
    info = mapping.lookup(agg.field)
    if info is None:
        return set()
    if info.type not in DATE_TYPES:
        raise illegal_argument(
            f"Field [{agg.field}] of type [{info.type}] is not supported for aggregation [date_histogram]"
        )
    nanos = info.type == "date_nanos"
    return {_millis(value, nanos) // agg.width * agg.width for value in indexed_values(doc, info)}


Match = tuple[str, Mapping, Doc]  # (index name, its mapping, one matching document)


def _metric_values(match: Match, agg: Metric) -> list[float]:
    index, mapping, doc = match
    if agg.field == "_seq_no":
        return [float(doc.seq_no)]
    info = mapping.lookup(agg.field)
    if info is None:
        return []
    if info.type in DATE_TYPES:
        return [float(_millis(value, info.type == "date_nanos")) for value in indexed_values(doc, info)]
    if info.type in NUMERIC_TYPES:
        return [float(value) for value in indexed_values(doc, info)]
    raise illegal_argument(f"Field [{agg.field}] of type [{info.type}] is not supported for aggregation [{agg.kind}]")


def _run_metric(agg: Metric, matches: list[Match]) -> dict[str, Any]:
    values = [value for match in matches for value in _metric_values(match, agg)]
    if agg.kind == "sum":
        return {"value": float(sum(values))}
    if not values:
        return {"value": None}
    return {"value": min(values) if agg.kind == "min" else max(values)}


def _run_histogram(agg: DateHistogram, matches: list[Match]) -> dict[str, Any]:
    members: dict[int, list[Match]] = {}
    for match in matches:
        _, mapping, doc = match
        for key in _bucket_keys(doc, mapping, agg):
            members.setdefault(key, []).append(match)
    keys = sorted(members)
    if agg.min_doc_count == 0 and keys:
        keys = list(range(keys[0], keys[-1] + agg.width, agg.width))
    buckets = [
        {
            "key_as_string": dates.format_iso(key * dates.NANOS_PER_MILLI),
            "key": key,
            "doc_count": len(members.get(key, [])),
            **_run_all(agg.subs, members.get(key, [])),
        }
        for key in keys
        if len(members.get(key, [])) >= agg.min_doc_count
    ]
    return {"buckets": buckets}


def _run_terms(agg: Terms, matches: list[Match]) -> dict[str, Any]:
    members: dict[str, list[Match]] = {}
    for match in matches:
        members.setdefault(match[0], []).append(match)
    ranked = sorted(members, key=lambda name: (-len(members[name]), name))
    kept = ranked[: agg.size]
    return {
        "doc_count_error_upper_bound": 0,
        "sum_other_doc_count": sum(len(members[name]) for name in ranked[agg.size :]),
        "buckets": [
            {"key": name, "doc_count": len(members[name]), **_run_all(agg.subs, members[name])} for name in kept
        ],
    }


def _run_one(agg: Aggregation, matches: list[Match]) -> dict[str, Any]:
    if isinstance(agg, DateHistogram):
        return _run_histogram(agg, matches)
    if isinstance(agg, Terms):
        return _run_terms(agg, matches)
    if isinstance(agg, Metric):
        return _run_metric(agg, matches)
    missing = 0
    for _, mapping, doc in matches:
        info = mapping.lookup(agg.field)
        if info is None or not indexed_values(doc, info):
            missing += 1
    return {"doc_count": missing}


def _run_all(aggs: Iterable[Aggregation], matches: list[Match]) -> dict[str, Any]:
    return {agg.name: _run_one(agg, matches) for agg in aggs}


def run_aggregations(aggs: list[Aggregation], matches: Iterable[Match]) -> dict[str, Any]:
    """Compute every aggregation over the matching documents (each with its index's name and mapping)."""
    return _run_all(aggs, list(matches))


__all__ = ["Aggregation", "DateHistogram", "Metric", "Missing", "Terms", "parse_aggregations", "run_aggregations"]
