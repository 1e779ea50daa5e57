"""Helpers for the scheduler and API tests: settings without reachable engines, gated jobs, polling."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from config import Settings, load_settings
from rtarf_sync.result import SUCCESS, SyncResult
from tests.harness.process import free_port


def offline_settings(**env: Any) -> Settings:
    """Settings whose engine and database ports have nothing listening (nothing real is touched)."""
    environ = {"RTARF_ES_URL": f"http://127.0.0.1:{free_port()}",
               "RTARF_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/rtarf",
               "RTARF_SOURCE_ENGINE": "elasticsearch", "RTARF_SYNC_MAX_RETRIES": "0",
               "RTARF_ES_REQUEST_TIMEOUT_SECONDS": "2"}
    environ.update({key: str(value) for key, value in env.items()})
    return load_settings(environ)


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class GatedJob:
    """A job that blocks until released, so a test can act while a run is in progress."""

    def __init__(self, result: SyncResult | None = None, *, gated: bool = True) -> None:
        self.result = result or SyncResult(status=SUCCESS, total_processed=150, inserted=10, updated=140)
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()
        if not gated:
            self.release.set()

    def __call__(self) -> SyncResult:
        with self._lock:
            self.calls += 1
        self.started.set()
        if not self.release.wait(60):
            raise RuntimeError("the test never released the job")
        return self.result

    def call_count(self) -> int:
        """How many runs have started."""
        with self._lock:
            return self.calls
