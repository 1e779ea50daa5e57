"""The typed columns of a target table: each one a path of the document converted to a PostgreSQL type.

    columns = ColumnSet(settings.columns)
    columns.values(source)          # a tuple of Python values, or the reason one does not convert
    columns.encode(values)          # the same values as fields of COPY's binary format

Where a value is found: a flat "a.b" key first, then nested objects; from raw `_source`
JSON, one msgspec pass reads every path and skips the rest. How a value converts and
is encoded, type by type: pg_types.py.
"""

from __future__ import annotations

import hashlib
import operator
import re
from typing import Any, Callable, Sequence

import msgspec
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import INET, JSONB

from config import COLUMN_ON_ERROR, COLUMN_TYPES, ColumnSpec, ConfigError
from rtarf_sync.engine.fastjson import loads
from rtarf_sync.engine.target.columns.pg_types import NULL_FIELD, TYPES, NotConverted

# The target table's own columns: a typed column may not take one of these names.
RESERVED = frozenset(
    (
        "es_index",
        "es_id",
        "event_timestamp",
        "source",
        "es_seq_no",
        "es_primary_term",
        "first_synced_at",
        "last_synced_at",
        "deleted_at",
    )
)
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PATH = re.compile(r"[A-Za-z0-9_@\-]+(?:\.[A-Za-z0-9_@\-]+)*")  # dotted field names, no patterns
_MISSING = object()


def check_columns(columns: Sequence[ColumnSpec]) -> None:
    """Refuse typed columns the target table cannot hold (ConfigError naming the column and the key)."""
    seen: set[str] = set()
    for column in columns:
        where = f"column {column.name!r}"
        if not _IDENTIFIER.fullmatch(column.name):
            raise ConfigError(f"{where}: the name must be a lower-case identifier (letters, digits, _)")
        if column.name in RESERVED or column.name in seen:
            raise ConfigError(f"{where}: the name is taken (by the table itself or another column)")
        if column.type not in COLUMN_TYPES:
            raise ConfigError(f"{where}: type must be one of {', '.join(COLUMN_TYPES)}, not {column.type!r}")
        if column.on_error not in COLUMN_ON_ERROR:
            raise ConfigError(f"{where}: on_error must be one of {', '.join(COLUMN_ON_ERROR)}")
        if not _PATH.fullmatch(column.path):
            raise ConfigError(f"{where}: path must be a dotted field name, not {column.path!r}")
        seen.add(column.name)


class TypedColumn:
    """One configured column: where its value is, how it converts and how it is written."""

    def __init__(self, spec: ColumnSpec) -> None:
        kind = TYPES[spec.type]
        self.spec, self.name, self.path = spec, spec.name, spec.path
        self.parts = tuple(spec.path.split("."))
        self.convert, self.encode, self.sa_type = kind.convert, kind.encode, kind.sa_type
        self.field = kind.to_field()
        self.strict = spec.on_error == "dead_letter"

    def lookup(self, source: dict[str, Any]) -> Any:
        """The value at the path (a flat "a.b" key first, then nested objects), or None."""
        if self.path in source:
            return source[self.path]
        node: Any = source
        for part in self.parts:
            if type(node) is not dict:
                return None
            node = node.get(part, _MISSING)
            if node is _MISSING:
                return None
        return node

    def bind(self, value: Any) -> sa.ColumnElement[Any]:
        """The value as a SQL literal of the column's type (the row-by-row path)."""
        if value is None:
            return sa.null()
        if self.spec.type == "jsonb":
            return sa.cast(sa.literal(value.decode(), sa.Text), JSONB)
        if self.spec.type == "inet":
            return sa.cast(sa.literal(str(value), sa.Text), INET)
        return sa.literal(value, self.sa_type)


