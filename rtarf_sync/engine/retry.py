"""Capped exponential backoff with jitter around transient failures, built on tenacity.

Only `TransientError` is retried; anything else passes through at once. The
wait before retry n (0-based) is half fixed and half random: with
`ceiling = min(max_seconds, base_seconds * 2**n)` it lies in
`[ceiling / 2, ceiling]` ("equal jitter"), so replicas that failed together
spread out while each still backs off. Every retry logs one warning; running
out of attempts raises RunAborted naming the step and the attempts. A policy
given the run's stop event waits on it: a shutdown ends the wait at once with
RunInterrupted, rather than spending the grace period on retries.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import tenacity
from tenacity.wait import wait_base

from rtarf_sync.engine.errors import RunAborted, RunInterrupted, TransientError

T = TypeVar("T")
log = logging.getLogger("rtarf_sync.retry")  # the name log filters know


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure."""

    max_retries: int = 5
    base_seconds: float = 0.5
    max_seconds: float = 30.0
    stop: threading.Event | None = field(default=None, compare=False)  # set by a shutdown: stop waiting

    def wait(self) -> wait_base:
        """The tenacity wait: a fixed half of the capped exponential plus a random half."""
        half_base, half_cap = self.base_seconds / 2, self.max_seconds / 2
        return tenacity.wait_exponential(multiplier=half_base, max=half_cap, min=0) + tenacity.wait_random_exponential(
            multiplier=half_base, max=half_cap
        )

    def delay(self, attempt: int) -> float:
        """Backoff before retry number `attempt` (0-based), drawn from the same wait."""
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = attempt + 1
        return float(self.wait()(state))


def with_retry(call: Callable[[], T], policy: RetryPolicy, what: str, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `call`; retry it on TransientError within `policy`, then abort the run.

    The waits use `sleep`, or the policy's stop event when it has one (so a shutdown ends them)."""

    def warn(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s failed (%s); retry %d/%d in %.2fs", what, error, state.attempt_number, policy.max_retries, delay
        )

    def wait(seconds: float) -> None:
        if policy.stop is None:
            sleep(seconds)
        elif policy.stop.wait(seconds):
            raise RunInterrupted(f"interrupted by shutdown while waiting to retry {what}")

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        stop=tenacity.stop_after_attempt(policy.max_retries + 1),
        wait=policy.wait(),
        sleep=wait,
        before_sleep=warn,
        reraise=False,
    )
    try:
        return retrying(call)
    except tenacity.RetryError as exhausted:
        attempts = exhausted.last_attempt.attempt_number
        error = exhausted.last_attempt.exception()
        raise RunAborted(f"{what} failed after {attempts} attempts: {error}") from error
