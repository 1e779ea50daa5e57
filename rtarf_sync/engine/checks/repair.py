"""Self-repair: verify a window and re-read every differing bucket with a `range` run.

    answer = verify_and_repair(service, repair=True, trigger="scheduled", record=scheduler.record)

A range run over a bucket upserts what the engine has (late arrivals) and
reconciles deletes in it, and never moves the stored cursor. Before it, the
bucket is compared again in 1,440 parts (a day in minutes, an hour in
2-second steps; fingerprints.py), and the run covers only the span from the
first differing part to the last: late events of one afternoon re-read that
afternoon, not the day. When the parts cannot be compared, or none differs
any more, the run covers the whole bucket. Each repair is a
run of its own (trigger "repair", mode "range") in the run history. One
verification repairs at most RTARF_VERIFY_MAX_REPAIRS buckets; the rest are
listed in `unrepaired`, and the next verification finds them again. After
repairs the same window is verified again, and `after_repair` says whether
it is now in step. The caller's `step` holds its process lock around each part
only, and the lease is taken by the verification and by each range run in
turn, so syncs run between repairs.
"""

from __future__ import annotations

import logging
from functools import partial
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

from rtarf_sync.engine.checks.fingerprints import compare_or_read
from rtarf_sync.engine.runs.lease import LeaseHeld
from rtarf_sync.engine.runs.result import SKIPPED, SyncResult
from rtarf_sync.engine.checks.verify import Difference, Verification, Verifier

if TYPE_CHECKING:
    from rtarf_sync.engine.runs.sync import SyncService

log = logging.getLogger("rtarf_sync.verify")
PARTS = 1_440  # a differing bucket is compared again in this many parts before its repair

RunRecorder = Callable[[SyncResult], None]
T = TypeVar("T")


class Step(Protocol):
    """Runs one part of a verification under the caller's lock."""

    def __call__(self, work: Callable[[], T]) -> T: ...


def _directly(work: Callable[[], T]) -> T:
    return work()


class Busy(Exception):
    """Raised by a step whose lock another run holds: the repairs stop, the rest are `unrepaired`."""


def _run_object(service: SyncService, result: SyncResult) -> dict[str, Any]:
    """The run object (docs/design.md) of a finished run, or the result itself when it never got a run id (skipped)."""
    if result.run_id is not None:
        run = service.history.get(result.run_id)
        if run is not None:
            return run
    return {
        "run_id": None,
        "trigger": result.trigger,
        "mode": result.mode,
        "status": result.status,
        "error": result.error,
    }


def _span(service: SyncService, difference: Difference) -> tuple[datetime, datetime]:
    """The part of a differing bucket a repair re-reads: first to last differing part, else all of it."""
    whole = difference.start, difference.end
    seconds = int((difference.end - difference.start).total_seconds())
    width = timedelta(seconds=max(1, seconds // PARTS))

    comparison = compare_or_read(
        service,
        difference.start,
        difference.end,
        width,
        target_only_differs=True,
        what="the whole bucket",
    )
    if comparison is None or not comparison.differing:
        return whole
    ranges = comparison.ranges
    return ranges[0][0], ranges[-1][1]


def repair(
    service: SyncService,
    verification: Verification,
    record: RunRecorder,
    stopping: Callable[[], bool] = lambda: False,
    step: Step = _directly,
) -> tuple[list[dict[str, Any]], list[Difference]]:
    """One range run per differing bucket, oldest first, at most RTARF_VERIFY_MAX_REPAIRS of them.

    Each goes through `step` (the caller's lock, released between repairs); returns the runs and
    the buckets left unrepaired (over the limit, on shutdown, or when the lease or lock is taken).
    """
    runs: list[dict[str, Any]] = []
    differing = verification.differing
    for done, difference in enumerate(differing):
        if stopping() or done >= service.settings.verify.max_repairs:
            return runs, differing[done:]
        try:
            start, end = step(partial(_span, service, difference))
            log.info(
                "Repairing %s to %s: the engine has %d documents, PostgreSQL %d live rows in %s to %s",
                start.isoformat(),
                end.isoformat(),
                difference.source,
                difference.target,
                difference.start.isoformat(),
                difference.end.isoformat(),
            )
            result = step(partial(service.run, trigger="repair", mode="range", start=start, end=end))
        except Busy:
            return runs, differing[done:]
        record(result)
        runs.append(_run_object(service, result))
        if result.status == SKIPPED:
            return runs, differing[done:]  # another process is syncing: this bucket and the rest wait
    return runs, []


def verify_and_repair(
    service: SyncService,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    bucket: str | None = None,
    repair_drift: bool = False,
    trigger: str = "manual",
    record: RunRecorder = lambda result: None,
    stopping: Callable[[], bool] = lambda: False,
    step: Step = _directly,
) -> dict[str, Any]:
    """Verify (the default window unless given), repair when asked, and return the stored answer.

    `step` runs each part (the check, each repair, the check after repairs) under the caller's
    lock, so that whatever waits for that lock gets it between repairs.
    """
    verifier = Verifier(service)
    window = verifier.default_window(start=start, end=end, bucket=bucket)
    verification = step(lambda: verifier.check(window))
    repaired, unrepaired = repair(service, verification, record, stopping, step) if repair_drift else (None, [])
    answer = verification.to_dict(repaired)
    answer["unrepaired"] = [difference.to_dict() for difference in unrepaired]
    answer["trigger"] = trigger
    answer["after_repair"] = None
    if repaired:
        try:
            again = step(lambda: verifier.check(window))
        except (Busy, LeaseHeld):
            again = None  # the next verification checks again
        if again is not None:
            answer["after_repair"] = {
                key: value
                for key, value in again.to_dict().items()
                if key
                in (
                    "in_step",
                    "source_total",
                    "target_total",
                    "differing",
                    "missing_cursor",
                    "checked_at",
                    "verification_id",
                )
            }
    verifier.record_answer(verification, answer)
    return answer
