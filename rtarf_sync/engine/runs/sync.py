"""The sync service: copy new and changed events from the engine into PostgreSQL.

`SyncService.run()` takes the lease, reads the window of its mode (plan.py:
incremental from the stored cursor - overlap, full, or a range) page by page
from a point in time (sliced for full and range runs, slices.py) or a scroll,
and commits each page in one transaction with the cursor. Full and range runs
then reconcile deletes (reconcile.py). It never raises for a failed run: it
returns a SyncResult whose status says what happened. It imports neither Flask
nor APScheduler.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cached_property
from datetime import datetime, timezone
from typing import Callable, TypeVar

import sqlalchemy as sa
from opentelemetry import trace

from config import Settings
from rtarf_sync.engine.target.bookkeeping import COUNTERS
from rtarf_sync.engine.source.clients import SearchApi, build_api
from rtarf_sync.engine.target.documents import Deferred, EventRow, PageConverter, Rejected, engine_time
from rtarf_sync.engine.errors import RunInterrupted, redact, transient_database_error
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.lease import Lease
from rtarf_sync.engine.runs.plan import INCREMENTAL, RunScope
from rtarf_sync.engine.checks.reconcile import Reconciliation
from rtarf_sync.engine.runs.renewal import LeaseKeeper
from rtarf_sync.engine.runs.result import FAILED, PARTIAL, SUCCESS, SyncResult
from rtarf_sync.engine.retry import RetryPolicy, with_retry
from rtarf_sync.engine.runs.lifecycle import RunLifecycle
from rtarf_sync.engine.runs.records import RunHistory
from rtarf_sync.engine.target.cursor_store import latest, newest_of_page
from rtarf_sync.engine.target.sink import PageCounts, PostgresSink
from rtarf_sync.engine.source.metadata import STORED_SHARE, MetadataChoice
from rtarf_sync.engine.runs.overlap import narrow_overlap
from rtarf_sync.engine.source.slices import read_pages
from rtarf_sync.engine.source.filters import check_source_filter
from rtarf_sync.engine.target.column_schema import apply_columns
from rtarf_sync.engine.target.columns import check_columns
from rtarf_sync.engine.target.partitions import check_partitioning
from rtarf_sync.engine.target.statistics import refresh_statistics
from rtarf_sync.engine.target.tables import build_tables, create_tables
from rtarf_sync.engine.source.timing import TimedSearch
from rtarf_sync.logs import secret_values
from rtarf_sync.tracing import tracer

log = logging.getLogger("rtarf_sync.sync")  # the name log filters know
T = TypeVar("T")
PROGRESS_SECONDS = 10.0
PageObserver = Callable[[str, float], None]  # (stage "read" or "write", seconds)
Page = tuple[list[EventRow], list[Rejected]] | Deferred  # what PageConverter hands the writer


def _delta(before: PageCounts, after: PageCounts) -> PageCounts:
    return PageCounts(**{name: getattr(after, name) - getattr(before, name) for name in COUNTERS})


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
        self.retry = RetryPolicy(settings.max_retries, min(0.5, settings.retry_max_seconds), settings.retry_max_seconds)
        self.lease = Lease(self.tables.lease, settings.table, settings.lease_ttl_seconds)
        self._api, self._engine = api, engine
        self._stop = threading.Event()
        self._tables_ready = False
        self._build_lock = threading.Lock()
        self._page_observers: list[PageObserver] = []

    def add_page_observer(self, observer: PageObserver) -> None:
        """Call `observer(stage, seconds)` after each page is read and written (metrics); it must be quick."""
        self._page_observers.append(observer)

    def _observe(self, stage: str, began: float) -> None:
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

    def _db(self, call: Callable[[], T], what: str) -> T:
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
            self._db(lambda: create_tables(self.engine, self.tables), "create tables")
            self._db(lambda: apply_columns(self.engine, self.tables), "add typed columns")
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
            self._run_pages(result, fence, scope, force, keeper)
            result.status = PARTIAL if result.failed else SUCCESS

        self.lifecycle().run(result, prepare, work, scope.start, scope.end, report=self._log_end)
        return result

    def lifecycle(self, name: str = "sync", logger: logging.Logger = log) -> RunLifecycle:
        """The lease and run record around a run of this target (a sync, a replay)."""
        return RunLifecycle(
            self.engine,
            self.lease,
            self.history,
            self._db,
            self.secrets,
            logger,
            name,
            keep_lease=self.renew_lease,
            pipeline=self.settings.pipeline,
        )

    def _run_pages(self, result: SyncResult, fence: Fence, scope: RunScope, force: bool, keeper: LeaseKeeper) -> None:
        s = self.settings
        result.engine = self.api.kind
        log.info(
            "Starting RTARF event sync (%s) from %s...",
            scope.mode,
            "OpenSearch" if result.engine == "opensearch" else "Elasticsearch",
        )
        slices = s.reconcile.slices if scope.reconciles else 1
        deletes = self._reconciliation(scope, result, fence) if scope.reconciles else None
        try:
            # Pages of parallel slices come out of cursor order: the cursor moves once, at the end.
            highest = self._copy_pages(result, fence, scope, slices, deletes, keeper)
            if scope.moves_cursor and slices > 1 and highest is not None:
                self._db(lambda: self.sink.move_cursor(highest, fence, result.run_id or 0), "move cursor")
            if deletes is not None:
                result.deleted = self._db(lambda: deletes.finish(s.reconcile.delete_mode, force), "reconcile deletes")
            self._db(lambda: refresh_statistics(self.engine, self.tables, result.inserted), "analyse the target")
        finally:
            if deletes is not None:
                deletes.close()
        stored = self._db(self.sink.load_cursor, "load cursor")
        result.cursor = engine_time(stored) if stored is not None else None

    def _copy_pages(
        self,
        result: SyncResult,
        fence: Fence,
        scope: RunScope,
        slices: int,
        deletes: Reconciliation | None,
        keeper: LeaseKeeper,
    ) -> datetime | None:
        """Read the scope and commit it page by page; return the newest cursor value read."""
        sink, history, s = self.sink, self.history, self.settings
        stored = self._db(sink.load_cursor, "load cursor")
        self._db(sink.begin_run, "look at the target")
        narrowed = narrow_overlap(self, scope, stored, result)
        plan = scope.read_plan(s, stored, narrowed.ranges if narrowed is not None else None)
        per_page = scope.moves_cursor and slices == 1
        highest: datetime | None = None
        api = TimedSearch(self.api, self._observe) if self._page_observers else self.api
        convert = PageConverter(s.cursor_field, s.max_document_bytes, self.tables.columns)
        # The first page is read metadata first where the run starts below what is stored (an overlap,
        # a full or range run after a first load); from then on, as the pages written say (metadata.py).
        # A narrowed overlap says how much of what it still reads is stored.
        choice = MetadataChoice(
            narrowed.stored_share >= STORED_SHARE and bool(narrowed.differing)
            if narrowed is not None
            else stored is not None and (scope.reconciles or s.overlap_seconds > 0)
        )
        pages = read_pages(api, plan, self.retry, s.read_mode, slices, convert, result, choice)
        try:
            reported = time.monotonic()
            for page_no, (page, page_span) in enumerate(pages, start=1):
                # The page's span (begun by its reader, its read beneath) holds the write and ends with it.
                with trace.use_span(page_span, end_on_exit=True):
                    page_span.set_attribute("rtarf.page.number", page_no)
                    if self._stop.is_set():
                        raise RunInterrupted("interrupted by shutdown; the next run resumes from the stored cursor")
                    keeper.check()
                    if result.reopens:
                        sink.read_twice()
                    began = time.perf_counter()
                    with tracer.start_as_current_span("rtarf.page.write"):
                        counts, newest = self._commit_page(
                            sink,
                            history,
                            page,
                            convert,
                            fence,
                            result,
                            page_no,
                            per_page,
                            deletes.seen if deletes else None,
                        )
                    self._observe("write", began)
                result.add(**vars(counts))
                choice.record(counts.unchanged, sum(vars(counts).values()))
                convert.convert_ahead = counts.inserted + counts.updated > 0
                highest = latest(highest, newest)
                reported = self._report_progress(result, reported)
        finally:
            pages.close()
            sink.read_twice()  # what other writers of this sink do (repair, replay) looks every key up
        return highest

    def _reconciliation(self, scope: RunScope, result: SyncResult, fence: Fence) -> Reconciliation | None:
        """The run's delete reconciliation, its key table ready; None when RTARF_DELETE_MODE=off."""
        if self.settings.reconcile.delete_mode == "off":
            return None
        deletes = Reconciliation(
            self.engine, self.tables, self.api, self.settings, scope, result.run_id or 0, self.retry, self.lease, fence
        )
        self._db(deletes.open, "create the run's key table")
        return deletes

    @staticmethod
    def _report_progress(result: SyncResult, last: float) -> float:
        """Log a progress line at most every PROGRESS_SECONDS, so a long first sync can be followed."""
        now = time.monotonic()
        if now - last < PROGRESS_SECONDS:
            return last
        log.info(
            "Sync in progress: %d events processed in %d pages (%d inserted, %d updated)",
            result.total_processed,
            result.pages,
            result.inserted,
            result.updated,
        )
        return now

    def _commit_page(
        self,
        sink: PostgresSink,
        history: RunHistory,
        page: Page,
        convert: PageConverter,
        fence: Fence,
        result: SyncResult,
        page_no: int,
        advance_cursor: bool,
        seen: str | None,
    ) -> tuple[PageCounts, datetime | None]:
        """Commit a page exactly once; return its counts and its newest cursor value."""
        before = PageCounts(**{name: getattr(result, name) for name in COUNTERS})
        attempts = 0

        def attempt() -> tuple[PageCounts, datetime | None]:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                # The last commit may have landed before its answer was lost: never commit a page twice.
                pages, totals = self._db(lambda: history.committed(result.run_id or 0), "check page")
                if pages >= page_no:
                    newest = sink.newest_stored(page.hits) if isinstance(page, Deferred) else newest_of_page(page[0])
                    return _delta(before, totals), newest
            if isinstance(page, Deferred):
                return sink.write_hits(
                    page.hits,
                    convert.convert_hits,
                    fence,
                    result.run_id or 0,
                    page_no,
                    advance_cursor=advance_cursor,
                    seen=seen,
                    fetch=page.fetch,
                )
            rows, rejects = page
            counts = sink.write_page(
                rows, rejects, fence, result.run_id or 0, page_no, advance_cursor=advance_cursor, seen=seen
            )
            return counts, newest_of_page(rows)

        return with_retry(attempt, self.retry, f"write page {page_no}")

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
