"""Turning search hits into target rows, or into reasons they cannot be stored.

Two paths give the same rows. The fast one (`raw_row`) takes a typed hit whose
`_source` is the raw JSON the engine sent (hits.py): it decodes only the cursor
field, checks the bytes for a NUL escape and their size, and stores the text as
it is, so no per-event Python work grows with the document. The careful one
(`to_row`) takes a hit decoded into dicts, for pages the typed decoder refuses,
and re-encodes the `_source`. Both set a document aside for the same reasons.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence, cast

import msgspec

from rtarf_sync.engine.fastjson import dumps_utf8, loads
from rtarf_sync.engine.hits import AnyHit, Hit, MetadataPage, as_dict

if TYPE_CHECKING:  # columns.py imports this module for parse_instant
    from rtarf_sync.engine.target.columns.column_set import ColumnSet

# A JSON \u0000 escape: an odd number of backslashes before u0000 (an even number is a
# literal backslash followed by the text "u0000", which is fine).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_MISSING = object()


class EventRow(NamedTuple):
    """One document ready for the target table (a tuple: pages make thousands of them)."""

    es_index: str
    es_id: str
    event_timestamp: datetime
    source: bytes  # the _source as compact UTF-8 JSON
    seq_no: int
    primary_term: int
    copy_row: bytes = b""  # the row in COPY's binary format, when built ahead (PageConverter)
    typed: tuple[Any, ...] = ()  # the values of the typed columns (columns.py), in their order

    @property
    def key(self) -> tuple[str, str]:
        return (self.es_index, self.es_id)


def copy_row(
    es_index: str,
    es_id: str,
    moment: datetime,
    source: bytes,
    seq_no: int,
    term: int,
    typed: bytes = b"",
    width: int = 6,
) -> bytes:
    """A row as one tuple of COPY's binary format (es_index, es_id, event_timestamp, source, seq_no, term),
    then the `typed` columns' fields already encoded (`width` counts every field).

    Built by hand because per-value conversion in the driver cost more than the rest of the
    page write, and binary because nothing needs escaping: a `_source` goes as the bytes the
    engine sent (`jsonb` takes a version byte, 1, then the JSON text), a timestamp as
    microseconds since 2000-01-01 UTC, a version as two 64-bit integers.
    """
    index, doc_id = es_index.encode(), es_id.encode()
    return b"".join(
        (
            _SIX_FIELDS if width == 6 else _FIELD_COUNT(width),
            _LENGTH(len(index)),
            index,
            _LENGTH(len(doc_id)),
            doc_id,
            _STAMP_THEN_LENGTH(8, (moment - _PG_EPOCH) // _MICROSECOND, len(source) + 1),
            _JSONB_VERSION,
            source,
            _TWO_BIGINTS(8, seq_no, 8, term),
            typed,
        )
    )


_FIELD_COUNT = struct.Struct("!h").pack
_SIX_FIELDS = _FIELD_COUNT(6)
_LENGTH = struct.Struct("!i").pack
_STAMP_THEN_LENGTH = struct.Struct("!iqi").pack
_TWO_BIGINTS = struct.Struct("!iqiq").pack
_JSONB_VERSION = b"\x01"
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)  # signature, flags, no extension
COPY_TRAILER = struct.pack("!h", -1)


@dataclass(frozen=True)
class Rejected:
    """A document set aside, with the reason and its raw JSON."""

    es_index: str
    es_id: str
    seq_no: int
    primary_term: int
    reason: str
    raw: str


class CursorField:
    """Reads one dotted field (flat "a.b" or nested) from raw `_source` JSON, skipping the rest."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_lookup_type(path, path.split(".")))

    def value(self, data: bytes) -> Any:
        """The field's value (as `field_value` gives it), decoding only what leads to it."""
        try:
            found = self._decoder.decode(data)
        except msgspec.ValidationError:
            # A part of the path holds something other than an object: the full document decides.
            return field_value(loads(data), self.path)
        value = found.flat
        if value is not msgspec.UNSET:
            return value
        node = getattr(found, "nested", msgspec.UNSET)
        while node is not msgspec.UNSET and hasattr(node, "nested"):
            node = node.nested
        value = node.flat if node is not msgspec.UNSET else msgspec.UNSET
        return _MISSING if value is msgspec.UNSET else value


def _lookup_type(flat: str, parts: list[str]) -> type:
    """A msgspec record with the field `flat` and, for a dotted path, the nested object of its first part."""
    fields: list[tuple[str, Any, Any]] = [("flat", object, msgspec.UNSET)]
    rename = {"flat": flat}
    if len(parts) > 1:
        # Below the top, only the nested walk counts (as in field_value): the rest of the path, one part deep.
        inner = _lookup_type(parts[1], []) if len(parts) == 2 else _nested_type(parts[1:])
        fields.append(("nested", inner | msgspec.UnsetType, msgspec.UNSET))
        rename["nested"] = parts[0]
    return msgspec.defstruct("CursorLookup", fields, rename=rename, gc=False)


