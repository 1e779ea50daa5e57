"""The PostgreSQL types a typed column may have: how a JSON value converts to each, and how the
value is written as a field of COPY's binary format.

Conversions are exact, and the same ones fill a new column from the stored `source`
(schema.py): integers from JSON integers or strings of decimal digits, in the
type's range; `double precision` from finite numbers or numeric strings; `boolean` from
JSON true/false only; `timestamptz` as the cursor is parsed (ISO-8601 or epoch
milliseconds); `inet` from an address or address/prefix string; `text` from strings,
numbers and booleans (their JSON text); `text[]` from a list of those or a single one;
`jsonb` from any JSON value. JSON null and a missing path give NULL (`NULL_FIELD`), decided
by the caller: these functions never see None.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB

from rtarf_sync.engine.fastjson import dumps_utf8
from rtarf_sync.engine.target.documents import parse_instant

NULL_FIELD = struct.pack("!i", -1)  # a NULL field: length -1, no bytes
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_TEXT_OID = 25


class NotConverted(ValueError):
    """A value that does not convert to its column's type."""


# -- conversions: a JSON value (never None) to the Python value of the column ------------------


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if type(value) is int:
            number = value
        elif type(value) is str and _INTEGER.fullmatch(value):
            number = int(value)
        else:
            raise NotConverted("not an integer")
        if not low <= number <= high:
            raise NotConverted(f"out of range {low}..{high}")
        return number

    return convert


def _double(value: Any) -> float:
    if type(value) in (int, float) or (type(value) is str and _NUMBER.fullmatch(value)):
        number = float(value)
    else:
        raise NotConverted("not a number")
    if not math.isfinite(number):
        raise NotConverted("out of range")
    return number


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise NotConverted("not true or false")
    return value


def _timestamp(value: Any) -> datetime:
    moment = parse_instant(value)
    if moment is None:
        raise NotConverted("not a date")
    return moment


class Inet(NamedTuple):
    """An address (4 or 16 bytes) and its prefix length, as PostgreSQL's inet holds it."""

    packed: bytes
    bits: int

    def __str__(self) -> str:
        family = socket.AF_INET if len(self.packed) == 4 else socket.AF_INET6
        text = socket.inet_ntop(family, self.packed)
        return text if self.bits == len(self.packed) * 8 else f"{text}/{self.bits}"


def _inet(value: Any) -> Inet:
    if type(value) is not str:
        raise NotConverted("not an IP address")
    try:
        if "/" not in value:
            # inet_pton: strict (no leading zeros, no zone id, no spaces) and several times faster than ipaddress.
            packed = socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value)
            return Inet(packed, len(packed) * 8)
        if "%" in value:  # PostgreSQL has no IPv6 zone ids
            raise ValueError(value)
        interface = ipaddress.ip_interface(value)
        return Inet(interface.ip.packed, interface.network.prefixlen)
    except (OSError, ValueError):
        raise NotConverted("not an IP address") from None


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) in (int, float, bool):
        return orjson.dumps(value).decode()
    raise NotConverted("not a string, number or boolean")


def _texts(value: Any) -> list[str]:
    if type(value) is list:
        if any(item is None for item in value):
            raise NotConverted("a list holding null")
        return [_text(item) for item in value]
    return [_text(value)]


def _json(value: Any) -> bytes:
    try:
        return dumps_utf8(value)
    except UnicodeEncodeError:
        raise NotConverted("invalid Unicode (a lone surrogate)") from None


# -- COPY's binary format of each type (each field its length, then its bytes) -----------------

_PACK_SHORT = struct.Struct("!ih").pack
_PACK_INT = struct.Struct("!ii").pack
_PACK_LONG = struct.Struct("!iq").pack
_PACK_DOUBLE = struct.Struct("!id").pack
_PACK_BYTE = struct.Struct("!iB").pack
_LENGTH = struct.Struct("!i").pack
_ARRAY_HEAD = struct.Struct("!iiiiii").pack


def _encode_text(value: str) -> bytes:
    data = value.encode()
    return _LENGTH(len(data)) + data


_INET4_HEAD = _LENGTH(8) + bytes((2, 32, 0, 4))  # length, PGSQL_AF_INET, bits, not cidr, 4 bytes


