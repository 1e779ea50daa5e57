"""Reading field values out of `_source`, as doc values would hold them.

`_source` stays the raw JSON object; values are extracted per request.
Dotted paths walk nested objects and also match literal dotted keys
(`{"source.ip": ...}`), and arrays, including arrays of objects, are
flattened, because that is how Elasticsearch indexes them.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from tests.infra.esserver import dates
from tests.infra.esserver.mapping import DATE_TYPES, FLOAT_TYPES, INTEGER_TYPES, FieldInfo
from tests.infra.esserver.store import Doc


def source_values(source: Any, path: str) -> list[Any]:
    """Return every non-null leaf value found at a dotted path."""
    node = source
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    else:
        # The common case: plain nested objects down to a single value.
        if not isinstance(node, (dict, list)):
            return [] if node is None else [node]
    found: list[Any] = []
    _collect(source, path.split("."), found)
    return found


def _collect(node: Any, parts: list[str], found: list[Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _collect(item, parts, found)
        return
    if not parts:
        if node is not None:
            found.append(node)
        return
    if not isinstance(node, dict):
        return
    for cut in range(1, len(parts) + 1):
        key = ".".join(parts[:cut])
        if key in node:
            _collect(node[key], parts[cut:], found)


def has_value(source: Any, path: str) -> bool:
    """Tell whether a field (or any leaf under an object field) has a value."""
    return any(_non_empty(value) for value in source_values(source, path))


def _non_empty(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_non_empty(v) for v in value.values())
    if isinstance(value, list):
        return any(_non_empty(v) for v in value)
    return value is not None


def normalize(info: FieldInfo, value: Any) -> Any:
    """Convert one value to what the field's type indexes; raise ValueError if it cannot."""
    kind = info.type
    if kind in DATE_TYPES:
        nanos = dates.parse_date(value, info.format)
        return nanos if kind == "date_nanos" else nanos // dates.NANOS_PER_MILLI
    if kind in INTEGER_TYPES:
        if isinstance(value, bool):
            raise ValueError(value)
        return int(value) if isinstance(value, int) else int(float(value))
    if kind in FLOAT_TYPES:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if kind == "boolean":
        return _boolean(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, (dict, list)) else str(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise ValueError(f"Can't parse boolean value [{value}]")


def indexed_values(doc: Doc, info: FieldInfo) -> list[Any]:
    """Return `doc_values` of a stored document, computed once per document and field."""
    values = doc.memo.get(info)
    if values is None:
        values = doc.memo[info] = doc_values(doc.source, info)
    return values


def doc_values(source: Any, info: FieldInfo) -> list[Any]:
    """Return the field's indexed values for one document (unparsable ones dropped)."""
    values = []
    for raw in source_values(source, info.path):
        try:
            value = normalize(info, raw)
        except (TypeError, ValueError):
            continue
        if info.ignore_above is not None and isinstance(value, str) and len(value) > info.ignore_above:
            continue
        values.append(value)
    return values


def filter_source(source: dict[str, Any], includes: list[str], excludes: list[str]) -> dict[str, Any]:
    """Apply `_source` includes/excludes patterns (with `*`) to a document."""
    return _filter_object(source, "", includes, excludes)


def _filter_object(obj: dict[str, Any], prefix: str, includes: list[str], excludes: list[str]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in obj.items():
        path = f"{prefix}{key}"
        if any(fnmatch.fnmatchcase(path, p) for p in excludes):
            continue
        whole = not includes or any(fnmatch.fnmatchcase(path, p) for p in includes)
        if isinstance(value, dict):
            inner_includes = [] if whole else includes
            if whole or any(p.startswith(path + ".") or p.startswith("*") for p in includes):
                child = _filter_object(value, path + ".", inner_includes, excludes)
                if child or whole:
                    kept[key] = child
        elif whole:
            kept[key] = value
    return kept
