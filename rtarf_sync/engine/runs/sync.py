"""The sync service: copy new and changed events from the engine into PostgreSQL.

`SyncService.run()` takes the lease, reads the window of its mode (plan.py:
incremental from the stored cursor - overlap, full, or a range) page by page
from a point in time (sliced for full and range runs, slices.py) or a scroll,
and commits each page in one transaction with the cursor (pages.py). Full and
range runs then reconcile deletes (reconcile.py). It never raises for a failed
run: it returns a SyncResult whose status says what happened. The service
also owns what its runs share: the engine client, the connection pool, the
sink, the run history and the retry policy. It imports neither Flask nor
APScheduler.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cached_property
from datetime import datetime, timezone
from typing import Callable, TypeVar

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.source.clients import SearchApi, build_api
from rtarf_sync.engine.errors import redact, transient_database_error
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.lease import Lease
from rtarf_sync.engine.runs.plan import INCREMENTAL, RunScope
from rtarf_sync.engine.runs.renewal import LeaseKeeper
from rtarf_sync.engine.runs.result import FAILED, PARTIAL, SUCCESS, SyncResult
from rtarf_sync.engine.retry import RetryPolicy, with_retry
from rtarf_sync.engine.runs.lifecycle import RunLifecycle
from rtarf_sync.engine.runs.pages import RunPages
from rtarf_sync.engine.runs.records import RunHistory
from rtarf_sync.engine.target.sink import PostgresSink
from rtarf_sync.engine.source.filters import check_source_filter
from rtarf_sync.engine.target.columns.schema import apply_columns
from rtarf_sync.engine.target.columns.column_set import check_columns
from rtarf_sync.engine.target.partitions import check_partitioning
from rtarf_sync.engine.target.tables import build_tables, create_tables
from rtarf_sync.logs import secret_values

log = logging.getLogger("rtarf_sync.sync")  # the name log filters know
T = TypeVar("T")
PageObserver = Callable[[str, float], None]  # (stage "read" or "write", seconds)


class SyncService:
    """Copies one index setting into one target table; safe to call from any thread."""

    def __init__(
        self,
        settings: Settings,
        *,
        api: SearchApi | None = None,
        engine: sa.Engine | None = None,
        renew_lease: bool = True,
    ) -> None:
        self.settings = settings
        # False only in the tests that prove page commits alone keep the lease (the thread held back).
        self.renew_lease = renew_lease
        check_columns(settings.columns)
        check_source_filter(settings)
        check_partitioning(settings)
        self.tables = build_tables(settings.table, settings.columns, settings.partition)
        self._stop = threading.Event()
        self.retry = RetryPolicy(
            settings.max_retries, min(0.5, settings.retry_max_seconds), settings.retry_max_seconds, self._stop
        )
        self.lease = Lease(self.tables.lease, settings.table, settings.lease_ttl_seconds)
        self._api, self._engine = api, engine
        self._tables_ready = False
        self._build_lock = threading.Lock()
        self._page_observers: list[PageObserver] = []

    def add_page_observer(self, observer: PageObserver) -> None:
        """Call `observer(stage, seconds)` after each page is read and written (metrics); it must be quick."""
        self._page_observers.append(observer)

    @property
    def observed(self) -> bool:
        """Whether anyone watches page timings (so reads are timed at all)."""
        return bool(self._page_observers)

    def observe(self, stage: str, began: float) -> None:
        """Tell the page observers that `stage` of a page took since `began` (perf_counter seconds)."""
        seconds = time.perf_counter() - began
        for observer in self._page_observers:
            try:
                observer(stage, seconds)
            except Exception:  # an observer must never break a run
                log.exception("a page observer failed")

    # -- resources -------------------------------------------------------------------------

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine of the target database, built on first use."""
        with self._build_lock:
            if self._engine is None:
                self._engine = sa.create_engine(
                    self.settings.database_url.reveal(),
                    pool_pre_ping=True,
                    pool_size=2,
                    max_overflow=3,
                    connect_args={"connect_timeout": 10, "application_name": "rtarf-event-sync"},
                )
            return self._engine

    @property
    def api(self) -> SearchApi:
        """The engine client, built (and the engine detected) on first use."""
        with self._build_lock:
            if self._api is None:
                self._api = build_api(self.settings)
            return self._api

    @cached_property
    def sink(self) -> PostgresSink:
        """Where pages are written."""
        return PostgresSink(self.engine, self.tables, self.lease.ttl, self.settings.es_index)

    @cached_property
    def history(self) -> RunHistory:
        """The run history rows of this target."""
        return RunHistory(self.engine, self.tables, self.settings.es_index)

    def secrets(self) -> list[str]:
        """Every secret value, for scrubbing messages."""
        return sorted(secret_values(self.settings), key=len, reverse=True)

    def db(self, call: Callable[[], T], what: str) -> T:
        """Run a database step, retrying lost connections, deadlocks and serialization failures."""

        def attempt() -> T:
            try:
                return call()
            except sa.exc.DBAPIError as error:
                if (transient := transient_database_error(error)) is not None:
                    raise transient from None
                raise

        return with_retry(attempt, self.retry, what)

    def ensure_tables(self) -> None:
        """Create the target and state tables if they are missing."""
        if not self._tables_ready:
            self.db(lambda: create_tables(self.engine, self.tables), "create tables")
            self.db(lambda: apply_columns(self.engine, self.tables), "add typed columns")
            self._tables_ready = True

    def check_ready(self) -> dict[str, str | None]:
        """Whether the engine and the database answer: None when reachable, else why not."""
        status: dict[str, str | None] = {"engine": None, "database": None}
        try:
            self.api.info()
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            status["engine"] = redact(f"{type(error).__name__}: {error}", self.secrets())[:300]
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            status["database"] = redact(f"{type(error).__name__}: {str(error).splitlines()[0]}", self.secrets())[:300]
        return status

    def request_stop(self) -> None:
        """Ask a running run to stop after its current page (graceful shutdown)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether a graceful shutdown asked the running run to stop."""
        return self._stop.is_set()

    def close(self) -> None:
        """Release the engine client and the connection pool."""
        if self._api is not None:
            self._api.close()
        if self._engine is not None:
            self._engine.dispose()

    # -- one run ---------------------------------------------------------------------------

    def run(
        self,
        trigger: str = "manual",
        mode: str = INCREMENTAL,
        start: datetime | None = None,
        end: datetime | None = None,
        force: bool = False,
    ) -> SyncResult:
        """Run one sync and report what it did; never raises for a failed run.

        `mode` is incremental, full or range; a range reads [start, end) (aware datetimes);
        `force` lets a reconciliation delete past the safety valve. Bad arguments raise ValueError.
        """
        scope = RunScope.build(self.settings, mode, start, end)
        result = SyncResult(trigger=trigger, mode=mode, started_at=datetime.now(timezone.utc))

        def prepare() -> bool:
            self.ensure_tables()
            return True

        def work(fence: Fence, keeper: LeaseKeeper) -> None:
            RunPages(self, result, fence).run(scope, force, keeper)
            result.status = PARTIAL if result.failed else SUCCESS

        self.lifecycle().run(result, prepare, work, scope.start, scope.end, report=self._log_end)
        return result

    def lifecycle(self, name: str = "sync", logger: logging.Logger = log) -> RunLifecycle:
        """The lease and run record around a run of this target (a sync, a replay)."""
        return RunLifecycle(
            self.engine,
            self.lease,
            self.history,
            self.db,
            self.secrets,
            logger,
            name,
            keep_lease=self.renew_lease,
            pipeline=self.settings.pipeline,
        )

    @staticmethod
    def _log_end(result: SyncResult) -> None:
        if result.status == FAILED:
            log.error("Sync failed: %s", result.error)
        elif result.status in (SUCCESS, PARTIAL):
            log.info(
                "Sync completed %s: %d events processed, %d inserted, %d updated%s",
                "successfully" if result.status == SUCCESS else "partially",
                result.total_processed,
                result.inserted,
                result.updated,
                f", {result.failed} set aside" if result.failed else "",
            )
