"""Self-repair: verify a window and re-read every differing bucket with a `range` run.

    answer = verify_and_repair(service, repair=True, trigger="scheduled", record=scheduler.record)

A range run over a bucket upserts what the engine has (late arrivals) and
reconciles deletes in it, and never moves the stored cursor. Each repair is a
run of its own (trigger "repair", mode "range") in the run history. After
repairs the same window is verified again, and `after_repair` says whether
it is now in step. The caller holds the process lock; the lease is taken by
the verification and by each range run in turn.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from rtarf_sync.engine.result import SKIPPED, SyncResult
from rtarf_sync.engine.verify import Verification, Verifier

if TYPE_CHECKING:
    from rtarf_sync.engine.sync import SyncService

log = logging.getLogger("rtarf_sync.verify")

RunRecorder = Callable[[SyncResult], None]


def _run_object(service: SyncService, result: SyncResult) -> dict[str, Any]:
    """The run object (docs/design.md) of a finished run, or the result itself when it never got a run id (skipped)."""
    if result.run_id is not None:
        run = service.history.get(result.run_id)
        if run is not None:
            return run
    return {"run_id": None, "trigger": result.trigger, "mode": result.mode, "status": result.status,
            "error": result.error}


def repair(service: SyncService, verification: Verification, record: RunRecorder,
           stopping: Callable[[], bool] = lambda: False) -> list[dict[str, Any]]:
    """One range run per differing bucket, oldest first; stops early on shutdown or when the lease is taken."""
    runs: list[dict[str, Any]] = []
    for difference in verification.differing:
        if stopping():
            break
        log.info("Repairing %s to %s: the engine has %d documents, PostgreSQL %d live rows",
                 difference.start.isoformat(), difference.end.isoformat(), difference.source, difference.target)
        result = service.run(trigger="repair", mode="range", start=difference.start, end=difference.end)
        record(result)
        runs.append(_run_object(service, result))
        if result.status == SKIPPED:
            break  # another process is syncing; the next verification looks again
    return runs


def verify_and_repair(service: SyncService, *, start: datetime | None = None, end: datetime | None = None,
                      bucket: str | None = None, repair_drift: bool = False, trigger: str = "manual",
                      record: RunRecorder = lambda result: None,
                      stopping: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Verify (the default window unless given), repair when asked, and return the stored answer."""
    verifier = Verifier(service)
    window = verifier.default_window(start=start, end=end, bucket=bucket)
    verification = verifier.check(window)
    repaired = repair(service, verification, record, stopping) if repair_drift else None
    answer = verification.to_dict(repaired)
    answer["trigger"] = trigger
    answer["after_repair"] = None
    if repaired:
        again = verifier.check(window)
        answer["after_repair"] = {key: value for key, value in again.to_dict().items()
                                  if key in ("in_step", "source_total", "target_total", "differing",
                                             "missing_cursor", "checked_at", "verification_id")}
    verifier.record_answer(verification, answer)
    return answer
