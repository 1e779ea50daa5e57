"""Sort specifications, per-hit sort values and `search_after` positions.

Like Elasticsearch, a missing numeric or date value is replaced by
Long.MAX_VALUE or Long.MIN_VALUE before comparing, and that substitute is
what comes back in the hit's `sort` array; the comparison key of a hit and of
a `search_after` array are built the same way, so "strictly after" is a
plain tuple comparison.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from tests.infra.esserver import dates
from tests.infra.esserver.errors import illegal_argument, parsing_error, query_shard_failure
from tests.infra.esserver.fields import indexed_values
from tests.infra.esserver.mapping import DATE_TYPES, NUMERIC_TYPES, FieldInfo
from tests.infra.esserver.store import Doc, IndexView

LONG_MAX = 2**63 - 1
LONG_MIN = -(2**63)
SPECIAL_FIELDS = ("_score", "_doc", "_shard_doc")
_OPTIONS = {"order", "missing", "format", "unmapped_type", "mode", "numeric_type"}
_TEXT_SORT = (
    "Text fields are not optimised for operations that require per-document field data like "
    "aggregations and sorting, so these operations are disabled by default. Please use a keyword "
    "field instead. Alternatively, set fielddata=true on [{}] in order to load field data by "
    "uninverting the inverted index. Note that this can use significant memory."
)


@functools.total_ordering
class _Descending:
    """Wraps a string so that it sorts in reverse."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value

    def __lt__(self, other: _Descending) -> bool:
        return other.value < self.value

    def __hash__(self) -> int:
        return hash(self.value)


@dataclass(frozen=True)
class SortField:
    """One entry of a `sort` specification."""

    field: str
    desc: bool
    missing: Any = "_last"
    format: str | None = None
    unmapped_type: str | None = None
    mode: str | None = None


def _sort_field(field: str, options: Any) -> SortField:
    default = "desc" if field == "_score" else "asc"
    if isinstance(options, str):
        options = {"order": options}
    if not isinstance(options, dict) or set(options) - _OPTIONS:
        raise parsing_error(f"[{field}] unsupported sort options {options!r}")
    order = str(options.get("order", default)).lower()
    if order not in ("asc", "desc"):
        raise illegal_argument(f"Unknown SortOrder [{order}]")
    return SortField(
        field,
        order == "desc",
        options.get("missing", "_last"),
        options.get("format"),
        options.get("unmapped_type"),
        options.get("mode"),
    )


def parse_sort(spec: Any) -> list[SortField]:
    """Parse the `sort` of a search body (string, object or list of them)."""
    if spec is None:
        return []
    entries = spec if isinstance(spec, list) else [spec]
    fields: list[SortField] = []
    for entry in entries:
        if isinstance(entry, str):
            name, _, order = entry.partition(":")
            fields.append(_sort_field(name, order or {}))
        elif isinstance(entry, dict):
            fields.extend(_sort_field(name, options) for name, options in entry.items())
        else:
            raise parsing_error(f"malformed sort entry {entry!r}")
    return fields


