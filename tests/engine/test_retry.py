"""Retries (tenacity underneath): capped exponential backoff with jitter, a warning per retry, a clear abort.

The unit tests inject the sleep, so no test waits for a backoff; the last two
drive the real service against the protocol server: RTARF_SYNC_MAX_RETRIES and
RTARF_SYNC_RETRY_MAX_SECONDS reach the retries, and a shutdown ends a backoff.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Callable

import pytest

from config import Settings
from rtarf_sync.engine.errors import RunAborted, SourceError, TransientError
from rtarf_sync.engine.retry import RetryPolicy, with_retry
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.engine.runs.sync import SyncService
from tests.infra.esserver import EsProtocolServer
from tests.infra.harness.http import EngineHttp
from tests.infra.support import wait_for


class Flaky:
    """Fails with `error` the first `failures` calls, then answers "done"."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures, self.calls = failures, 0
        self.error = error or TransientError("HTTP 503 unavailable_shards_exception")

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def test_transient_failures_are_retried_until_the_call_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    slept: list[float] = []
    call = Flaky(3)
    with caplog.at_level(logging.WARNING, logger="rtarf_sync.retry"):
        assert with_retry(call, RetryPolicy(5, 0.5, 30), "search page", sleep=slept.append) == "done"
    assert call.calls == 4 and len(slept) == 3
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 3, "one warning per retry"
    for number, (line, delay) in enumerate(zip(warnings, slept, strict=True), start=1):
        assert line == f"search page failed (HTTP 503 unavailable_shards_exception); retry {number}/5 in {delay:.2f}s"


@pytest.mark.parametrize("retries", [0, 1, 4])
def test_running_out_of_attempts_aborts_naming_the_step_and_the_attempts(retries: int) -> None:
    call = Flaky(100)
    with pytest.raises(RunAborted) as caught:
        with_retry(call, RetryPolicy(retries, 0.1, 1), "write page 7", sleep=lambda _: None)
    assert call.calls == retries + 1
    assert str(caught.value) == (
        f"write page 7 failed after {retries + 1} attempts: HTTP 503 unavailable_shards_exception"
    )
    assert isinstance(caught.value.__cause__, TransientError)


def test_a_permanent_error_is_never_retried() -> None:
    call = Flaky(1, SourceError("search: HTTP 400 parsing_exception"))
    with pytest.raises(SourceError):
        with_retry(call, RetryPolicy(5, 0.1, 1), "search page", sleep=lambda _: pytest.fail("slept"))
    assert call.calls == 1


def test_backoff_doubles_is_capped_and_is_half_random() -> None:
    policy = RetryPolicy(20, 0.5, 4.0)
    for attempt in range(12):
        ceiling = min(4.0, 0.5 * 2**attempt)
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > ceiling / 4, "the random half spreads retries out"


def test_the_waits_actually_slept_follow_the_policy() -> None:
    slept: list[float] = []
    with pytest.raises(RunAborted):
        with_retry(Flaky(100), RetryPolicy(8, 0.2, 1.0), "open point in time", sleep=slept.append)
    assert len(slept) == 8
    for attempt, delay in enumerate(slept):
        ceiling = min(1.0, 0.2 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling


@pytest.fixture
def refused_pits(
    elasticsearch: EngineHttp, es_server: EsProtocolServer, index_name: str, make_settings: Callable[..., Settings]
) -> Callable[..., SyncService]:
    """Builds a service (RTARF_ variables as keywords) for an index whose every point in time the engine refuses."""
    elasticsearch.create_index(index_name)

    def build(**env: object) -> SyncService:
        service = SyncService(make_settings(elasticsearch, index_name, **env))
        es_server.faults.only_paths("_pit")
        es_server.faults.fail_next(100, status=503)
        return service

    return build


def test_the_settings_reach_the_retries(
    refused_pits: Callable[..., SyncService], caplog: pytest.LogCaptureFixture
) -> None:
    service = refused_pits(RTARF_SYNC_MAX_RETRIES=3, RTARF_SYNC_RETRY_MAX_SECONDS=0.3)
    assert (service.retry.max_retries, service.retry.max_seconds) == (3, 0.3)
    with caplog.at_level(logging.WARNING, logger="rtarf_sync.retry"):
        result = service.run()
    service.close()
    assert result.status == "failed"
    assert (result.error or "").startswith("open point in time failed after 4 attempts: open point in time: HTTP 503")
    delays = [
        float(m.group(1)) for r in caplog.records if (m := re.search(r"retry \d/3 in ([0-9.]+)s", r.getMessage()))
    ]
    assert len(delays) == 3 and all(delay <= 0.3 for delay in delays)


def test_a_shutdown_ends_a_run_that_waits_to_retry(
    refused_pits: Callable[..., SyncService], caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM asks the running sync to stop; one that is backing off from a failing engine stops waiting
    at once instead of spending the grace period (and more) on retries that nobody will see finish."""
    # Ten retries with waits of up to a minute: without the stop, minutes of backoff.
    service = refused_pits(RTARF_SYNC_MAX_RETRIES=10, RTARF_SYNC_RETRY_MAX_SECONDS=60)
    outcome: list[SyncResult] = []
    runner = threading.Thread(target=lambda: outcome.append(service.run()))
    with caplog.at_level(logging.WARNING, logger="rtarf_sync.retry"):
        runner.start()
        wait_for(lambda: "retry 2/10" in caplog.text, timeout=30, what="the run's second retry")
        service.request_stop()
        runner.join(timeout=20)  # the third wait alone would be 1 to 2 s, the tenth up to a minute
    assert not runner.is_alive(), "the run kept waiting to retry after the shutdown asked it to stop"
    service.close()
    (result,) = outcome
    assert result.status == "failed"
    assert (result.error or "").startswith("interrupted by shutdown while waiting to retry open point in time")
    assert "retry 4/10" not in caplog.text  # no attempt after the wait the stop cut short