def _nested_type(parts: list[str]) -> type:
    """A record whose field `parts[0]` holds the record of the rest of the path."""
    inner = _lookup_type(parts[1], []) if len(parts) == 2 else _nested_type(parts[1:])
    return msgspec.defstruct(
        "CursorStep", [("nested", inner | msgspec.UnsetType, msgspec.UNSET)], rename={"nested": parts[0]}, gc=False
    )


def field_value(source: dict[str, Any], path: str) -> Any:
    """Value at a dotted path, accepting both flat ("a.b") and nested keys."""
    if path in source:
        return source[path]
    node: Any = source
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def engine_time(moment: datetime) -> str:
    """A UTC instant as engines store and parse it: millisecond ISO-8601 with Z."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_millis(text: str) -> bool:
    """Epoch milliseconds written as text: an optional minus and 1 to 16 ASCII digits."""
    digits = text[1:] if text.startswith("-") else text
    return 0 < len(digits) <= 16 and digits.isascii() and digits.isdigit()


def parse_instant(value: Any) -> datetime | None:
    """Parse an engine date (ISO-8601 text or epoch milliseconds) to an aware UTC datetime."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    try:
        if isinstance(value, str) and not _is_millis(value):
            moment = datetime.fromisoformat(value.strip())
            return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _version(hit: dict[str, Any]) -> tuple[int, int]:
    """(primary_term, seq_no), the order of versions.py."""
    return int(hit.get("_primary_term", -1)), int(hit.get("_seq_no", -1))


def reject(hit: dict[str, Any], reason: str) -> Rejected:
    """Build the dead-letter record of a hit."""
    term, seq_no = _version(hit)
    raw = json.dumps(hit.get("_source"), ensure_ascii=True, default=str)
    return Rejected(hit["_index"], hit["_id"], seq_no, term, reason, raw)


def to_row(
    hit: dict[str, Any], cursor_field: str, max_bytes: int, columns: ColumnSet | None = None
) -> EventRow | Rejected:
    """Convert one hit (typed columns included), or say why it cannot be stored."""
    source = hit.get("_source")
    if not isinstance(source, dict):
        return reject(hit, "document has no _source")
    value = field_value(source, cursor_field)
    if value is _MISSING or value is None:
        return reject(hit, f"missing cursor field {cursor_field}")
    moment = parse_instant(value)
    if moment is None:
        return reject(hit, f"cursor field {cursor_field} is not a date: {str(value)[:100]!r}")
    try:
        data = dumps_utf8(source)
    except UnicodeEncodeError:
        return reject(hit, "document contains invalid Unicode (a lone surrogate)")
    if b"\\u0000" in data and _NUL_ESCAPE.search(data):
        return reject(hit, "document contains a NUL character (\\u0000), which PostgreSQL jsonb rejects")
    size = len(data)
    if size > max_bytes:
        return reject(hit, f"document is {size} bytes, over the limit of {max_bytes} (RTARF_SYNC_MAX_DOCUMENT_BYTES)")
    typed = columns.values(source) if columns else ()
    if isinstance(typed, str):
        return reject(hit, typed)
    term, seq_no = _version(hit)
    return EventRow(hit["_index"], hit["_id"], moment, data, seq_no, term, typed=typed)


# Numbers are the only JSON text that re-encoding can lengthen (1e15 becomes 1000000000000000.0,
# under four times as long): a raw document under a quarter of the limit is under it re-encoded too.
_SIZE_MARGIN = 4


