"""Metadata-first reads: ask for versions first, and for `_source` only where PostgreSQL lacks it.

    page (no _source)  ->  the writer's lookup  ->  ids query on the same point in time
                           (new / newer / unchanged)    for the new and newer ones only

Most of what a long-running service reads is already stored (the overlap below the
stored cursor, full and range runs over a copy that is up to date), and shipping each
of those `_source`s only to throw it away costs the cluster most of the read. The
choice is made per page from what the writer measured on the last pages it wrote
(`MetadataChoice`): a page mostly stored is read metadata first, a page mostly new
(the first load, the window above the cursor) is read whole, as before. A point in
time keeps the two requests on one snapshot, so each `_source` comes with the very
version the metadata showed; a scroll fixes its request body at the start, so it
cannot switch per page and reads whole pages (engines without a point in time).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from rtarf_sync.engine.errors import SourceError
from rtarf_sync.engine.hits import AnyHit, Hit, any_hit_key, hit_key
from rtarf_sync.engine.source.clients import Json
from rtarf_sync.engine.source.filters import filtered

log = logging.getLogger("rtarf_sync.reader")  # the name log filters know
# Metadata first costs one more request per page (the ids query) and saves the `_source` of every
# stored document: from half the page stored, the saving is the larger one on either engine.
STORED_SHARE = 0.5
# A metadata hit is a tenth of a whole one or less: its pages hold more of them, so each page's fixed
# costs (a search, a transaction with its lease check, cursor and counts) are paid less often. Engines
# refuse a `size` above their result window (10,000 by default).
METADATA_PAGE_FACTOR = 5
MAX_PAGE_SIZE = 10_000


def metadata_page_size(size: int) -> int:
    """How many hits a metadata page asks for, given the run's page size."""
    return max(size, min(size * METADATA_PAGE_FACTOR, MAX_PAGE_SIZE))


class MetadataChoice:
    """Whether the next page is read metadata first, from the share of the last written page already stored.

    The writer calls `record` after each page; readers (one, or one per slice) read
    `metadata_first` before asking for a page. Plain attribute writes: safe across threads.
    """

    def __init__(self, metadata_first: bool) -> None:
        self.metadata_first = metadata_first

    def record(self, stored: int, total: int) -> None:
        """Fold in a written page: `stored` of its `total` documents were already stored at that version."""
        if total <= 0:
            return
        chosen = stored / total >= STORED_SHARE
        if chosen != self.metadata_first:
            log.debug("%d of %d documents of the last page were stored: reading %s", stored, total, _name(chosen))
            self.metadata_first = chosen


def _name(metadata_first: bool) -> str:
    return "metadata first" if metadata_first else "whole pages"


def sources_body(query: Json, source: Json | None, pit: Json, hits: Sequence[Hit]) -> Json:
    """The ids query on a point in time for `hits`: each id with its own index, the pipeline's query too."""
    by_index: dict[str, list[str]] = {}
    for hit in hits:
        by_index.setdefault(hit._index, []).append(hit._id)  # noqa: SLF001 - the engine's field names
    # The same id may live in several indices of the pattern: ask for each (index, id), no more.
    clauses: list[Json] = [
        {"bool": {"filter": [{"term": {"_index": index}}, {"ids": {"values": ids}}]}} for index, ids in by_index.items()
    ]
    which: Json = clauses[0] if len(clauses) == 1 else {"bool": {"should": clauses, "minimum_should_match": 1}}
    body: Json = {
        "size": len(hits),
        "query": filtered(query, which),
        "pit": pit,
        "seq_no_primary_term": True,
        "track_total_hits": False,
    }
    if source is not None:
        body["_source"] = source
    return body


def fetched(asked: Sequence[Hit], found: Sequence[AnyHit]) -> list[AnyHit]:
    """The hits found for `asked`, each once; a missing one fails the run (the point in time must hold it)."""
    wanted = {hit_key(hit) for hit in asked}
    hits: dict[tuple[str, str], Any] = {}
    for hit in found:
        key = any_hit_key(hit)
        if key in wanted:
            hits[key] = hit
    if len(hits) != len(wanted):
        missing = sorted(wanted - set(hits))[:3]
        raise SourceError(
            f"the point in time no longer holds {len(wanted) - len(hits)} document(s) of the page: {missing}"
        )
    return list(hits.values())
