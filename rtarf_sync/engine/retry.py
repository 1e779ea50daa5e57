"""Capped exponential backoff with jitter around transient failures."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from rtarf_sync.engine.errors import RunAborted, TransientError

T = TypeVar("T")
log = logging.getLogger("rtarf_sync.retry")  # the name log filters know


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure."""

    max_retries: int = 5
    base_seconds: float = 0.5
    max_seconds: float = 30.0

    def delay(self, attempt: int, rng: random.Random = random.Random()) -> float:
        """Backoff before retry number `attempt` (0-based): half fixed, half random."""
        ceiling = min(self.max_seconds, self.base_seconds * (2 ** attempt))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def with_retry(call: Callable[[], T], policy: RetryPolicy, what: str,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `call`; retry it on TransientError within `policy`, then abort the run."""
    attempt = 0
    while True:
        try:
            return call()
        except TransientError as error:
            if attempt >= policy.max_retries:
                raise RunAborted(f"{what} failed after {attempt + 1} attempts: {error}") from error
            delay = policy.delay(attempt)
            log.warning("%s failed (%s); retry %d/%d in %.2fs", what, error, attempt + 1,
                        policy.max_retries, delay)
            sleep(delay)
            attempt += 1
