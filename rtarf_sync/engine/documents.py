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
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

import msgspec

from rtarf_sync.engine.fastjson import dumps_utf8, loads
from rtarf_sync.engine.hits import AnyHit, Hit, as_dict

_DIGITS = re.compile(r"^-?[0-9]{1,16}$")
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
    copy_text: bytes = b""  # the row as a line of COPY text, built with the row when known

    @property
    def key(self) -> tuple[str, str]:
        return (self.es_index, self.es_id)

    @property
    def version(self) -> tuple[int, int]:
        return (self.primary_term, self.seq_no)


def _escape(text: bytes) -> bytes:
    """Escape a value for COPY's text format."""
    return text.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def copy_text(es_index: str, es_id: str, moment: datetime, source: bytes, seq_no: int, term: int) -> bytes:
    """A row as one line of COPY text format (es_index, es_id, event_timestamp, source, seq_no, term).

    Built by hand, and only for rows that are written, because per-value conversion in the
    driver cost more than the rest of the page write. The JSON is escaped in full: an engine
    returns a `_source` as it was indexed, whose whitespace may hold tabs and newlines.
    """
    return b"\t".join((_escape(es_index.encode()), _escape(es_id.encode()), moment.isoformat().encode(),
                       _escape(source), b"%d" % seq_no, b"%d" % term)) + b"\n"


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
        self._decoder = msgspec.json.Decoder(_lookup_type(path, path.split(".")))

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
    return msgspec.defstruct("CursorStep", [("nested", inner | msgspec.UnsetType, msgspec.UNSET)],
                             rename={"nested": parts[0]}, gc=False)


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


def parse_instant(value: Any) -> datetime | None:
    """Parse an engine date (ISO-8601 text or epoch milliseconds) to an aware UTC datetime."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    try:
        if isinstance(value, str) and not _DIGITS.match(value):
            moment = datetime.fromisoformat(value.strip())
            return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _version(hit: dict[str, Any]) -> tuple[int, int]:
    return int(hit.get("_seq_no", -1)), int(hit.get("_primary_term", -1))


def reject(hit: dict[str, Any], reason: str) -> Rejected:
    """Build the dead-letter record of a hit."""
    seq_no, term = _version(hit)
    raw = json.dumps(hit.get("_source"), ensure_ascii=True, default=str)
    return Rejected(hit["_index"], hit["_id"], seq_no, term, reason, raw)


def to_row(hit: dict[str, Any], cursor_field: str, max_bytes: int) -> EventRow | Rejected:
    """Convert one hit, or say why it cannot be stored."""
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
    seq_no, term = _version(hit)
    index, doc_id = hit["_index"], hit["_id"]
    return EventRow(index, doc_id, moment, data, seq_no, term, copy_text(index, doc_id, moment, data, seq_no, term))


# Numbers are the only JSON text that re-encoding can lengthen (1e15 becomes 1000000000000000.0,
# under four times as long): a raw document under a quarter of the limit is under it re-encoded too.
_SIZE_MARGIN = 4


def raw_row(hit: Hit, cursor: CursorField, max_bytes: int) -> EventRow | Rejected:
    """Convert one typed hit (raw `_source`), or say why it cannot be stored: the same verdicts as `to_row`."""
    data = bytes(hit._source)  # noqa: SLF001 - engine field names
    if not data.startswith(b"{"):
        return reject(as_dict(hit), "document has no _source")
    value = cursor.value(data)
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
            return reject(as_dict(hit), f"document is {size} bytes, over the limit of {max_bytes} "
                                        "(RTARF_SYNC_MAX_DOCUMENT_BYTES)")
    return EventRow(hit._index, hit._id, moment, data, hit._seq_no, hit._primary_term)  # noqa: SLF001


def convert_page(hits: list[AnyHit], cursor: CursorField,
                 max_bytes: int) -> tuple[list[EventRow], list[Rejected]]:
    """Split a page into rows to write and documents to set aside, each hit by the path its shape takes."""
    rows: list[EventRow] = []
    rejects: list[Rejected] = []
    for hit in hits:
        converted = (raw_row(hit, cursor, max_bytes) if isinstance(hit, Hit)
                     else to_row(hit, cursor.path, max_bytes))
        (rows if isinstance(converted, EventRow) else rejects).append(converted)  # type: ignore[arg-type]
    return rows, rejects


def newest_per_key(rows: list[EventRow]) -> tuple[list[EventRow], int]:
    """Keep the newest version of each document in a page; return them and how many were dropped."""
    newest: dict[tuple[str, str], EventRow] = {}
    for row in rows:
        kept = newest.get(row.key)
        if kept is None or row.version > kept.version:
            newest[row.key] = row
    return list(newest.values()), len(rows) - len(newest)