def _encode_inet(value: Inet) -> bytes:
    address = value.packed
    if value.bits == 32 and len(address) == 4:
        return _INET4_HEAD + address
    family = 2 if len(address) == 4 else 3  # PGSQL_AF_INET, PGSQL_AF_INET6
    return _LENGTH(4 + len(address)) + bytes((family, value.bits, 0, len(address))) + address


def _encode_texts(value: list[str]) -> bytes:
    if not value:
        body = struct.pack("!iii", 0, 0, _TEXT_OID)
    else:
        body = struct.pack("!iiiii", 1, 0, _TEXT_OID, len(value), 1) + b"".join(map(_encode_text, value))
    return _LENGTH(len(body)) + body


def _encode_json(value: bytes) -> bytes:
    return _LENGTH(len(value) + 1) + b"\x01" + value


def _encode_moment(value: datetime) -> bytes:
    return _PACK_LONG(8, (value - _PG_EPOCH) // _MICROSECOND)


# -- a value straight to its COPY field: the conversion and the encoding above in one call, for the
# types whose usual values would otherwise make a Python object only to take it apart again.


def _field_text(value: Any) -> bytes:
    if type(value) is str:
        data = value.encode()
        return _LENGTH(len(data)) + data
    return _encode_text(_text(value))


def _field_inet(value: Any) -> bytes:
    if type(value) is str and "/" not in value and ":" not in value:
        try:
            return _INET4_HEAD + socket.inet_pton(socket.AF_INET, value)
        except OSError:
            raise NotConverted("not an IP address") from None
    return _encode_inet(_inet(value))


def _field_texts(value: Any) -> bytes:
    if type(value) is list and value:
        parts = [b""]
        size = 20  # the array's header: dimensions, no nulls, element type, length, lower bound
        for item in value:
            if type(item) is not str:
                return _encode_texts(_texts(value))
            data = item.encode()
            size += 4 + len(data)
            parts += (_LENGTH(len(data)), data)
        parts[0] = _ARRAY_HEAD(size, 1, 0, _TEXT_OID, len(value), 1)
        return b"".join(parts)
    return _encode_texts(_texts(value))


def _field_moment(value: Any) -> bytes:
    if type(value) is str and "T" in value:  # ISO-8601 with a time, never epoch milliseconds
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise NotConverted("not a date") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return _encode_moment(moment)
    return _encode_moment(_timestamp(value))


def _integer_type(bits: int, pack: Callable[..., bytes], sa_type: Any) -> PgType:
    """An integer type of `bits` bits: its conversion, its encoding and both in one call."""
    low, high, size = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, bits // 8
    convert = _integer(low, high)

    def field(value: Any) -> bytes:
        if type(value) is int and low <= value <= high:
            return pack(size, value)
        return pack(size, convert(value))

    return PgType(convert, lambda value: pack(size, value), sa_type, field)


def _field_of(convert: Callable[[Any], Any], encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def field(value: Any) -> bytes:
        return encode(convert(value))

    return field


@dataclass(frozen=True)
class PgType:
    """One PostgreSQL type of a typed column: a JSON value to its Python value, that value to its COPY
    field, and SQLAlchemy's type for the row-by-row path."""

    convert: Callable[[Any], Any]
    encode: Callable[[Any], bytes]
    sa_type: Any
    field: Callable[[Any], bytes] | None = None  # convert then encode in one call (else the two composed)

    def to_field(self) -> Callable[[Any], bytes]:
        """A JSON value straight to its COPY field (NotConverted where it does not convert)."""
        return self.field or _field_of(self.convert, self.encode)


TYPES: dict[str, PgType] = {
    "text": PgType(_text, _encode_text, sa.Text(), _field_text),
    "smallint": _integer_type(16, _PACK_SHORT, sa.SmallInteger()),
    "integer": _integer_type(32, _PACK_INT, sa.Integer()),
    "bigint": _integer_type(64, _PACK_LONG, sa.BigInteger()),
    "double precision": PgType(_double, lambda v: _PACK_DOUBLE(8, v), sa.Double()),
    "boolean": PgType(_boolean, lambda v: _PACK_BYTE(1, 1 if v else 0), sa.Boolean()),
    "timestamptz": PgType(_timestamp, _encode_moment, sa.DateTime(timezone=True), _field_moment),
    "inet": PgType(_inet, _encode_inet, INET(), _field_inet),
    "jsonb": PgType(_json, _encode_json, JSONB()),
    "text[]": PgType(_texts, _encode_texts, ARRAY(sa.Text()), _field_texts),
}