class _Lookups:
    """Reads every path out of raw `_source` JSON in one msgspec pass, skipping the rest.

    Decoding only the fields the paths need costs a fraction of decoding the whole document.
    A record per object on the way: at the top, each dotted path as a flat key and each path's
    first part; below, the next parts. A missing value or JSON null reads as None, and every
    path's value comes out of one `attrgetter` call. A document these records do not fit (a
    flat dotted key, a part of a path that holds something other than an object) is decoded
    whole by the caller, as is every document when one path is the prefix of another.
    """

    def __init__(self, paths: Sequence[tuple[str, ...]]) -> None:
        self.decoder: msgspec.json.Decoder[Any] | None = None
        if not paths or any(len(a) < len(b) and b[: len(a)] == a for a in paths for b in paths):
            return
        flat = {".".join(parts): f"f{number}" for number, parts in enumerate(sorted(set(paths))) if len(parts) > 1}
        record, index = self._record(paths, flat)
        self.decoder = msgspec.json.Decoder(record)
        self._flats = operator.attrgetter(*flat.values()) if flat else None
        self._no_flats = (msgspec.UNSET,) * len(flat) if len(flat) > 1 else msgspec.UNSET
        self._take = operator.attrgetter(*(self._chain(parts, index) for parts in paths))
        self._many = len(paths) > 1

    def _record(self, paths: Sequence[tuple[str, ...]], flat: dict[str, str]) -> tuple[type, dict[str, Any]]:
        """The record type of one object level, and key -> (field name, the index below it)."""
        fields: list[tuple[str, Any, Any]] = [(name, object, msgspec.UNSET) for name in flat.values()]
        rename = {name: path for path, name in flat.items()}
        index: dict[str, Any] = {}
        for number, key in enumerate(sorted({parts[0] for parts in paths})):
            below = [parts[1:] for parts in paths if parts[0] == key and len(parts) > 1]
            name = f"n{number}"
            if below:
                inner, inner_index = self._record(below, {})
                # Absent, the object reads as an empty one, so the paths through it read None.
                fields.append((name, inner | None, msgspec.field(default_factory=inner)))
            else:
                inner_index = {}
                fields.append((name, object, None))
            rename[name] = key
            index[key] = (name, inner_index)
        return msgspec.defstruct("ColumnLookup", fields, rename=rename, gc=False), index

    @staticmethod
    def _chain(parts: tuple[str, ...], index: dict[str, Any]) -> str:
        """The dotted attribute path of `parts` through the records."""
        chain: list[str] = []
        for part in parts:
            name, index = index[part]
            chain.append(name)
        return ".".join(chain)

    def read(self, data: bytes) -> tuple[Any, ...] | None:
        """The value at each path (None if missing), or None where the records do not fit the document."""
        if self.decoder is None:
            return None
        try:
            found = self.decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        if self._flats is not None and self._flats(found) != self._no_flats:
            return None  # a flat "a.b" key, which comes before the nested path: the whole document decides
        try:
            values = self._take(found)
        except AttributeError:  # JSON null where an object leads on (None has no fields)
            return None
        return values if self._many else (values,)


