"""Index mappings: explicit properties plus dynamic mapping of new fields.

Dynamic mapping follows Elasticsearch's defaults (date detection on, strings
become `text` with a `keyword` sub-field, integers `long`, decimals `float`),
because whether a field is a date decides how it is compared and sorted.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from collections.abc import Iterator
from typing import Any

from tests.infra.esserver import dates
from tests.infra.esserver.errors import document_parsing, parsing_error

DATE_TYPES = frozenset({"date", "date_nanos"})
INTEGER_TYPES = frozenset({"long", "integer", "short", "byte", "unsigned_long"})
FLOAT_TYPES = frozenset({"double", "float", "half_float", "scaled_float"})
NUMERIC_TYPES = INTEGER_TYPES | FLOAT_TYPES
_KEYWORD_SUBFIELD = {"keyword": {"type": "keyword", "ignore_above": 256}}


@dataclass(frozen=True)
class FieldInfo:
    """Where a field's values live in `_source`, and how they are indexed."""

    path: str
    type: str
    format: str | None = None
    ignore_above: int | None = None
    ignore_malformed: bool = False


def expand_dotted(properties: dict[str, Any]) -> dict[str, Any]:
    """Turn `{"a.b": {...}}` into `{"a": {"properties": {"b": {...}}}}`, as ES does."""
    expanded: dict[str, Any] = {}
    for name, spec in properties.items():
        if not isinstance(spec, dict):
            raise parsing_error(f"Expected map for property [{name}] but got {spec!r}")
        spec = dict(spec)
        if "properties" in spec:
            spec["properties"] = expand_dotted(spec["properties"])
        head, *rest = name.split(".")
        for part in reversed(rest):
            spec = {"properties": {part: spec}}
        _merge_into(expanded, head, spec)
    return expanded


def _merge_into(target: dict[str, Any], name: str, spec: dict[str, Any]) -> None:
    existing = target.get(name)
    if existing is not None and "properties" in existing and "properties" in spec:
        for child, child_spec in spec["properties"].items():
            _merge_into(existing["properties"], child, child_spec)
    else:
        target[name] = spec


def iter_leaves(source: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (dotted path, leaf value) for every non-null value; arrays are flattened."""
    if isinstance(source, dict):
        for key, value in source.items():
            yield from iter_leaves(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(source, list):
        for item in source:
            yield from iter_leaves(item, prefix)
    elif source is not None:
        yield prefix, source


class Mapping:
    """The properties of one index."""

    def __init__(self, properties: dict[str, Any] | None = None) -> None:
        self.properties: dict[str, Any] = expand_dotted(properties or {})
        # Lookups repeat for every document and query; forget them on change.
        self._lookups: dict[str, FieldInfo | None] = {}

    def copy(self) -> Mapping:
        """Return an independent copy (for point-in-time snapshots)."""
        clone = Mapping()
        clone.properties = copy.deepcopy(self.properties)
        return clone

    def merge(self, properties: dict[str, Any]) -> None:
        """Add explicit properties (PUT _mapping)."""
        self._lookups.clear()
        for name, spec in expand_dotted(properties).items():
            _merge_into(self.properties, name, spec)

    def body(self) -> dict[str, Any]:
        """Return the mapping as GET _mapping shows it."""
        return {"properties": copy.deepcopy(self.properties)} if self.properties else {}

    def _node(self, parts: list[str]) -> dict[str, Any] | None:
        node: dict[str, Any] | None = None
        level = self.properties
        for part in parts:
            node = level.get(part)
            if node is None:
                return None
            level = node.get("properties", {})
        return node

    def lookup(self, field: str) -> FieldInfo | None:
        """Return how `field` (maybe a multi-field like `host.name.keyword`) is mapped."""
        if field not in self._lookups:
            self._lookups[field] = self._find(field)
        return self._lookups[field]

    def _find(self, field: str) -> FieldInfo | None:
        parts = field.split(".")
        node = self._node(parts)
        if node is not None:
            kind = node.get("type", "object")
            return FieldInfo(
                field, kind, node.get("format"), node.get("ignore_above"), bool(node.get("ignore_malformed", False))
            )
        parent = self._node(parts[:-1]) if len(parts) > 1 else None
        sub = (parent or {}).get("fields", {}).get(parts[-1])
        if sub is None:
            return None
        path = ".".join(parts[:-1])
        return FieldInfo(path, sub.get("type", "keyword"), sub.get("format"), sub.get("ignore_above"))

    def learn(self, index: str, doc_id: str, source: dict[str, Any]) -> None:
        """Check a document against the mapping and map its new fields (dynamic mapping)."""
        new_fields: dict[str, dict[str, Any]] = {}
        for path, value in iter_leaves(source):
            info = self.lookup(path)
            if info is None:
                new_fields.setdefault(path, _dynamic_type(value))
            else:
                _check_value(index, doc_id, info, value)
        for path, spec in new_fields.items():
            self.merge({path: spec})
        for path in _object_paths(source):
            if self._node(path.split(".")) is None:
                self.merge({path: {"properties": {}}})


def _object_paths(source: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(source, list):
        for item in source:
            yield from _object_paths(item, prefix)
    elif isinstance(source, dict):
        if prefix:
            yield prefix
        for key, value in source.items():
            yield from _object_paths(value, f"{prefix}.{key}" if prefix else key)


def _dynamic_type(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "long"}
    if isinstance(value, float):
        return {"type": "float"}
    if isinstance(value, str) and dates.looks_like_date(value):
        return {"type": "date"}
    return {"type": "text", "fields": copy.deepcopy(_KEYWORD_SUBFIELD)}


def _check_value(index: str, doc_id: str, info: FieldInfo, value: Any) -> None:
    if info.ignore_malformed:
        return  # kept in _source, left out of the index, as Elasticsearch does
    try:
        if info.type in DATE_TYPES:
            dates.parse_date(value, info.format)
        elif info.type in NUMERIC_TYPES:
            if isinstance(value, bool):
                raise ValueError(value)
            float(value)
    except (TypeError, ValueError):
        raise document_parsing(index, doc_id, info.path, info.type, value) from None
