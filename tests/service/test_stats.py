"""SyncStats: the counters behind /scheduler/status, under concurrent updates."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from rtarf_sync.engine.runs.result import FAILED, PARTIAL, SKIPPED, SUCCESS, SyncResult
from rtarf_sync.service.stats import SyncStats, success_rate


@pytest.mark.parametrize(
    ("total", "failed", "expected"),
    [
        (0, 0, "0.0%"),
        (1, 0, "100.0%"),
        (1, 1, "0.0%"),
        (21, 1, "95.2%"),
        (3, 1, "66.7%"),
        (8, 1, "87.5%"),
    ],
)
def test_success_rate_has_one_decimal_and_a_percent_sign(total: int, failed: int, expected: str) -> None:
    assert success_rate(total, failed) == expected


def test_empty_stats_report_no_runs_without_dividing_by_zero() -> None:
    snapshot = SyncStats().snapshot()
    assert snapshot["total_syncs"] == 0
    assert snapshot["success_rate"] == "0.0%"
    assert snapshot["last_sync_time"] is None
    assert snapshot["last_sync_status"] is None


def test_failed_and_partial_runs_count_as_started_runs() -> None:
    stats = SyncStats()
    for status in (SUCCESS, FAILED, PARTIAL, SUCCESS):
        stats.record(SyncResult(status=status, total_processed=10, error="x" if status == FAILED else None))
    snapshot = stats.snapshot()
    assert snapshot["total_syncs"] == 4
    assert snapshot["failed_syncs"] == 1
    assert snapshot["success_rate"] == "75.0%"
    assert snapshot["last_sync_status"] == SUCCESS
    assert snapshot["events_processed"] == 40


def test_skipped_runs_are_counted_apart_and_keep_the_last_run() -> None:
    stats = SyncStats()
    finished = datetime(2025, 11, 14, 10, 25, tzinfo=timezone.utc)
    stats.record(SyncResult(status=SUCCESS, inserted=3, total_processed=3, finished_at=finished))
    stats.record(SyncResult(status=SKIPPED, error="another sync holds the lease on ev_x"))
    snapshot = stats.snapshot()
    assert (snapshot["total_syncs"], snapshot["skipped_syncs"]) == (1, 1)
    assert snapshot["last_sync_status"] == SUCCESS
    assert snapshot["last_sync_time"] == "2025-11-14T10:25:00+00:00"
    assert snapshot["last_result"]["inserted"] == 3
    assert snapshot["last_skip_reason"] == "another sync holds the lease on ev_x"


def test_missed_and_overlapping_runs_are_counted() -> None:
    stats = SyncStats()
    stats.record_missed()
    stats.record_missed()
    stats.record_overlap()
    snapshot = stats.snapshot()
    assert (snapshot["missed_runs"], snapshot["overlapping_runs"], snapshot["total_syncs"]) == (2, 1, 0)


def test_snapshot_is_a_copy() -> None:
    stats = SyncStats()
    stats.record(SyncResult(status=SUCCESS, inserted=1))
    stats.snapshot()["last_result"]["inserted"] = 99
    assert stats.snapshot()["last_result"]["inserted"] == 1


def test_concurrent_updates_lose_nothing() -> None:
    stats = SyncStats()
    threads_count, per_thread = 8, 500
    barrier = threading.Barrier(threads_count)

    def hammer(index: int) -> None:
        barrier.wait()
        for number in range(per_thread):
            status = FAILED if (index + number) % 4 == 0 else SUCCESS
            stats.record(SyncResult(status=status, total_processed=1))
            stats.record(SyncResult(status=SKIPPED))
            stats.record_missed()
            stats.snapshot()

    threads = [threading.Thread(target=hammer, args=(index,)) for index in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = stats.snapshot()
    runs = threads_count * per_thread
    assert snapshot["total_syncs"] == runs
    assert snapshot["skipped_syncs"] == runs
    assert snapshot["missed_runs"] == runs
    assert snapshot["events_processed"] == runs
    assert snapshot["failed_syncs"] == runs // 4
    assert snapshot["success_rate"] == "75.0%"
