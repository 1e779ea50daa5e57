"""Page read timings: a SearchApi that reports how long each page's search or scroll request took.

The empty answer that ends a read is not a page, so it is not reported.
"""

from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

from rtarf_sync.engine.source.clients import Json, SearchApi
from rtarf_sync.engine.hits import Answer, view

A = TypeVar("A", bound=Answer)  # a dict answer or a typed page, handed back as it came


def _has_hits(answer: Answer) -> bool:
    return bool(view(answer).hits)


class TimedSearch:
    """Delegates to `api`; each search or scroll request with hits reports ("read", start time) to `observe`."""

    def __init__(self, api: SearchApi, observe: Callable[[str, float], None]) -> None:
        self._api, self._observe = api, observe

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def _timed(self, request: Callable[[], A]) -> A:
        began = time.perf_counter()
        answer = request()
        if _has_hits(answer):
            self._observe("read", began)
        return answer

    def search(self, body: Json, index: str | None = None, scroll: str | None = None) -> Json:
        return self._timed(lambda: self._api.search(body, index=index, scroll=scroll))

    def scroll(self, scroll_id: str, keep_alive: str) -> Json:
        return self._timed(lambda: self._api.scroll(scroll_id, keep_alive))

    def search_hits(self, body: Json, index: str | None = None, scroll: str | None = None) -> Answer:
        return self._timed(lambda: self._api.search_hits(body, index=index, scroll=scroll))

    def scroll_hits(self, scroll_id: str, keep_alive: str) -> Answer:
        return self._timed(lambda: self._api.scroll_hits(scroll_id, keep_alive))
