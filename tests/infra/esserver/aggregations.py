"""Aggregations: `date_histogram` and `missing`, the two the verification asks for.

They follow Elasticsearch 8: buckets are keyed by epoch milliseconds of the
bucket start, sorted ascending, and a document is counted once per bucket
however many of its values fall into it; with `min_doc_count: 0` the empty
buckets between the first and the last one are filled in. A `missing`
aggregation counts the matching documents without an indexed value (every
document of an index where the field is unmapped). Anything else, such as
sub-aggregations, calendar months or time zones other than UTC, answers 400
rather than a wrong count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from tests.infra.esserver import dates
from tests.infra.esserver.errors import illegal_argument, parsing_error
from tests.infra.esserver.fields import indexed_values
from tests.infra.esserver.mapping import DATE_TYPES, Mapping
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


@dataclass(frozen=True)
class Missing:
    """A `missing` aggregation over one field."""

    name: str
    field: str


Aggregation = DateHistogram | Missing


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


def _histogram(name: str, spec: Any) -> DateHistogram:
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
    return DateHistogram(name, spec["field"], _width(name, spec), count)


def _one(name: str, body: Any) -> Aggregation:
    if not isinstance(body, dict):
        raise parsing_error(f"Expected [START_OBJECT] under [{name}]")
    if "aggs" in body or "aggregations" in body:
        raise illegal_argument("sub-aggregations are not supported by this test server")
    if len(body) != 1:
        raise parsing_error(f"Expected exactly one aggregation type under [{name}]")
    kind, spec = next(iter(body.items()))
    if kind == "date_histogram":
        return _histogram(name, spec)
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


def _render_histogram(agg: DateHistogram, counts: dict[int, int]) -> dict[str, Any]:
    keys = sorted(counts)
    if agg.min_doc_count == 0 and keys:
        keys = list(range(keys[0], keys[-1] + agg.width, agg.width))
    buckets = [
        {"key_as_string": dates.format_iso(key * dates.NANOS_PER_MILLI), "key": key, "doc_count": counts.get(key, 0)}
        for key in keys
        if counts.get(key, 0) >= agg.min_doc_count
    ]
    return {"buckets": buckets}


def run_aggregations(aggs: list[Aggregation], matches: Iterable[tuple[Mapping, Doc]]) -> dict[str, Any]:
    """Compute every aggregation over the matching documents (each with its index's mapping)."""
    histograms: dict[str, dict[int, int]] = {agg.name: {} for agg in aggs if isinstance(agg, DateHistogram)}
    missing: dict[str, int] = {agg.name: 0 for agg in aggs if isinstance(agg, Missing)}
    for mapping, doc in matches:
        for agg in aggs:
            if isinstance(agg, DateHistogram):
                counts = histograms[agg.name]
                for key in _bucket_keys(doc, mapping, agg):
                    counts[key] = counts.get(key, 0) + 1
            else:
                info = mapping.lookup(agg.field)
                if info is None or not indexed_values(doc, info):
                    missing[agg.name] += 1
    return {
        agg.name: (
            _render_histogram(agg, histograms[agg.name])
            if isinstance(agg, DateHistogram)
            else {"doc_count": missing[agg.name]}
        )
        for agg in aggs
    }


__all__ = ["Aggregation", "DateHistogram", "Missing", "parse_aggregations", "run_aggregations"]
