"""Run history housekeeping: runs older than RTARF_RUN_HISTORY_DAYS are deleted, about once an hour.

A result listener, so it runs after a run has released the lease and never
inside one; one cheap indexed DELETE with a short lock timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable

from rtarf_sync.engine.result import SyncResult

if TYPE_CHECKING:
    from rtarf_sync.engine.sync import SyncService

logger = logging.getLogger("rtarf_sync.scheduler")

PRUNE_EVERY_SECONDS = 3600.0


class HistoryPruner:
    """Deletes old runs after a run ends, at most once per PRUNE_EVERY_SECONDS in this process."""

    def __init__(self, service: Callable[[], SyncService], days: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.service, self.days, self.clock = service, days, clock
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
        """Delete runs older than the retention now; return how many went (0 on failure)."""
        from rtarf_sync.engine.history import prune_runs  # the sync core loads with the first run, not at start-up

        service = self.service()
        try:
            removed = prune_runs(service.engine, service.tables, self.days)
        except Exception as error:  # noqa: BLE001 - housekeeping never fails a run
            logger.warning("Could not prune the run history: %s", str(error).strip().splitlines()[0][:300])
            return 0
        if removed:
            logger.info("Pruned %d runs older than %d days from the run history", removed, self.days)
        return removed