def raw_row(
    hit: Hit, cursor: CursorField, max_bytes: int, prepare_copy: bool = False, columns: ColumnSet | None = None
) -> EventRow | Rejected:
    """Convert one typed hit (raw `_source`), or say why it cannot be stored: the same verdicts as `to_row`."""
    data = bytes(hit._source)  # noqa: SLF001 - engine field names
    if not data.startswith(b"{"):
        return reject(as_dict(hit), "document has no _source")
    # With typed columns and a COPY tuple to build, one pass reads the cursor field and the columns.
    fields = columns.raw_fields(data, cursor.path) if columns and prepare_copy else None
    value = cursor.value(data) if fields is None else fields[0]
    if value is _MISSING or value is None:
        return reject(as_dict(hit), f"missing cursor field {cursor.path}")
    moment = parse_instant(value)
    if moment is None:
        return reject(as_dict(hit), f"cursor field {cursor.path} is not a date: {str(value)[:100]!r}")
    if b"\\u0000" in data and _NUL_ESCAPE.search(data):
        return reject(as_dict(hit), "document contains a NUL character (\\u0000), which PostgreSQL jsonb rejects")
    if len(data) * _SIZE_MARGIN > max_bytes:
        # Near the limit, measure as `to_row` does: the compact encoding of the decoded document.
        size = len(dumps_utf8(loads(data)))
        if size > max_bytes:
            return reject(
                as_dict(hit), f"document is {size} bytes, over the limit of {max_bytes} (RTARF_SYNC_MAX_DOCUMENT_BYTES)"
            )
    typed: tuple[Any, ...] = ()
    encoded, width = b"", 6
    if fields is not None:
        # The typed values stay unbuilt: the COPY tuple holds them, and the sink's row-by-row path,
        # the only other reader of them, converts them again from `source` (`ColumnSet.row_values`).
        if isinstance(fields[1], str):
            return reject(as_dict(hit), fields[1])
        encoded, width = fields[1], 6 + len(columns or ())
    elif columns:
        values = columns.raw_values(data)
        if isinstance(values, str):
            return reject(as_dict(hit), values)
        typed, width = values, 6 + len(columns)
        encoded = columns.encode(typed) if prepare_copy else b""
    index, doc_id, seq_no, term = hit._index, hit._id, hit._seq_no, hit._primary_term  # noqa: SLF001 - the engine's field names
    return EventRow(
        index,
        doc_id,
        moment,
        data,
        seq_no,
        term,
        copy_row(index, doc_id, moment, data, seq_no, term, encoded, width) if prepare_copy else b"",
        typed,
    )


def convert_page(
    hits: Sequence[AnyHit],
    cursor: CursorField,
    max_bytes: int,
    prepare_copy: bool = False,
    columns: ColumnSet | None = None,
) -> tuple[list[EventRow], list[Rejected]]:
    """Split a page into rows to write and documents to set aside, each hit by the path its shape takes.

    With `prepare_copy`, each row also carries its COPY tuple (otherwise the sink builds it if written).
    """
    rows: list[EventRow] = []
    rejects: list[Rejected] = []
    for hit in hits:
        converted = (
            raw_row(hit, cursor, max_bytes, prepare_copy, columns)
            if isinstance(hit, Hit)
            else to_row(hit, cursor.path, max_bytes, columns)
        )
        if isinstance(converted, EventRow):
            rows.append(converted)
        else:
            rejects.append(converted)
    return rows, rejects


class Deferred(NamedTuple):
    """A page handed over unconverted: the writer converts only the documents PostgreSQL lacks.

    A page read metadata first has no `_source`s: `fetch` brings those of the documents to write.
    """

    hits: list[Hit]
    fetch: Callable[[list[Hit]], list[AnyHit]] | None = None


class PageConverter:
    """Converts a run's pages on the reader's thread while pages bring writes, and defers them while not.

    The writer (the run's critical path: it waits for PostgreSQL) sets `convert_ahead` after each page.
    While pages insert or update, each page is converted here, COPY tuples included, which keeps
    that work off the writer's thread. While pages are unchanged (an overlap, a full re-read or
    a reconciliation), a page goes over as its hits (`Deferred`): the writer asks PostgreSQL
    which documents are new or newer first and converts only those (`convert_hits`), so an
    unchanged document costs its key-and-version lookup and nothing more. Pages decoded into
    dicts (the careful path) are always converted here.
    """

    def __init__(self, cursor_field: str, max_bytes: int, columns: ColumnSet | None = None) -> None:
        self.cursor, self.max_bytes, self.columns = CursorField(cursor_field), max_bytes, columns
        self.convert_ahead = True

    def __call__(self, hits: Sequence[AnyHit]) -> tuple[list[EventRow], list[Rejected]] | Deferred:
        if isinstance(hits, MetadataPage):
            return Deferred(list(hits), hits.fetch)  # nothing to convert before PostgreSQL has said what to fetch
        if not self.convert_ahead and hits and all(isinstance(hit, Hit) for hit in hits):
            return Deferred(cast("list[Hit]", hits))  # every hit checked above; a typed page's hits are a list
        return convert_page(hits, self.cursor, self.max_bytes, prepare_copy=True, columns=self.columns)

    def convert_hits(self, hits: Sequence[AnyHit]) -> tuple[list[EventRow], list[Rejected]]:
        """Convert the hits of a deferred page that PostgreSQL said to write (on the writer's thread)."""
        return convert_page(hits, self.cursor, self.max_bytes, columns=self.columns)
