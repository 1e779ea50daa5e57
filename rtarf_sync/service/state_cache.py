"""The stored sync state, read from PostgreSQL at most once per few seconds however often it is asked.

Prometheus scrapes, the status route and the status page all read it. A read
that fails (database down) is cached like a good one, as None, so a dead
database costs one connection attempt per period, not one per request. While
one thread refreshes, the others keep answering with the previous value.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from rtarf_sync.engine.views.snapshot import StoredState

logger = logging.getLogger("rtarf_sync.scheduler")

CACHE_SECONDS = 5.0


class StateCache:
    """A StoredState cached for `ttl` seconds; `clock` is injectable for tests."""

    def __init__(
        self, read: Callable[[], StoredState], ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.read, self.ttl, self.clock = read, ttl, clock
        self._value: StoredState | None = None
        self._read_at: float | None = None
        self._lock = threading.Lock()
        self._failing = False
        self._generation = 0  # bumped by invalidate(), so a read begun before it is not kept as fresh

    def invalidate(self) -> None:
        """Forget the cached value: a run just changed what PostgreSQL holds."""
        self._generation += 1
        self._read_at = None

    def _fresh(self) -> bool:
        read_at = self._read_at
        return read_at is not None and self.clock() - read_at < self.ttl

    def get(self) -> StoredState | None:
        """The stored state, or None while PostgreSQL cannot be read."""
        if self._fresh():
            return self._value
        if self._read_at is not None and not self._lock.acquire(blocking=False):
            return self._value  # another thread is refreshing: a few seconds old is fine
        if self._read_at is None:
            self._lock.acquire()
        try:
            if not self._fresh():
                self._refresh()
            return self._value
        finally:
            self._lock.release()

    def _refresh(self) -> None:
        generation = self._generation
        try:
            self._value = self.read()
            if self._failing:
                logger.info("The sync state can be read from PostgreSQL again")
            self._failing = False
        except Exception as error:  # noqa: BLE001 - monitoring must answer whatever the database does
            self._value = None
            if not self._failing:
                logger.warning(
                    "Cannot read the sync state from PostgreSQL: %s",
                    str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__,
                )
            self._failing = True
        self._read_at = self.clock() if generation == self._generation else None


def status_fields(stored: StoredState | None, now: datetime | None = None) -> dict[str, Any]:
    """`lag_seconds` (now minus the stored cursor) and `dead_letters_unresolved`; null when unreadable."""
    if stored is None:
        return {"lag_seconds": None, "dead_letters_unresolved": None}
    lag = None
    if stored.cursor is not None:
        lag = round(((now or datetime.now(timezone.utc)) - stored.cursor).total_seconds(), 3)
    return {"lag_seconds": lag, "dead_letters_unresolved": stored.dead_letters_unresolved}
