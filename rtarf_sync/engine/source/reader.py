"""Paging through the source: a point in time with `search_after`, or scroll.

Each reader is an explicit cursor loop: it stops on an empty page, raises if
the cursor repeats, fails a page whose answer has shard failures or timed out
(instead of advancing past it), and always closes its context. A point in time
that expires mid-run (a stall longer than its keep-alive) is reopened and the
loop resumes after the last page's sort values, a few times at most. Given a
`MetadataChoice`, a point-in-time reader asks each page either whole or metadata
first (metadata.py): then it hands over a `MetadataPage` whose `_source`s the writer
fetches, for the documents PostgreSQL lacks, from the same point in time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Callable, Iterator, Sequence, cast

from rtarf_sync.engine.source.clients import Json, SearchApi
from rtarf_sync.engine.errors import ContextExpired, SourceError, TransientError
from rtarf_sync.engine.hits import Answer, AnyHit, Hit, MetadataPage, PageView, hit_sort, view
from rtarf_sync.engine.source.metadata import MetadataChoice, fetched, metadata_page_size, sources_body
from rtarf_sync.engine.retry import RetryPolicy, with_retry

log = logging.getLogger("rtarf_sync.reader")  # the name log filters know


@dataclass(frozen=True)
class ReadPlan:
    """What to read: index, filter, cursor field, page size, context keep-alive."""

    index: str
    query: Json
    cursor_field: str
    size: int
    keep_alive: str
    source: Json | None = None  # `_source` includes/excludes (filters.py); None: whole documents


def check_complete(answer: Answer, what: str) -> PageView:
    """Refuse an answer that is missing shards or timed out (its page may be incomplete); else its view."""
    page = view(answer)
    if page.failed_shards > 0:
        raise TransientError(f"{what}: {page.failed_shards} shard(s) failed")
    if page.timed_out:
        raise TransientError(f"{what}: the search timed out")
    return page


def _quietly(release: Callable[[], None], what: str) -> None:
    """Release a search context; a failure is logged, never raised over the run's own outcome."""
    try:
        release()
    except Exception as error:  # noqa: BLE001 - the context expires on its own anyway
        log.warning("could not %s: %s", what, error)


def cursor_sort(field: str, tiebreakers: list[Any]) -> list[Any]:
    """Sort by the cursor field ascending (missing values last), then the tie-breakers."""
    return [{field: {"order": "asc", "missing": "_last", "unmapped_type": "date"}}, *tiebreakers]


