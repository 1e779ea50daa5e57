"""Search pages decoded into small typed records, each `_source` kept as the raw JSON the engine sent.

Decoding a page of hits into dicts cost more Python time than everything else
the sync does per event, and most of it was thrown away: paging needs each
hit's key, version and sort values, and PostgreSQL parses the `_source` again
anyway. msgspec decodes an answer into the records below and keeps every
`_source` as a `Raw` slice of the answer, which is later stored as it is.

An answer these records do not fit (an error body, or a page msgspec refuses,
such as one holding a lone surrogate escape) is decoded into dicts as before;
such a page takes the careful path, document by document (documents.py). Every
reader accepts both shapes through `view`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence, Union

import msgspec

from rtarf_sync.engine.fastjson import loads

Json = dict[str, Any]
NO_SOURCE = msgspec.Raw(b"")


class Shards(msgspec.Struct, gc=False):
    failed: int = 0


class Hit(msgspec.Struct, gc=False):
    """One hit; `_source` is the document's JSON text exactly as the engine sent it."""

    _index: str
    _id: str
    _seq_no: int = -1
    _primary_term: int = -1
    _source: msgspec.Raw = NO_SOURCE
    sort: msgspec.Raw = NO_SOURCE  # decoded for the last hit of a page only (`hit_sort`)


class HitList(msgspec.Struct, gc=False):
    hits: list[Hit]


class SearchPage(msgspec.Struct, gc=False):
    """A search or scroll answer. `hits` is required, so an error body never passes for an empty page."""

    hits: HitList
    pit_id: Union[str, None] = None
    _scroll_id: Union[str, None] = None
    timed_out: bool = False
    _shards: Shards = msgspec.field(default_factory=Shards)


PAGE_DECODER = msgspec.json.Decoder(SearchPage)
Answer = Union[SearchPage, Json]
AnyHit = Union[Hit, Json]


class PageView(NamedTuple):
    """What paging needs of an answer, whichever way it was decoded."""

    hits: Sequence[AnyHit]
    pit_id: str | None
    scroll_id: str | None
    failed_shards: int
    timed_out: bool


def view(answer: Answer) -> PageView:
    """The paging fields of a typed page or of a dict answer."""
    if isinstance(answer, SearchPage):
        return PageView(
            answer.hits.hits,
            answer.pit_id,
            answer._scroll_id,
            answer._shards.failed,
            answer.timed_out,
        )
    shards = answer.get("_shards") or {}
    return PageView(
        (answer.get("hits") or {}).get("hits") or [],
        answer.get("pit_id"),
        answer.get("_scroll_id"),
        int(shards.get("failed", 0) or 0),
        bool(answer.get("timed_out")),
    )


def hit_sort(hit: AnyHit) -> list[Any] | None:
    """The hit's sort values (what `search_after` continues from)."""
    if not isinstance(hit, Hit):
        return hit.get("sort")
    return msgspec.json.decode(hit.sort) if bytes(hit.sort) else None


def hit_key(hit: Hit) -> tuple[str, str]:
    return (hit._index, hit._id)


def any_hit_key(hit: AnyHit) -> tuple[str, str]:
    """(index, id) of a typed hit or of a hit decoded into dicts."""
    return hit_key(hit) if isinstance(hit, Hit) else (str(hit["_index"]), str(hit["_id"]))


class MetadataPage(list[Hit]):
    """A page read without `_source` (metadata first): each hit carries its key, version and sort values.

    `fetch(hits)` brings the whole hits of the ones asked for (the new and changed documents),
    from the same point in time as the page, so each `_source` comes with its own version.
    """

    def __init__(self, hits: Sequence[Hit], fetch: Callable[[list[Hit]], list[AnyHit]]) -> None:
        super().__init__(hits)
        self.fetch = fetch


def hit_version(hit: Hit) -> tuple[str, str, int, int]:
    """Index, id, primary term and seq_no: what the version lookup needs."""
    return (hit._index, hit._id, hit._primary_term, hit._seq_no)


def hit_id(hit: AnyHit) -> str:
    return hit._id if isinstance(hit, Hit) else str(hit["_id"])


def source_of(hit: Hit) -> Any:
    """The hit's `_source` decoded (None when it has none): for the rare document that needs all of it."""
    data = bytes(hit._source)
    return loads(data) if data else None


def as_dict(hit: AnyHit) -> Json:
    """A hit as the clients decode it into dicts (dead letters, tools and tests)."""
    if not isinstance(hit, Hit):
        return hit
    answer: Json = {
        "_index": hit._index,
        "_id": hit._id,
        "_seq_no": hit._seq_no,
        "_primary_term": hit._primary_term,
    }
    if bytes(hit._source):
        answer["_source"] = source_of(hit)
    if bytes(hit.sort):
        answer["sort"] = hit_sort(hit)
    return answer
