"""Query DSL: compile a query once per index into a predicate over documents.

Compiling first means a malformed or unknown query fails with a 400 before
any document is read, even on an empty index, as in Elasticsearch. Every
match scores 1.0; the service under test never sorts by relevance.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.infra.esserver import dates
from tests.infra.esserver.errors import parsing_error, query_shard_failure
from tests.infra.esserver.fields import has_value, indexed_values, normalize
from tests.infra.esserver.mapping import DATE_TYPES, FieldInfo, Mapping
from tests.infra.esserver.store import Doc

Predicate = Callable[[Doc], bool]
_META_KEYS = frozenset({"boost", "_name"})
_RANGE_KEYS = (
    frozenset(
        {"gt", "gte", "lt", "lte", "from", "to", "include_lower", "include_upper", "format", "time_zone", "relation"}
    )
    | _META_KEYS
)


def _never(doc: Doc) -> bool:
    return False


def _always(doc: Doc) -> bool:
    return True


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class QueryCompiler:
    """Turns query DSL into predicates for the documents of one index."""

    def __init__(self, mapping: Mapping, index: str, now_nanos: int) -> None:
        self.mapping = mapping
        self.index = index
        self.now_nanos = now_nanos
        self._kinds: dict[str, Callable[[dict[str, Any]], Predicate]] = {
            "match_all": lambda body: _always,
            "match_none": lambda body: _never,
            "term": self._term,
            "terms": self._terms,
            "range": self._range,
            "bool": self._bool,
            "exists": self._exists,
            "ids": self._ids,
            "match": self._match,
        }

    def compile(self, query: Any) -> Predicate:
        """Return the predicate for one query clause; raise a 400 EsError if it is invalid."""
        if query is None:
            return _always
        if not isinstance(query, dict) or len(query) != 1:
            raise parsing_error("[_na] query malformed, must start with start_object")
        ((name, body),) = query.items()
        kind = self._kinds.get(name)
        if kind is None:
            raise parsing_error(f"unknown query [{name}]")
        if not isinstance(body, dict):
            raise parsing_error(f"[{name}] query malformed, no start_object after query name")
        return kind(body)

    def _single_field(self, name: str, body: dict[str, Any]) -> tuple[str, Any]:
        fields = [key for key in body if key not in _META_KEYS]
        if len(fields) != 1:
            raise parsing_error(f"[{name}] query doesn't support multiple fields, found {fields}")
        return fields[0], body[fields[0]]

    def _value(
        self, info: FieldInfo, value: Any, round_up: bool = False, fmt: str | None = None, offset: int = 0
    ) -> Any:
        """Convert a query value to the field's indexed form (date math included)."""
        try:
            if info.type in DATE_TYPES:
                nanos = dates.resolve_date_math(value, self.now_nanos, round_up, fmt or info.format, offset)
                return nanos if info.type == "date_nanos" else nanos // dates.NANOS_PER_MILLI
            return normalize(info, value)
        except (TypeError, ValueError) as exc:
            raise query_shard_failure(f"failed to create query: {exc}", self.index) from None

    def _equals(self, field: str, values: list[Any], case_insensitive: bool = False) -> Predicate:
        if field == "_index":
            # The metadata field: every document of this index has its name (aliases are not matched).
            return _always if self.index in {str(v) for v in values} else _never
        info = self.mapping.lookup(field)
        if info is None:
            return _never

        def fold(value: Any) -> Any:
            return value.lower() if case_insensitive and isinstance(value, str) else value

        wanted = {fold(self._value(info, v)) for v in values if not isinstance(v, (dict, list))}
        return lambda doc: any(fold(v) in wanted for v in indexed_values(doc, info) if not isinstance(v, (dict, list)))

    def _term(self, body: dict[str, Any]) -> Predicate:
        field, spec = self._single_field("term", body)
        if isinstance(spec, dict):
            if "value" not in spec:
                raise parsing_error("[term] query does not support a term query without [value]")
            return self._equals(field, [spec["value"]], bool(spec.get("case_insensitive")))
        return self._equals(field, [spec])

    def _terms(self, body: dict[str, Any]) -> Predicate:
        field, values = self._single_field("terms", body)
        if not isinstance(values, list):
            raise parsing_error("[terms] query does not support terms lookup in this server")
        return self._equals(field, values)

    def _range(self, body: dict[str, Any]) -> Predicate:
        field, spec = self._single_field("range", body)
        if not isinstance(spec, dict) or set(spec) - _RANGE_KEYS:
            raise parsing_error(f"[range] query does not support {sorted(set(spec) - _RANGE_KEYS)}")
        info = self.mapping.lookup(field)
        if info is None:
            return _never
        offset = dates.parse_offset(spec["time_zone"]) if spec.get("time_zone") else 0
        checks = [self._bound(info, spec, key, offset) for key in ("gt", "gte", "lt", "lte", "from", "to")]
        tests = [check for check in checks if check is not None]
        return lambda doc: any(all(t(v) for t in tests) for v in indexed_values(doc, info))

    def _bound(self, info: FieldInfo, spec: dict[str, Any], key: str, offset: int) -> Callable[[Any], bool] | None:
        raw = spec.get(key)
        if raw is None:
            return None
        inclusive = (
            key in ("gte", "lte")
            or (key == "from" and spec.get("include_lower", True))
            or (key == "to" and spec.get("include_upper", True))
        )
        upper = key in ("lt", "lte", "to")
        # ES rounds date math so that the range covers whole units: up for gt and lte.
        round_up = (upper and inclusive) or (not upper and not inclusive)
        bound = self._value(info, raw, round_up, spec.get("format"), offset)
        if upper:
            return (lambda v: v <= bound) if inclusive else (lambda v: v < bound)
        return (lambda v: v >= bound) if inclusive else (lambda v: v > bound)

    def _bool(self, body: dict[str, Any]) -> Predicate:
        allowed = {"must", "filter", "should", "must_not", "minimum_should_match", "adjust_pure_negative"}
        unknown = set(body) - allowed - _META_KEYS
        if unknown:
            raise parsing_error(f"[bool] query does not support [{sorted(unknown)[0]}]")
        required = [self.compile(q) for key in ("must", "filter") for q in _as_list(body.get(key))]
        excluded = [self.compile(q) for q in _as_list(body.get("must_not"))]
        optional = [self.compile(q) for q in _as_list(body.get("should"))]
        needed = _minimum_should_match(body.get("minimum_should_match"), len(optional), bool(required))

        def matches(doc: Doc) -> bool:
            if not all(p(doc) for p in required) or any(p(doc) for p in excluded):
                return False
            return needed == 0 or sum(1 for p in optional if p(doc)) >= needed

        return matches

    def _exists(self, body: dict[str, Any]) -> Predicate:
        field = body.get("field")
        if not isinstance(field, str):
            raise parsing_error("[exists] must be provided with a [field]")
        info = self.mapping.lookup(field)
        if info is None:
            return _never
        if info.ignore_malformed:
            # A malformed value was never indexed, so the field does not exist for it.
            return lambda doc: bool(indexed_values(doc, info))
        return lambda doc: has_value(doc.source, info.path)

    def _ids(self, body: dict[str, Any]) -> Predicate:
        wanted = {str(v) for v in _as_list(body.get("values"))}
        return lambda doc: doc.id in wanted

    def _match(self, body: dict[str, Any]) -> Predicate:
        field, spec = self._single_field("match", body)
        text = spec.get("query") if isinstance(spec, dict) else spec
        info = self.mapping.lookup(field)
        if info is None or info.type != "text":
            return self._equals(field, [text])
        # A crude stand-in for the standard analyzer: lowercase word tokens.
        wanted = set(re.findall(r"\w+", str(text).lower()))
        need_all = isinstance(spec, dict) and spec.get("operator", "or").lower() == "and"

        def matches(doc: Doc) -> bool:
            tokens = {t for v in indexed_values(doc, info) for t in re.findall(r"\w+", str(v).lower())}
            return wanted <= tokens if need_all else bool(wanted & tokens)

        return matches


def _minimum_should_match(spec: Any, should_count: int, has_required: bool) -> int:
    if spec is None:
        return 1 if should_count and not has_required else 0
    text = str(spec).strip()
    try:
        count = int(should_count * int(text[:-1]) / 100) if text.endswith("%") else int(text)
    except ValueError:
        raise parsing_error(f"[bool] unsupported minimum_should_match [{spec}]") from None
    return should_count + count if count < 0 else count


def compile_query(query: Any, mapping: Mapping, index: str, now_nanos: int) -> Predicate:
    """Compile a query for one index."""
    return QueryCompiler(mapping, index, now_nanos).compile(query)


__all__ = ["Predicate", "compile_query"]
