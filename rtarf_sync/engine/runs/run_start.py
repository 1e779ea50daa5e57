"""What happens between taking the lease and reading the first page.

Runs left `running` by a dead process are closed as failed ("abandoned");
the run's own start is recorded exactly once, even when a retried insert had
landed before its answer was lost; and when the start cannot be recorded, the
lease is given back at once instead of blocking every other run for a TTL.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable, Protocol, TypeVar

import sqlalchemy as sa

from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.lease import Lease, release
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.engine.runs.records import RunHistory

T = TypeVar("T")
log = logging.getLogger("rtarf_sync.sync")  # the name log filters know


class Db(Protocol):
    """SyncService.db: a database step with retries."""

    def __call__(self, call: Callable[[], T], what: str) -> T: ...


def begin_run(
    history: RunHistory,
    db: Db,
    result: SyncResult,
    owner: str,
    range_from: datetime | None = None,
    range_to: datetime | None = None,
) -> int:
    """Close abandoned runs, then record this one (its mode and range) as running; return its id."""
    abandoned = db(lambda: history.close_abandoned(owner), "close abandoned runs")
    if abandoned:
        log.warning(
            "closed %d run(s) left running by a stopped process as failed (abandoned): %s",
            len(abandoned),
            ", ".join(map(str, abandoned)),
        )
    attempts = 0

    def attempt() -> int:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            # The last insert may have landed before its answer was lost: never leave a stray running row.
            landed = history.running_of(owner)
            if landed is not None:
                return landed
        return history.start(
            result.trigger, owner, result.started_at or sa.func.now(), result.mode, range_from, range_to
        )

    return db(attempt, "record run start")


def release_now(engine: sa.Engine, lease: Lease, fence: Fence, db: Db) -> None:
    """Give the lease back at once; a failure is logged (the lease then expires on its own)."""

    try:
        db(lambda: release(engine, lease, fence), "release lease")
    except Exception as error:  # noqa: BLE001 - never hide the failure that made us release
        log.warning(
            "could not release lease %s at once (it expires within its TTL): %s",
            fence.name,
            str(error).splitlines()[0] if str(error) else type(error).__name__,
        )
