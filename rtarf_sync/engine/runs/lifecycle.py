"""One run's life under the lease, the same for a sync and a dead-letter replay.

prepare -> take the lease (skipped when held) -> begin the run (close abandoned runs, record
its start once; give the lease back at once if that fails) -> work, the lease kept by a
LeaseKeeper -> record the end -> give the lease back. A failure is reported, never raised.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Callable

import sqlalchemy as sa

from config import DEFAULT_PIPELINE
from rtarf_sync.engine.errors import RtarfSyncError, redact
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.lease import Holder, Lease, owner_id, release, take
from rtarf_sync.engine.runs.records import RunHistory
from rtarf_sync.run_context import enter_run, leave_run
from rtarf_sync.tracing import describe_run, tracer
from rtarf_sync.engine.runs.renewal import LeaseKeeper
from rtarf_sync.engine.runs.result import SKIPPED, SyncResult
from rtarf_sync.engine.runs.run_start import Db, begin_run, release_now

Work = Callable[[Fence, LeaseKeeper], None]


class RunLifecycle:
    """Takes, keeps and gives back one target's lease around a run, and records the run."""

    def __init__(
        self,
        engine: sa.Engine,
        lease: Lease,
        history: RunHistory,
        db: Db,
        secrets: Callable[[], list[str]],
        log: logging.Logger,
        name: str = "sync",
        keep_lease: bool = True,
        pipeline: str = DEFAULT_PIPELINE,
    ) -> None:
        self.engine, self.lease, self.history, self.db = engine, lease, history, db
        self.pipeline = pipeline  # named by the run's log lines and its span
        # `name` says whose run it is in the log ("sync", "replay"), on that module's logger.
        self.secrets, self.log, self.name, self.keep_lease = secrets, log, name, keep_lease

    def run(
        self,
        result: SyncResult,
        prepare: Callable[[], bool],
        work: Work,
        range_from: datetime | None = None,
        range_to: datetime | None = None,
        report: Callable[[SyncResult], None] = lambda result: None,
    ) -> None:
        """Run `work` under the lease as the run `result` describes; `prepare` returning False ends it
        before the lease is taken (nothing to do). Fills in the result, then `report`s it while the run's
        log context still holds, so its outcome line names the run; never raises for a failure."""
        started = time.monotonic()
        run_logs = enter_run(result, self.pipeline)  # every line of this run (and of the threads it starts) names it
        # The run's span: its pages and database and engine calls beneath it, in this thread and its readers'.
        with tracer.start_as_current_span("rtarf.run") as span:
            try:
                self._run(result, prepare, work, range_from, range_to, report, started)
            finally:
                describe_run(span, result, self.pipeline)
                leave_run(run_logs)

    def _run(
        self,
        result: SyncResult,
        prepare: Callable[[], bool],
        work: Work,
        range_from: datetime | None,
        range_to: datetime | None,
        report: Callable[[SyncResult], None],
        started: float,
    ) -> None:
        fence = None
        try:
            if prepare():
                fence = self._begin(result, range_from, range_to)
                if fence is not None:
                    with LeaseKeeper(self.engine, self.lease, fence, running=self.keep_lease) as keeper:
                        work(fence, keeper)
        except Exception as error:  # a run reports every failure, never raises
            if not isinstance(error, (RtarfSyncError, sa.exc.DBAPIError)):
                self.log.exception("%s run failed unexpectedly", self.name)
            result.fail(error, self.secrets())
        finally:
            result.finished_at = datetime.now(timezone.utc)
            result.duration_seconds = time.monotonic() - started
            if fence is not None:
                self._close(result, fence)
            report(result)

    def _begin(self, result: SyncResult, range_from: datetime | None, range_to: datetime | None) -> Fence | None:
        """Take the lease and record the run's start; None (the run skipped) when another owner holds it."""
        owner = owner_id()
        got = self.db(lambda: take(self.engine, self.lease, owner), "acquire lease")
        if isinstance(got, Holder):
            result.status = SKIPPED
            result.error = got.describe(self.lease.name)
            self.log.info("%s skipped: %s", self.name.capitalize(), result.error)
            return None
        try:
            result.run_id = begin_run(self.history, self.db, result, owner, range_from, range_to)
        except BaseException:
            release_now(self.engine, self.lease, got, self.db)  # not left blocking others for a TTL
            raise
        return got

    def _close(self, result: SyncResult, fence: Fence) -> None:
        """Record the run's end and give the lease back; a failure is logged (the lease then expires)."""
        try:
            self.db(lambda: self.history.finish(result), "record run end")
            self.db(lambda: release(self.engine, self.lease, fence), "release lease")
        except Exception as error:  # noqa: BLE001 - the lease expires on its own
            self.log.warning(
                "could not record the end of %s run %s: %s",
                self.name,
                result.run_id,
                redact(str(error).splitlines()[0], self.secrets()),
            )
