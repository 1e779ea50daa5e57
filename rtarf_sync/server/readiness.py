"""The readiness answer: one check at a time, shared by concurrent probes, kept for 2 s, waited for at most 5 s.

A probe never runs a check of its own: a burst of probes (or an engine that
does not answer) costs one thread, not one request thread per probe.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable

Checks = dict[str, "str | None"]

DEADLINE_SECONDS = 5.0
CACHE_SECONDS = 2.0


class Readiness:
    """`current()` answers the last check if younger than `ttl`, else joins or starts one and waits `deadline`."""

    def __init__(
        self,
        check: Callable[[], Checks],
        names: tuple[str, ...],
        deadline: float = DEADLINE_SECONDS,
        ttl: float = CACHE_SECONDS,
    ) -> None:
        self._check, self._names, self._deadline, self._ttl = check, names, deadline, ttl
        self._lock = threading.Lock()
        self._answer: Checks | None = None
        self._answered_at = 0.0
        self._pending: Future[Checks] | None = None

    def current(self) -> Checks:
        """Reachability per name (None where reachable); a check still running at the deadline names them all."""
        with self._lock:
            if self._answer is not None and time.monotonic() - self._answered_at < self._ttl:
                return self._answer
            if self._pending is None:
                self._pending = Future()
                threading.Thread(target=self._run, args=(self._pending,), name="rtarf-readiness", daemon=True).start()
            pending = self._pending
        try:
            return pending.result(timeout=self._deadline)
        except FutureTimeout:
            return {name: f"no answer within {self._deadline:g} s" for name in self._names}

    def _run(self, pending: Future[Checks]) -> None:
        try:
            answer = self._check()
        except Exception as error:  # noqa: BLE001 - a check that raises is an answer too: not ready
            answer = {name: f"check failed: {type(error).__name__}" for name in self._names}
        with self._lock:
            self._answer, self._answered_at, self._pending = answer, time.monotonic(), None
        pending.set_result(answer)
