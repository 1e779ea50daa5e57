"""Retention: drop whole partitions of the target that ended before now - retention_days.

A partition that intersects a `legal_hold` range is kept and reported; the default
partition (rows without a time) is never dropped. Each drop is a run of its own (mode
`retention`, its range the partition's bounds, `deleted` its rows) with a sync's
lifecycle, so it waits for no one and no one writes the target while it drops. The
horizon also bounds every later run, verification and reconciliation (plan.py,
verify.py): the engine may keep the events, they are out of scope, not drift.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.renewal import LeaseKeeper
from rtarf_sync.engine.runs.result import FAILED, SKIPPED, SUCCESS, SyncResult, utc_iso
from rtarf_sync.engine.target.partitions import Partition, existing, held, horizon

if TYPE_CHECKING:
    from rtarf_sync.engine.runs.sync import SyncService

log = logging.getLogger("rtarf_sync.retention")
MODE = "retention"


@dataclass
class RetentionOutcome:
    """What one retention pass did: the partitions dropped, those kept for a hold, and each drop's run."""

    dropped: list[dict[str, Any]] = field(default_factory=list)
    kept_for_hold: list[dict[str, Any]] = field(default_factory=list)
    runs: list[SyncResult] = field(default_factory=list)
    status: str = SUCCESS
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The answer of POST /scheduler/retention."""
        return {
            "status": self.status,
            "error": self.error,
            "dropped": self.dropped,
            "kept_for_hold": self.kept_for_hold,
        }


def _range(part: Partition) -> dict[str, Any]:
    return {"from": utc_iso(part.start), "to": utc_iso(part.end)}


class Retention:
    """Drops the expired partitions of one SyncService's target."""

    def __init__(self, service: SyncService) -> None:
        self.service = service

    def expired(self, now: datetime | None = None) -> list[Partition]:
        """The partitions that ended at or before the horizon, oldest first (none without retention)."""
        limit = horizon(self.service.settings, now)
        if limit is None:
            return []
        self.service.ensure_tables()
        with self.service.engine.connect() as connection:
            return [part for part in existing(connection, self.service.tables.target.name) if part.end <= limit]

    def run(self, trigger: str = "manual", now: datetime | None = None) -> RetentionOutcome:
        """Drop every expired partition not under a legal hold; never raises for a failed drop."""
        outcome = RetentionOutcome()
        try:
            expired = self.expired(now)
        except Exception as error:  # noqa: BLE001 - reported like a failed run
            result = SyncResult(trigger=trigger, mode=MODE)
            result.fail(error, self.service.secrets())
            outcome.status, outcome.error = FAILED, result.error
            return outcome
        for part in expired:
            if held(part, self.service.settings.legal_hold):
                outcome.kept_for_hold.append(_range(part))
                continue
            result = self._drop(part, trigger)
            outcome.runs.append(result)
            if result.status != SUCCESS:
                outcome.status, outcome.error = result.status, result.error
                break  # skipped (the lease is held) or failed: the next pass drops the rest
            outcome.dropped.append({**_range(part), "rows": result.deleted})
        if outcome.dropped:
            self.service.sink.forget_partitions()
        return outcome

    def _drop(self, part: Partition, trigger: str) -> SyncResult:
        """Drop one partition as a run of its own under the lease."""
        service = self.service
        result = SyncResult(trigger=trigger, mode=MODE, started_at=datetime.now(timezone.utc))

        def work(fence: Fence, keeper: LeaseKeeper) -> None:
            engine, tables = service.engine, service.tables
            quote = engine.dialect.identifier_preparer.quote
            with engine.begin() as connection:
                service.lease.fence(connection, fence)
                # Counted in the transaction that drops it: what the run row says is what went.
                count = connection.exec_driver_sql(f"SELECT count(*) FROM {quote(part.name)}").scalar_one()
                connection.exec_driver_sql(f"DROP TABLE {quote(part.name)}")
            result.deleted = int(count)
            result.status = SUCCESS
            log.info(
                "Retention dropped partition %s of %s [%s, %s): %d rows",
                part.name,
                tables.target.name,
                utc_iso(part.start),
                utc_iso(part.end),
                result.deleted,
            )

        service.lifecycle(MODE, log).run(result, lambda: True, work, part.start, part.end)
        if result.status == SKIPPED:
            log.info("Retention skipped: %s", result.error)
        return result