class PitReader:
    """Pages from a point in time, sorted by the cursor field then a unique tie-breaker."""

    mode = "pit"

    def __init__(
        self,
        api: SearchApi,
        plan: ReadPlan,
        retry: RetryPolicy,
        *,
        pit_id: str | None = None,
        slice_of: tuple[int, int] | None = None,
        on_reopen: Callable[[str], None] | None = None,
        max_reopens: int = 3,
        choice: MetadataChoice | None = None,
        defer_close: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.api, self.plan, self.retry, self.choice = api, plan, retry, choice
        # The writer fetches a metadata page's sources after the reader is done: it closes the point in time.
        self.defer_close = defer_close
        # A slice reads a point in time its caller opened and closes; alone it owns its own.
        self.pit_id: str | None = pit_id
        self.owns_pit = pit_id is None
        self.slice_of = slice_of
        # Only a reader that owns its point in time may reopen it: slices share theirs, so an
        # expired one fails the run, and the next run reads the scope again.
        self.reopens, self.on_reopen = 0, on_reopen
        self.max_reopens = max_reopens if self.owns_pit else 0
        # Elasticsearch has _shard_doc; OpenSearch 2.x does not, so it sorts on (_index, _id).
        self.tiebreakers: list[Any] = (
            [{"_shard_doc": "asc"}] if api.kind == "elasticsearch" else [{"_index": "asc"}, {"_id": "asc"}]
        )

    def __enter__(self) -> "PitReader":
        if not self.owns_pit:
            return self
        self.pit_id = with_retry(
            lambda: self.api.open_pit(self.plan.index, self.plan.keep_alive), self.retry, "open point in time"
        )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.pit_id is not None and self.owns_pit:
            pit_id, self.pit_id = self.pit_id, None
            close = partial(_quietly, lambda: self.api.close_pit(pit_id), "close point in time")
            if self.defer_close is not None:
                self.defer_close(close)
            else:
                close()

    def _body(self, after: list[Any] | None, metadata: bool = False) -> Json:
        body: Json = {
            "size": metadata_page_size(self.plan.size) if metadata else self.plan.size,
            "query": self.plan.query,
            "sort": cursor_sort(self.plan.cursor_field, self.tiebreakers),
            "pit": {"id": self.pit_id, "keep_alive": self.plan.keep_alive},
            "seq_no_primary_term": True,
            "track_total_hits": False,
        }
        if metadata:
            # Key, version and sort values (the cursor's doc value) only: `fetch_sources` brings the rest.
            body["_source"] = False
        elif self.plan.source is not None:
            body["_source"] = self.plan.source
        if after is not None:
            body["search_after"] = after
        if self.slice_of is not None:
            body["slice"] = {"id": self.slice_of[0], "max": self.slice_of[1]}
        return body

    def _page(self, after: list[Any] | None, metadata: bool) -> PageView:
        return check_complete(self.api.search_hits(self._body(after, metadata)), "search page")

    def _search(self, after: list[Any] | None, pages: int, metadata: bool = False) -> PageView:
        """The page after `after`; an expired point in time is reopened and the page asked again."""
        while True:
            try:
                return with_retry(lambda: self._page(after, metadata), self.retry, "search page")
            except ContextExpired as expired:
                if self.reopens >= self.max_reopens:
                    raise ContextExpired(
                        f"{expired} (after reopening the point in time {self.reopens} times)"
                    ) from None
                self._reopen(after, pages, expired)

    def _reopen(self, after: list[Any] | None, pages: int, expired: ContextExpired) -> None:
        # Resuming after the last page's sort values in a fresh point in time reads every document
        # not yet read; one made visible since is read too, like any document of the window, and
        # the version guard keeps a document read twice from being counted or written twice.
        self.reopens += 1
        note = (
            f"the point in time expired after page {pages} ({expired}); reopened it and resumed "
            f"after sort values {after!r} (reopen {self.reopens} of at most {self.max_reopens})"
        )
        log.warning(note)
        if self.on_reopen is not None:
            self.on_reopen(note)
        stale, self.pit_id = self.pit_id, None
        _quietly(lambda: self.api.close_pit(stale or ""), "close the expired point in time")
        self.pit_id = with_retry(
            lambda: self.api.open_pit(self.plan.index, self.plan.keep_alive), self.retry, "reopen point in time"
        )

    def pages(self) -> Iterator[Sequence[AnyHit]]:
        """Yield pages of hits until the point in time is exhausted."""
        after: list[Any] | None = None
        pages = 0
        while True:
            metadata = self.choice is not None and self.choice.metadata_first
            answer = self._search(after, pages, metadata)
            if metadata and not all(isinstance(hit, Hit) for hit in answer.hits):
                # An answer the typed decoder refused: the page is read whole and takes the careful path.
                metadata, answer = False, self._search(after, pages)
            self.pit_id = answer.pit_id or self.pit_id
            hits = answer.hits
            if not hits:
                return
            last = hit_sort(hits[-1])
            if not last or last == after:
                # Checked before the page is handed on: a repeated page is never written twice.
                raise SourceError(f"paging cursor did not advance past {after!r}")
            if metadata:
                hits = MetadataPage(cast("list[Hit]", hits), partial(self.fetch_sources, self.pit_id))
            yield hits
            pages += 1
            after = last

    def fetch_sources(self, pit_id: str | None, hits: list[Hit]) -> list[AnyHit]:
        """The whole hits of `hits` from point in time `pit_id` (the one their metadata page came from)."""
        if not hits:
            return []
        pit: Json = {"id": pit_id, "keep_alive": self.plan.keep_alive}
        body = sources_body(self.plan.query, self.plan.source, pit, hits)
        page = with_retry(
            lambda: check_complete(self.api.search_hits(body), "fetch sources"), self.retry, "fetch sources"
        )
        return fetched(hits, page.hits)


class ScrollReader:
    """Pages from a scroll context, for engines without a point in time."""

    mode = "scroll"

    def __init__(self, api: SearchApi, plan: ReadPlan, retry: RetryPolicy) -> None:
        self.api, self.plan, self.retry = api, plan, retry
        self.scroll_id: str | None = None

    def __enter__(self) -> "ScrollReader":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.scroll_id is not None:
            _quietly(lambda: self.api.clear_scroll(self.scroll_id or ""), "clear scroll")
            self.scroll_id = None

    def _first(self) -> PageView:
        body: Json = {
            "size": self.plan.size,
            "query": self.plan.query,
            "seq_no_primary_term": True,
            "sort": cursor_sort(self.plan.cursor_field, ["_doc"]),
        }
        if self.plan.source is not None:
            body["_source"] = self.plan.source
        return check_complete(
            self.api.search_hits(body, index=self.plan.index, scroll=self.plan.keep_alive), "scroll start"
        )

    def pages(self) -> Iterator[Sequence[AnyHit]]:
        """Yield pages of hits until the scroll is exhausted."""
        # The first request is retried; a later scroll page cannot be asked twice
        # safely (it would skip a page), so a failure there aborts the run.
        answer = with_retry(self._first, self.retry, "scroll start")
        while True:
            self.scroll_id = answer.scroll_id or self.scroll_id
            if not answer.hits:
                return
            yield answer.hits
            assert self.scroll_id is not None
            answer = check_complete(self.api.scroll_hits(self.scroll_id, self.plan.keep_alive), "scroll page")