class Column:
    """A sort field bound to the indices being searched."""

    def __init__(self, spec: SortField, views: list[IndexView]) -> None:
        self.spec = spec
        self.infos: dict[str, FieldInfo | None] = {}
        self.kind = "doc" if spec.field in ("_doc", "_shard_doc") else spec.field.strip("_")
        if spec.field not in SPECIAL_FIELDS:
            self.infos = {view.name: view.mapping.lookup(spec.field) for view in views}
            self.kind = self._field_kind(views)
        self.nanos = any(info and info.type == "date_nanos" for info in self.infos.values())

    def _field_kind(self, views: list[IndexView]) -> str:
        mapped = [info for info in self.infos.values() if info is not None]
        field_type = mapped[0].type if mapped else self.spec.unmapped_type
        if field_type is None:
            if views:
                raise query_shard_failure(
                    f"No mapping found for [{self.spec.field}] in order to sort on", views[0].name
                )
            return "string"
        if field_type == "text":
            raise query_shard_failure(_TEXT_SORT.format(self.spec.field), views[0].name, "illegal_argument_exception")
        if field_type in DATE_TYPES:
            return "date"
        return "number" if field_type in NUMERIC_TYPES or field_type == "boolean" else "string"

    def missing_value(self) -> Any:
        """Return what stands in for a document without a value."""
        missing = self.spec.missing
        if missing in ("_last", "_first"):
            if self.kind == "string":
                return None
            high = (missing == "_last") != self.spec.desc
            return LONG_MAX if high else LONG_MIN
        return self.parse(missing)

    def parse(self, value: Any) -> Any:
        """Read a `search_after` (or `missing`) value into this column's value space."""
        try:
            if self.kind == "date" and isinstance(value, str):
                nanos = dates.parse_date(value, self.spec.format)
                return nanos if self.nanos else nanos // dates.NANOS_PER_MILLI
            if self.kind in ("number", "date", "doc"):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    return value
                text = str(value)
                return int(text) if text.lstrip("-").isdigit() else float(text)
            if self.kind == "score":
                return float(value)
        except (TypeError, ValueError):
            raise illegal_argument(
                f"Failed to parse search_after value [{value}] for field [{self.spec.field}]"
            ) from None
        return None if value is None else str(value)

    def value(self, index: str, doc: Doc) -> Any:
        """Return the document's sort value (the missing substitute when it has none)."""
        if self.kind == "doc":
            return doc.order
        if self.kind == "score":
            return 1.0
        info = self.infos.get(index)
        values = indexed_values(doc, info) if info else []
        values = [int(v) if isinstance(v, bool) else v for v in values]
        if not values:
            return self.missing_value()
        return _pick(values, self.spec.mode, self.spec.desc)

    def key(self, value: Any) -> Any:
        """Return a comparison key for a sort value that respects the order."""
        if self.kind == "string":
            if value is None:
                return (1, 0) if self.spec.missing != "_first" else (-1, 0)
            return (0, _Descending(value) if self.spec.desc else value)
        return -value if self.spec.desc else value

    def shown(self, value: Any) -> Any:
        """Return the value as it appears in the hit's `sort` array."""
        if self.kind == "date" and self.spec.format:
            nanos = value if self.nanos else value * dates.NANOS_PER_MILLI
            return dates.format_iso(nanos, 9 if self.spec.format.endswith("_nanos") else 3)
        return value


def _pick(values: list[Any], mode: str | None, desc: bool) -> Any:
    mode = mode or ("max" if desc else "min")
    if mode == "min":
        return min(values)
    if mode == "max":
        return max(values)
    if mode == "sum":
        return sum(values)
    if mode == "avg":
        return sum(values) / len(values)
    if mode == "median":
        ordered = sorted(values)
        return ordered[len(ordered) // 2]
    raise illegal_argument(f"Unknown SortMode [{mode}]")


class SortPlan:
    """How the hits of one search are ordered."""

    def __init__(self, fields: list[SortField], views: list[IndexView]) -> None:
        self.columns = [Column(spec, views) for spec in fields]

    @property
    def explicit(self) -> bool:
        """True when a sort was requested, so hits carry `sort` arrays."""
        return bool(self.columns)

    @property
    def scores(self) -> bool:
        """True when hits keep their `_score` (unsorted, or sorted by `_score`)."""
        return not self.columns or any(c.kind == "score" for c in self.columns)

    def values(self, index: str, doc: Doc) -> list[Any]:
        """Return the raw sort values of one document."""
        return [column.value(index, doc) for column in self.columns]

    def key(self, values: list[Any]) -> tuple[Any, ...]:
        """Return the comparison key of a sort-values list."""
        return tuple(column.key(value) for column, value in zip(self.columns, values, strict=True))

    def shown(self, values: list[Any]) -> list[Any]:
        """Return the `sort` array of a hit."""
        return [column.shown(value) for column, value in zip(self.columns, values, strict=True)]

    def after_key(self, after: Any) -> tuple[Any, ...]:
        """Return the key of a `search_after` array."""
        if not self.columns:
            raise illegal_argument("Sort must contain at least one field.")
        if not isinstance(after, list) or len(after) != len(self.columns):
            count = len(after) if isinstance(after, list) else 1
            raise illegal_argument(f"search_after has {count} value(s) but sort has {len(self.columns)}.")
        return self.key([column.parse(value) for column, value in zip(self.columns, after, strict=True)])
