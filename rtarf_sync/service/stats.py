"""Thread-safe counters behind `GET /scheduler/status` and `GET /metrics`.

APScheduler listeners run on the scheduler's executor threads and manual runs
on request threads, so every update and every read takes one lock.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

from rtarf_sync.engine.runs.result import FAILED, SKIPPED, SyncResult, utc_iso


def success_rate(total: int, failed: int) -> str:
    """Share of started runs that did not fail, one decimal and a percent sign; "0.0%" with no runs."""
    if total <= 0:
        return "0.0%"
    return f"{(total - failed) * 100.0 / total:.1f}%"


class SyncStats:
    """Counts of runs and the outcome of the last one; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._failed = 0
        self._skipped = 0
        self._missed = 0
        self._overlapping = 0
        self._events_processed = 0
        self._last_time: datetime | None = None
        self._last_status: str | None = None
        self._last_result: dict[str, Any] | None = None
        self._last_skip_time: datetime | None = None
        self._last_skip_reason: str | None = None

    def record(self, result: SyncResult, finished_at: datetime | None = None) -> None:
        """Count one run from its result; a skipped run is counted apart from started ones."""
        moment = finished_at or result.finished_at or datetime.now(timezone.utc)
        with self._lock:
            if result.status == SKIPPED:
                self._skipped += 1
                self._last_skip_time = moment
                self._last_skip_reason = result.error
                return
            self._total += 1
            if result.status == FAILED:
                self._failed += 1
            self._events_processed += result.total_processed
            self._last_time = moment
            self._last_status = result.status
            self._last_result = result.to_dict()

    def record_missed(self) -> None:
        """Count a scheduled run that APScheduler dropped because it was later than the grace time."""
        with self._lock:
            self._missed += 1

    def record_overlap(self) -> None:
        """Count a scheduled run dropped because the previous one was still running (max_instances)."""
        with self._lock:
            self._overlapping += 1

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of every counter, JSON-ready."""
        with self._lock:
            return {
                "total_syncs": self._total,
                "failed_syncs": self._failed,
                "skipped_syncs": self._skipped,
                "missed_runs": self._missed,
                "overlapping_runs": self._overlapping,
                "success_rate": success_rate(self._total, self._failed),
                "events_processed": self._events_processed,
                "last_sync_time": utc_iso(self._last_time),
                "last_sync_status": self._last_status,
                "last_result": dict(self._last_result) if self._last_result else None,
                "last_skip_time": utc_iso(self._last_skip_time),
                "last_skip_reason": self._last_skip_reason,
            }
