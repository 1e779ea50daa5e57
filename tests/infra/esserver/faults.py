"""Fault injection: errors, slow answers, dropped connections, shard failures.

Each kind is a queue consumed one entry per matching request, so calls add
up (`fail_next(1, 429); fail_next(1, 503)` fails the next request with 429
and the one after with 503). A delay is served first and then the request
goes on; dropping, failing and a shard failure exclude each other, in that
order of precedence.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from collections.abc import Callable

from tests.infra.esserver.errors import EsError

_ERRORS = {
    429: (
        "es_rejected_execution_exception",
        "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
        "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, max_coordinating_and_primary_bytes=0]",
    ),
    500: ("exception", "injected internal server error"),
    502: ("exception", "injected bad gateway"),
    503: ("unavailable_shards_exception", "primary shard is not active Timeout: [1m]"),
    504: ("timeout_exception", "injected gateway timeout"),
}


@dataclass(frozen=True)
class Decision:
    """What to do to one request."""

    delay: float = 0.0
    drop: bool = False
    status: int | None = None
    shard_failure: bool = False
    timed_out: bool = False
    expire: bool = False


def injected_error(status: int) -> EsError:
    """Return the Elasticsearch error body for an injected status."""
    error_type, reason = _ERRORS.get(status, ("exception", f"injected error with status {status}"))
    return EsError(status, error_type, reason)


class Faults:
    """The faults waiting for the next requests."""

    def __init__(self, expire_pits: Callable[[], int]) -> None:
        self._lock = threading.Lock()
        self._expire_pits = expire_pits
        self._failures: collections.deque[int] = collections.deque()
        self._delays: collections.deque[float] = collections.deque()
        self._drops = 0
        self._shard_failures = 0
        self._timeouts = 0
        self._expire_at: list[int] = []  # countdowns of searches until every point in time expires
        self._path_filter: str | None = None

    def fail_next(self, n: int, status: int = 429) -> None:
        """Answer the next n requests with this HTTP status and an ES error body."""
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status, got {status}")
        with self._lock:
            self._failures.extend([status] * n)

    def delay_next(self, n: int, seconds: float) -> None:
        """Sleep `seconds` before answering each of the next n requests."""
        with self._lock:
            self._delays.extend([float(seconds)] * n)

    def drop_next(self, n: int) -> None:
        """Close the connection of the next n requests without answering."""
        with self._lock:
            self._drops += n

    def shard_failure_next(self, n: int) -> None:
        """Answer the next n searches with 200, one failed shard and no hits."""
        with self._lock:
            self._shard_failures += n

    def timed_out_next(self, n: int) -> None:
        """Answer the next n searches with 200, `timed_out: true` and only part of their hits."""
        with self._lock:
            self._timeouts += n

    def expire_pits_at_search(self, nth: int) -> None:
        """Expire every open point in time just before the nth matching search from now is answered."""
        with self._lock:
            self._expire_at.append(nth)

    def expire_pits(self) -> int:
        """Make every open point in time unknown now; return how many there were."""
        return self._expire_pits()

    def only_paths(self, substring: str | None) -> None:
        """Apply faults only to paths containing `substring` (None: to every path)."""
        with self._lock:
            self._path_filter = substring

    def reset(self) -> None:
        """Drop every pending fault and the path filter."""
        with self._lock:
            self._failures.clear()
            self._delays.clear()
            self._drops = 0
            self._shard_failures = 0
            self._timeouts = 0
            self._expire_at.clear()
            self._path_filter = None

    def take(self, path: str, is_search: bool) -> Decision:
        """Consume the faults that apply to one request."""
        with self._lock:
            if self._path_filter is not None and self._path_filter not in path:
                return Decision()
            delay = self._delays.popleft() if self._delays else 0.0
            expire = False
            if is_search and self._expire_at:
                self._expire_at = [left - 1 for left in self._expire_at]
                expire = 0 in self._expire_at
                self._expire_at = [left for left in self._expire_at if left > 0]
            if expire:
                return Decision(delay, expire=True)
            if self._drops:
                self._drops -= 1
                return Decision(delay, drop=True)
            if self._failures:
                return Decision(delay, status=self._failures.popleft())
            if is_search and self._shard_failures:
                self._shard_failures -= 1
                return Decision(delay, shard_failure=True)
            if is_search and self._timeouts:
                self._timeouts -= 1
                return Decision(delay, timed_out=True)
            return Decision(delay)
