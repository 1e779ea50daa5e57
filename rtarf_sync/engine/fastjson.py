"""JSON with orjson where it is safe, and the standard library where it is not.

orjson decodes and encodes several times faster, which matters at thousands
of events per second. It refuses lone surrogates and integers beyond 64 bits,
which real documents can hold: those fall back to the `json` module, so one
odd document is set aside instead of failing its whole page.

Inside `typed_answers(decoder)`, the clients' answers are first offered to a
msgspec decoder of typed records (hits.py, the reader's search pages); an
answer it refuses is decoded as above.
"""

from __future__ import annotations

import gc
import json
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

import msgspec
import orjson
from elasticsearch.serializer import JsonSerializer
from opensearchpy.serializer import JSONSerializer

# Per thread (each thread starts with an empty context), and only around the reader's own requests.
_TYPED: ContextVar[msgspec.json.Decoder[Any] | None] = ContextVar("rtarf_typed_answers", default=None)


@contextmanager
def typed_answers(decoder: msgspec.json.Decoder[Any]) -> Iterator[None]:
    """Decode the answers of the requests made inside this block with `decoder` where they fit it."""
    token = _TYPED.set(decoder)
    try:
        yield
    finally:
        _TYPED.reset(token)


def loads(data: str | bytes) -> Any:
    """Decode JSON text (into typed records inside `typed_answers`, where they fit)."""
    # A page builds tens of thousands of objects that are all alive until the page is done;
    # the cyclic collector would walk them again and again for nothing while they are made.
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        typed = _TYPED.get()
        if typed is not None:
            try:
                return typed.decode(data)
            except (msgspec.DecodeError, UnicodeEncodeError):
                pass  # not a page of hits, or one msgspec refuses: dicts, as for any answer
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return json.loads(data)
    finally:
        if collecting:
            gc.enable()


def dumps_utf8(value: Any) -> bytes:
    """Encode compactly as UTF-8; raise UnicodeEncodeError for text no UTF-8 can hold."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class ElasticsearchJson(JsonSerializer):
    """The elasticsearch client's JSON serializer, decoding with orjson."""

    def loads(self, data: bytes) -> Any:
        return loads(data)


class OpenSearchJson(JSONSerializer):
    """The opensearch-py JSON serializer, decoding with orjson."""

    def loads(self, s: str) -> Any:
        return loads(s)
