"""Search contexts: points in time and scrolls, with keep-alive expiry.

Expiry is checked lazily when a context is used or another is opened; from
outside that cannot be told apart from a reaper thread. An expired or unknown
id answers like Elasticsearch: 404, `search_context_missing_exception`.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.infra.esserver.errors import context_missing
from tests.infra.esserver.store import IndexView

_CACHE_ENTRIES = 8


@dataclass
class Context:
    """State shared by PITs and scrolls."""

    id: str
    number: int
    keep_alive: float
    expires_at: float = 0.0

    def touch(self, keep_alive: float | None) -> None:
        """Extend the context's life, by a new keep-alive when given."""
        if keep_alive is not None:
            self.keep_alive = keep_alive
        self.expires_at = time.monotonic() + self.keep_alive


@dataclass
class PointInTime(Context):
    """A frozen view of some indices."""

    views: list[IndexView] = field(default_factory=list)
    # Sorted hits per (query, sort): the snapshot never changes, so paging
    # with search_after need not filter and sort the whole index each page.
    cache: dict[str, Any] = field(default_factory=dict)

    def remember(self, key: str, hits: Any) -> None:
        """Cache the sorted hits of one query, dropping the oldest entry when full."""
        if len(self.cache) >= _CACHE_ENTRIES:
            self.cache.pop(next(iter(self.cache)))
        self.cache[key] = hits


@dataclass
class Scroll(Context):
    """A scroll: all hits of a search, fixed at its start, and a position."""

    state: Any = None
    position: int = 0


def _encode(kind: str, number: int) -> str:
    raw = f"{kind};{number};{secrets.token_hex(12)}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def context_number(context_id: str) -> int:
    """Return the number inside an id we issued (0 for a foreign one), for error text."""
    try:
        return int(base64.urlsafe_b64decode(context_id.encode()).decode().split(";")[1])
    except (ValueError, IndexError, UnicodeDecodeError):
        return 0


class Contexts:
    """All open PITs and scrolls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._pits: dict[str, PointInTime] = {}
        self._scrolls: dict[str, Scroll] = {}

    def reset(self) -> None:
        """Forget every context."""
        with self._lock:
            self._pits.clear()
            self._scrolls.clear()

    def _purge(self) -> None:
        now = time.monotonic()
        for registry in (self._pits, self._scrolls):
            for context_id in [k for k, c in registry.items() if c.expires_at <= now]:
                del registry[context_id]

    def open_pit(self, views: list[IndexView], keep_alive: float) -> PointInTime:
        """Open a point in time over the given views."""
        with self._lock:
            self._purge()
            number = next(self._numbers)
            pit = PointInTime(_encode("pit", number), number, keep_alive, views=views)
            pit.touch(None)
            self._pits[pit.id] = pit
            return pit

    def pit(self, pit_id: str, keep_alive: float | None) -> PointInTime:
        """Return a live PIT and extend it; raise the 404 if unknown or expired."""
        with self._lock:
            self._purge()
            pit = self._pits.get(pit_id)
            if pit is None:
                raise context_missing(context_number(pit_id))
            pit.touch(keep_alive)
            return pit

    def close_pit(self, pit_id: str) -> int:
        """Close a PIT; return how many contexts were freed (0 or 1)."""
        with self._lock:
            self._purge()
            return 1 if self._pits.pop(pit_id, None) else 0

    def expire_pits(self) -> int:
        """Make every open PIT unknown; return how many there were."""
        with self._lock:
            count = len(self._pits)
            self._pits.clear()
            return count

    def open_scroll(self, state: Any, keep_alive: float, position: int) -> Scroll:
        """Register a scroll over precomputed hits."""
        with self._lock:
            self._purge()
            number = next(self._numbers)
            scroll = Scroll(_encode("scroll", number), number, keep_alive, state=state, position=position)
            scroll.touch(None)
            self._scrolls[scroll.id] = scroll
            return scroll

    def scroll(self, scroll_id: str, keep_alive: float | None) -> Scroll:
        """Return a live scroll and extend it; raise the 404 if unknown or expired."""
        with self._lock:
            self._purge()
            scroll = self._scrolls.get(scroll_id)
            if scroll is None:
                raise context_missing(context_number(scroll_id))
            scroll.touch(keep_alive)
            return scroll

    def clear_scrolls(self, scroll_ids: list[str]) -> int:
        """Clear scrolls (`_all` clears every one); return how many were freed."""
        with self._lock:
            self._purge()
            if scroll_ids == ["_all"]:
                count = len(self._scrolls)
                self._scrolls.clear()
                return count
            return sum(1 for scroll_id in scroll_ids if self._scrolls.pop(scroll_id, None))