class ColumnSet:
    """The typed columns of one target table, in their configured order."""

    def __init__(self, specs: Sequence[ColumnSpec] = ()) -> None:
        self.columns = tuple(TypedColumn(spec) for spec in specs)
        self.names = tuple(column.name for column in self.columns)
        self._plan = tuple((column.lookup, column.convert, column.strict, column) for column in self.columns)
        self._encoders = tuple(column.encode for column in self.columns)
        self._lookups = _Lookups([column.parts for column in self.columns]) if self.columns else None
        self._fields = tuple(column.field if column.strict else _or_null(column.field) for column in self.columns)
        self._with_cursor: dict[str, _Lookups] = {}

    def __bool__(self) -> bool:
        return bool(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    def raw_values(self, data: bytes) -> tuple[Any, ...] | str:
        """`values` of a raw `_source` JSON text, decoding only the columns' paths where it can."""
        found = self._lookups.read(data) if self._lookups is not None else None
        if found is None:
            return self.values(decode_source(data))
        return self._converted(found)

    def raw_fields(self, data: bytes, cursor: str) -> tuple[Any, bytes | str] | None:
        """The value at the `cursor` path (None if missing) and the columns' COPY fields, or why the
        document is set aside, of raw `_source` JSON in one msgspec pass that skips everything else.

        None where that pass does not fit (see `_Lookups`): the caller reads the cursor and the
        values apart.
        """
        lookups = self._with_cursor.get(cursor)
        if lookups is None:
            paths = [tuple(cursor.split(".")), *(column.parts for column in self.columns)]
            lookups = self._with_cursor[cursor] = _Lookups(paths)
        found = lookups.read(data)
        if found is None:
            return None
        try:
            fields = [
                NULL_FIELD if value is None else field(value)
                for value, field in zip(found[1:], self._fields, strict=True)
            ]
        except NotConverted:  # a column with on_error = "dead_letter": say which one, and why
            converted = self._converted(found[1:])
            return found[0], converted if isinstance(converted, str) else "a value does not convert"
        return found[0], b"".join(fields)

    def row_values(self, typed: tuple[Any, ...], source: bytes) -> tuple[Any, ...]:
        """A stored row's typed values: `typed` when it holds them, else converted again from `source`."""
        if typed or not self.columns:
            return typed
        values = self.raw_values(source)
        if isinstance(values, str):  # the row was built from the same text, so it converted then
            raise NotConverted(values)
        return values

    def values(self, source: dict[str, Any]) -> tuple[Any, ...] | str:
        """Each column's value, or why the document must be set aside (naming the column and the path)."""
        return self._converted([column.lookup(source) for column in self.columns])

    def _converted(self, raw: Sequence[Any]) -> tuple[Any, ...] | str:
        found: list[Any] = []
        for value, (_, convert, strict, column) in zip(raw, self._plan, strict=True):
            if value is not None:
                try:
                    value = convert(value)
                except NotConverted as error:
                    if strict:
                        return _reason(column, value, error)
                    value = None
            found.append(value)
        return tuple(found)

    def lenient_values(self, source: dict[str, Any]) -> tuple[tuple[Any, ...], int]:
        """Each column's value, NULL where one does not convert, and how many did not (filling stored rows)."""
        found: list[Any] = []
        failed = 0
        for lookup, convert, _, _ in self._plan:
            value = lookup(source)
            if value is not None:
                try:
                    value = convert(value)
                except NotConverted:
                    value, failed = None, failed + 1
            found.append(value)
        return tuple(found), failed

    def encode(self, values: tuple[Any, ...]) -> bytes:
        """The values as fields of COPY's binary format, in column order."""
        return b"".join(
            NULL_FIELD if value is None else encode(value) for encode, value in zip(self._encoders, values, strict=True)
        )

    def ddl(self, quote: Callable[[str], str]) -> str:
        """`name type, ...` of these columns, for CREATE TABLE (names quoted by `quote`)."""
        return ", ".join(f"{quote(column.name)} {column.spec.type}" for column in self.columns)

    @property
    def fingerprint(self) -> str:
        """A short name part that differs between column lists (the staging table of each)."""
        text = ";".join(f"{column.name}:{column.spec.type}" for column in self.columns)
        return hashlib.sha1(text.encode()).hexdigest()[:10]


def _or_null(field: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """`field`, giving NULL for a value that does not convert (on_error = "null")."""

    def lenient(value: Any) -> bytes:
        try:
            return field(value)
        except NotConverted:
            return NULL_FIELD

    return lenient


def _reason(column: TypedColumn, value: Any, error: NotConverted) -> str:
    shown = orjson.dumps(value, default=str).decode()[:100] if not isinstance(value, str) else repr(value[:100])
    return f"column {column.name} (path {column.path}, {column.spec.type}): {shown} does not convert: {error}"


def decode_source(data: bytes | str) -> Any:
    """A stored or fetched `_source` decoded (orjson, or the standard library where orjson refuses)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return loads(data)


def index_name(table: str, column: str) -> str:
    """The deterministic name of a typed column's index (at most 63 bytes)."""
    name = f"{table}_{column}_idx"
    if len(name) <= 63:
        return name
    digest = hashlib.sha1(f"{table}.{column}".encode()).hexdigest()[:10]
    return f"{table[:25]}_{column[:20]}_{digest}_idx"
