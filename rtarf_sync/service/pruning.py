"""Housekeeping after runs: old run history and settled webhook messages are deleted, about once an hour.

    scheduler.add_result_listener(HistoryPruner(lambda: service, days))   # RTARF_RUN_HISTORY_DAYS
    scheduler.add_result_listener(OutboxPruner(outbox, days))             # RTARF_WEBHOOK_RETENTION_DAYS

Result listeners, so they run after a run has released the lease and never
inside one; each is one cheap DELETE with a short lock timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable

from rtarf_sync.engine.runs.result import SyncResult

if TYPE_CHECKING:
    from rtarf_sync.engine.runs.sync import SyncService
    from rtarf_sync.notify.outbox import Outbox

logger = logging.getLogger("rtarf_sync.scheduler")

PRUNE_EVERY_SECONDS = 3600.0


class Pruner:
    """Deletes records older than `days` after a run ends, at most once per PRUNE_EVERY_SECONDS in this process."""

    what = "records"

    def __init__(self, days: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.days, self.clock = days, clock
        self._last: float | None = None
        self._lock = threading.Lock()

    def __call__(self, result: SyncResult) -> None:
        """Prune if the last pruning is old enough; failures are logged and retried an hour later."""
        if result.run_id is None:
            return  # skipped or never reached PostgreSQL: nothing to tidy after
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last < PRUNE_EVERY_SECONDS:
                return
            self._last = now
        self.prune()

    def prune(self) -> int:
        """Delete what is older than the retention now; return how many went (0 on failure)."""
        try:
            removed = self._delete()
        except Exception as error:  # noqa: BLE001 - housekeeping never fails a run
            logger.warning("Could not prune the %s: %s", self.what, str(error).strip().splitlines()[0][:300])
            return 0
        if removed:
            logger.info("Pruned %d %s older than %d days", removed, self.what, self.days)
        return removed

    def _delete(self) -> int:
        raise NotImplementedError


class HistoryPruner(Pruner):
    """Runs older than RTARF_RUN_HISTORY_DAYS leave the run history."""

    what = "runs from the run history"

    def __init__(
        self, service: Callable[[], SyncService], days: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(days, clock)
        self.service = service

    def _delete(self) -> int:
        from rtarf_sync.engine.runs.history import prune_runs  # the sync core loads with the first run, not at start-up

        service = self.service()
        return prune_runs(service.engine, service.tables, self.days)


class OutboxPruner(Pruner):
    """Delivered and abandoned webhook messages older than RTARF_WEBHOOK_RETENTION_DAYS leave the outbox."""

    what = "settled webhook messages"

    def __init__(self, outbox: Outbox, days: int, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(days, clock)
        self.outbox = outbox

    def _delete(self) -> int:
        return self.outbox.prune(self.days)
