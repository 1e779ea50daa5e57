"""Coalesced real-time sync triggers: `POST /scheduler/trigger` asks, one thread per process runs.

A trigger says "events indexed before now must reach PostgreSQL soon". A run
that started at `S` reads up to `S - settle`, so it *covers* every trigger
received at or before `S - settle`. The trigger keeps only the first and the
last uncovered trigger time and runs when

    due = max(first + debounce, min(last, first + debounce) + settle)

so a burst within the debounce window makes one run that covers the whole
burst; a trigger during a run is uncovered by it, so exactly one follow-up runs
once it ends (however many triggers came meanwhile).

Across gunicorn workers and replicas the lease decides who runs. A worker whose
trigger is pending while another process holds the lease does not try, fail and
count a skipped run every few hundred milliseconds: it watches the lease, and
when the lease is free it first asks the run history whether a run that started
late enough (by anyone, `started_at >= last + settle`) already covered it. If
so the trigger is absorbed; otherwise this worker runs. So no trigger is lost
(each leads to a run that covers it) and none causes a storm (at most one
follow-up per worker per burst).

Before a triggered run the index setting is refreshed (best effort), so the
documents of the bulk request that preceded the trigger are searchable.

A run through the trigger goes through the scheduler's process lock and
`record()` (`sync_now("trigger")`), so stats and result listeners see it. A run
that fails consumes the trigger: retrying at once would only fail again; the
interval job and the next trigger try again, and the webhook says it failed.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

import sqlalchemy as sa

from rtarf_sync.engine.runs.result import SKIPPED, utc_iso
from rtarf_sync.service.jobs import SyncBusy

if TYPE_CHECKING:
    from rtarf_sync.service.scheduler import RtarfEventScheduler

logger = logging.getLogger("rtarf_sync.trigger")

RETRY_SECONDS = 0.5  # how often a waiting worker looks at the lease again
IDLE_CHECK_SECONDS = 5.0


class TriggerRefused(RuntimeError):
    """The interval job is paused or disabled: automatic runs are off, so triggers are refused (409)."""


class SyncTrigger:
    """Debounces trigger requests into runs of one scheduler; thread-safe."""

    def __init__(
        self,
        scheduler: RtarfEventScheduler,
        *,
        clock: Callable[[], float] = time.time,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self._scheduler = scheduler
        self._clock = clock
        self._retry = retry_seconds
        self._debounce = scheduler.settings.trigger_debounce_seconds
        self._settle = float(scheduler.settings.settle_seconds)
        self._cond = threading.Condition(threading.RLock())
        self._first: float | None = None  # earliest trigger not yet covered by a run
        self._last: float | None = None  # latest trigger not yet covered
        self._thread: threading.Thread | None = None
        self._runs = 0
        self._running = False  # a triggered run is being started or is running
        self._closed = False

    def request(self) -> bool:
        """Ask for a run; return True when it joined a run already requested (coalesced)."""
        state = self._scheduler.state()
        if state != "running" or self._scheduler.stopping:
            raise TriggerRefused(
                f"the interval job is {'stopping' if self._scheduler.stopping else state}; "
                "POST /scheduler/start resumes automatic runs (sync-now still works)"
            )
        now = self._clock()
        with self._cond:
            coalesced = self._first is not None
            self._first = now if self._first is None else self._first
            self._last = now
            self._ensure_thread()
            self._cond.notify_all()
        return coalesced

    def state(self) -> dict[str, Any]:
        """What GET /scheduler/status shows: a run pending, a triggered run running, when due, runs so far."""
        with self._cond:
            due = self._due() if self._first is not None else None
            return {
                "pending": self._first is not None,
                "running": self._running,
                "due_at": _iso(due),
                "runs": self._runs,
            }

    def close(self) -> None:
        """Stop the trigger thread (a run it started finishes under the scheduler's own shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- the trigger thread ----------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="rtarf-trigger", daemon=True)
            self._thread.start()

    def _due(self) -> float:
        assert self._first is not None and self._last is not None
        burst_end = self._first + self._debounce
        return max(burst_end, min(self._last, burst_end) + self._settle)

    def _loop(self) -> None:
        while self._wait_until_due():
            try:
                self._step()
            except Exception:  # the thread must survive a database hiccup
                logger.exception("A triggered sync could not be started; trying again shortly")
                self._pause(self._retry)

    def _wait_until_due(self) -> bool:
        """Block until a pending trigger is due; False when closing."""
        with self._cond:
            while not self._stopped():
                if self._first is None:
                    self._cond.wait(IDLE_CHECK_SECONDS)  # wakes on a trigger; the timeout notices a shutdown
                    continue
                remaining = self._due() - self._clock()
                if remaining <= 0:
                    return True
                self._cond.wait(remaining)
            return False

    def _stopped(self) -> bool:
        return self._closed or self._scheduler.stopping

    def _pause(self, seconds: float) -> None:
        with self._cond:
            if not self._stopped():
                self._cond.wait(seconds)

    def _step(self) -> None:
        """Run once for the pending triggers, unless paused, already covered, or the lease is elsewhere."""
        if self._scheduler.state() != "running":
            logger.info("Pending sync trigger dropped: the interval job is %s", self._scheduler.state())
            self._covered_until(float("inf"))
            return
        with self._cond:
            last = self._last
        if last is not None and self._covered_by_history(last):
            return
        if self._lease_elsewhere():
            self._pause(self._retry)
            return
        self._refresh_source()
        started = self._clock()
        with self._cond:
            # Taken up now: a trigger from here on asks for a follow-up (unless this run covers it).
            taken = (self._first, self._last)
            self._covered_until(started - self._settle)
            self._running = True
        try:
            result = self._scheduler.sync_now("trigger")
        except SyncBusy:  # a scheduled or manual run in this process: it may cover us; look again soon
            result = None
        finally:
            with self._cond:
                self._running = False
        if result is None or result.status == SKIPPED:  # SKIPPED: another process took the lease in between
            self._restore(*taken)
            self._pause(self._retry)
            return
        with self._cond:
            self._runs += 1

    def _refresh_source(self) -> None:
        """Make every acknowledged document searchable before the run (best effort).

        The pipeline calls the trigger right after its bulk request is acknowledged, but the engine
        shows those documents only after its next refresh (1 s by default). Without this, a run that
        starts within that second misses the last bulk, and nothing covers it until the interval job.
        A user without the refresh privilege still gets the run; settle and overlap then decide.
        """
        try:
            self._scheduler.service.api.refresh(self._scheduler.settings.es_index)
        except Exception as error:  # noqa: BLE001 - a refresh is an optimisation, never a reason not to run
            logger.debug("Refresh before a triggered run failed: %s", type(error).__name__)

    def _restore(self, first: float | None, last: float | None) -> None:
        """Put back triggers a run did not take up after all."""
        with self._cond:
            if first is None or last is None:
                return
            self._first = first if self._first is None else min(first, self._first)
            self._last = last if self._last is None else max(last, self._last)

    def _covered_until(self, moment: float) -> None:
        """Forget triggers received at or before `moment`; later ones stay pending (RLock: re-entrant)."""
        with self._cond:
            if self._last is None or self._last <= moment:
                self._first = self._last = None
            else:
                self._first = max(self._first or moment, moment)

    def _covered_by_history(self, last: float) -> bool:
        """True (and the triggers forgotten) when a run by anyone started late enough to cover `last`."""
        service = self._scheduler.service
        runs = service.tables.runs
        with service.engine.connect() as connection:
            latest = connection.execute(
                sa.select(sa.func.max(runs.c.started_at)).where(
                    runs.c.target_table == self._scheduler.settings.table,
                    runs.c.source_index == self._scheduler.settings.es_index,
                    runs.c.mode.in_(("incremental", "full")),
                    runs.c.status.in_(("running", "success", "partial")),
                )
            ).scalar()
        if latest is None or latest.timestamp() - self._settle < last:
            return False
        logger.info("Sync trigger absorbed by the run that started at %s", utc_iso(latest))
        self._covered_until(latest.timestamp() - self._settle)
        return True

    def _lease_elsewhere(self) -> bool:
        """True while an unexpired lease is held (by another process: ours would be under the process lock)."""
        service = self._scheduler.service
        lease = service.tables.lease
        with service.engine.connect() as connection:
            return bool(
                connection.execute(
                    sa.select(sa.func.count()).where(
                        lease.c.name == self._scheduler.settings.table, lease.c.expires_at > sa.func.now()
                    )
                ).scalar()
            )


def _iso(moment: float | None) -> str | None:
    return None if moment is None else utc_iso(datetime.fromtimestamp(moment, timezone.utc))
