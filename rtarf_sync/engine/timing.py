"""Page read timings: a SearchApi that reports how long each search or scroll request took."""

from __future__ import annotations

import time
from typing import Any, Callable

from rtarf_sync.engine.clients import Json, SearchApi


class TimedSearch:
    """Delegates to `api`; each `search` and `scroll` reports ("read", start time) to `observe`."""

    def __init__(self, api: SearchApi, observe: Callable[[str, float], None]) -> None:
        self._api, self._observe = api, observe

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def search(self, body: Json, index: str | None = None, scroll: str | None = None) -> Json:
        began = time.perf_counter()
        try:
            return self._api.search(body, index=index, scroll=scroll)
        finally:
            self._observe("read", began)

    def scroll(self, scroll_id: str, keep_alive: str) -> Json:
        began = time.perf_counter()
        try:
            return self._api.scroll(scroll_id, keep_alive)
        finally:
            self._observe("read", began)
