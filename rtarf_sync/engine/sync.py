"""The sync service: copy new and changed events from the engine into PostgreSQL.

`SyncService.run()` takes the lease, reads the window [stored cursor - overlap,
now - settle] page by page from a point in time (or scroll), and commits each
page in one transaction with the cursor. It never raises for a failed run: it
returns a SyncResult whose status says what happened. It imports neither Flask
nor APScheduler.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from functools import cached_property
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator, TypeVar

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.clients import Json, SearchApi, build_api
from rtarf_sync.engine.documents import EventRow, Rejected, engine_time as iso, to_row
from rtarf_sync.engine.errors import PitUnsupported, RtarfSyncError, RunInterrupted, TransientError, redact
from rtarf_sync.engine.lease import Fence, Holder, Lease
from rtarf_sync.engine.prefetch import Prefetch
from rtarf_sync.engine.reader import PitReader, ReadPlan, ScrollReader
from rtarf_sync.engine.renewal import LeaseKeeper
from rtarf_sync.engine.result import FAILED, PARTIAL, SKIPPED, SUCCESS, SyncResult
from rtarf_sync.engine.retry import RetryPolicy, with_retry
from rtarf_sync.engine.run_start import begin_run, release_now
from rtarf_sync.engine.runs import RunHistory
from rtarf_sync.engine.sink import COUNTERS, PageCounts, PostgresSink, is_transient
from rtarf_sync.engine.tables import build_tables, create_tables
from rtarf_sync.logs import secret_values

log = logging.getLogger("rtarf_sync.sync")  # the name log filters know
T = TypeVar("T")
PROGRESS_SECONDS = 10.0


def _delta(before: PageCounts, after: PageCounts) -> PageCounts:
    return PageCounts(**{name: getattr(after, name) - getattr(before, name) for name in COUNTERS})


class SyncService:
    """Copies one index setting into one target table; safe to call from any thread."""

    def __init__(self, settings: Settings, *, api: SearchApi | None = None,
                 engine: sa.Engine | None = None) -> None:
        self.settings = settings
        self.tables = build_tables(settings.table)
        self.retry = RetryPolicy(settings.max_retries, min(0.5, settings.retry_max_seconds),
                                 settings.retry_max_seconds)
        self.lease = Lease(self.tables.lease, settings.table, settings.lease_ttl_seconds)
        self._api, self._engine = api, engine
        self._stop = threading.Event()
        self._tables_ready = False
        self._build_lock = threading.Lock()

    # -- resources -------------------------------------------------------------------------

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine of the target database, built on first use."""
        with self._build_lock:
            if self._engine is None:
                self._engine = sa.create_engine(
                    self.settings.database_url.reveal(), pool_pre_ping=True, pool_size=2, max_overflow=3,
                    connect_args={"connect_timeout": 10, "application_name": "rtarf-event-sync"})
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
        return PostgresSink(self.engine, self.tables, self.lease, self.settings.es_index)

    @cached_property
    def history(self) -> RunHistory:
        """The run history rows of this target."""
        return RunHistory(self.engine, self.tables, self.settings.es_index)

    def secrets(self) -> list[str | None]:
        """Every secret value, for scrubbing messages."""
        return sorted(secret_values(self.settings), key=len, reverse=True)

    def _db(self, call: Callable[[], T], what: str) -> T:
        """Run a database step, retrying lost connections, deadlocks and serialization failures."""

        def attempt() -> T:
            try:
                return call()
            except sa.exc.DBAPIError as error:
                if is_transient(error):
                    raise TransientError(f"PostgreSQL: {str(error.orig or error).strip().splitlines()[0]}") from None
                raise

        return with_retry(attempt, self.retry, what)

    def ensure_tables(self) -> None:
        """Create the target and state tables if they are missing."""
        if not self._tables_ready:
            self._db(lambda: create_tables(self.engine, self.tables), "create tables")
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
        except Exception as error:  # noqa: BLE001
            status["database"] = redact(f"{type(error).__name__}: {str(error).splitlines()[0]}",
                                        self.secrets())[:300]
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

    def run(self, trigger: str = "manual") -> SyncResult:
        """Run one sync and report what it did; never raises for a failed run."""
        result = SyncResult(trigger=trigger, started_at=datetime.now(timezone.utc))
        started = time.monotonic()
        fence: Fence | None = None
        try:
            self.ensure_tables()
            fence = self._acquire(result)
            if fence is not None:
                with LeaseKeeper(self.engine, self.lease, fence) as keeper:
                    self._run_pages(result, fence, keeper)
                result.status = PARTIAL if result.failed else SUCCESS
        except RtarfSyncError as error:
            self._fail(result, str(error))
        except sa.exc.DBAPIError as error:
            self._fail(result, f"PostgreSQL: {str(error.orig or error).strip().splitlines()[0]}")
        except Exception as error:  # noqa: BLE001 - a run reports every failure, never raises
            log.exception("sync run failed unexpectedly")
            self._fail(result, f"{type(error).__name__}: {error}")
        finally:
            result.finished_at = datetime.now(timezone.utc)
            result.duration_seconds = time.monotonic() - started
            self._close_run(result, fence)
        return result

    def _fail(self, result: SyncResult, message: str) -> None:
        result.status = FAILED
        result.error = redact(message, self.secrets())

    def _acquire(self, result: SyncResult) -> Fence | None:
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        def attempt() -> Fence | Holder:
            with self.engine.begin() as connection:
                return self.lease.acquire(connection, owner)

        got = self._db(attempt, "acquire lease")
        if isinstance(got, Holder):
            result.status = SKIPPED
            result.error = (f"another sync holds the lease on {self.settings.table} "
                            f"({got.owner}, until {got.expires_at.isoformat()})")
            log.info("Sync skipped: %s", result.error)
            return None
        try:
            result.run_id = begin_run(self.history, self._db, result, owner)
        except BaseException:
            release_now(self.engine, self.lease, got, self._db)  # not left blocking others for a TTL
            raise
        return got

    def _plan(self, sink: PostgresSink) -> ReadPlan:
        s = self.settings
        stored = self._db(sink.load_cursor, "load cursor")
        window: Json = {"lte": iso(datetime.now(timezone.utc) - timedelta(seconds=s.settle_seconds))}
        if stored is not None:
            window["gte"] = iso(stored - timedelta(seconds=s.overlap_seconds))
        # Documents without the cursor field are read too, so they are set aside visibly
        # instead of being skipped in silence.
        query = {"bool": {"should": [{"range": {s.cursor_field: window}},
                                     {"bool": {"must_not": [{"exists": {"field": s.cursor_field}}]}}],
                          "minimum_should_match": 1}}
        return ReadPlan(s.es_index, query, s.cursor_field, s.batch_size, s.pit_keep_alive)

    def _pages(self, plan: ReadPlan, result: SyncResult) -> Iterator[list[Json]]:
        mode = self.settings.read_mode
        if mode in ("auto", "pit"):
            try:
                with PitReader(self.api, plan, self.retry, on_reopen=result.warnings.append) as reader:
                    result.read_mode = reader.mode
                    yield from reader.pages()
                return
            except PitUnsupported:
                if mode == "pit":
                    raise
                log.warning("the engine has no point in time; reading with scroll")
        with ScrollReader(self.api, plan, self.retry) as scroll:
            result.read_mode = scroll.mode
            yield from scroll.pages()

    def _run_pages(self, result: SyncResult, fence: Fence, keeper: LeaseKeeper | None = None) -> None:
        sink, history = self.sink, self.history
        result.engine = self.api.kind
        log.info("Starting RTARF event sync from %s...", "OpenSearch" if result.engine == "opensearch"
                 else "Elasticsearch")
        # The reader thread also turns hits into rows, while this thread waits for PostgreSQL.
        pages = Prefetch(self._rows(self._plan(sink), result), depth=2)
        reported = time.monotonic()
        try:
            for page_no, (rows, rejects) in enumerate(pages, start=1):
                if self._stop.is_set():
                    raise RunInterrupted("interrupted by shutdown; the next run resumes from the stored cursor")
                if keeper is not None:
                    keeper.check()
                counts = self._commit_page(sink, history, rows, rejects, fence, result, page_no)
                result.add(**vars(counts))
                log.debug("page %d committed: %s", page_no, counts)
                reported = self._report_progress(result, reported)
        finally:
            pages.close()
        stored = self._db(sink.load_cursor, "load cursor")
        result.cursor = iso(stored) if stored is not None else None

    def _rows(self, plan: ReadPlan, result: SyncResult) -> Iterator[tuple[list[EventRow], list[Rejected]]]:
        """Pages as rows and rejects; closing this closes the reader's context."""
        pages = self._pages(plan, result)
        try:
            for hits in pages:
                yield self._split(hits)
        finally:
            pages.close()

    @staticmethod
    def _report_progress(result: SyncResult, last: float) -> float:
        """Log a progress line at most every PROGRESS_SECONDS, so a long first sync can be followed."""
        now = time.monotonic()
        if now - last < PROGRESS_SECONDS:
            return last
        log.info("Sync in progress: %d events processed in %d pages (%d inserted, %d updated)",
                 result.total_processed, result.pages, result.inserted, result.updated)
        return now

    def _split(self, hits: list[Json]) -> tuple[list[EventRow], list[Rejected]]:
        rows: list[EventRow] = []
        rejects: list[Rejected] = []
        for hit in hits:
            converted = to_row(hit, self.settings.cursor_field, self.settings.max_document_bytes)
            (rows if isinstance(converted, EventRow) else rejects).append(converted)  # type: ignore[arg-type]
        return rows, rejects

    def _commit_page(self, sink: PostgresSink, history: RunHistory, rows: list[EventRow],
                     rejects: list[Rejected], fence: Fence, result: SyncResult, page_no: int) -> PageCounts:
        before = PageCounts(**{name: getattr(result, name) for name in COUNTERS})
        attempts = 0

        def attempt() -> PageCounts:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                # The last commit may have landed before its answer was lost: never commit a page twice.
                pages, totals = self._db(lambda: history.committed(result.run_id or 0), "check page")
                if pages >= page_no:
                    return _delta(before, totals)
            return sink.write_page(rows, rejects, fence, result.run_id or 0, page_no)

        return with_retry(attempt, self.retry, f"write page {page_no}")

    def _close_run(self, result: SyncResult, fence: Fence | None) -> None:
        if fence is not None:
            try:
                self._db(lambda: self.history.finish(result), "record run end")

                def release() -> None:
                    with self.engine.begin() as connection:
                        self.lease.release(connection, fence)

                self._db(release, "release lease")
            except Exception as error:  # noqa: BLE001 - the lease expires on its own
                log.warning("could not record the end of run %s: %s", result.run_id,
                            redact(str(error).splitlines()[0], self.secrets()))
        if result.status == FAILED:
            log.error("Sync failed: %s", result.error)
        elif result.status in (SUCCESS, PARTIAL):
            log.info("Sync completed %s: %d events processed, %d inserted, %d updated%s",
                     "successfully" if result.status == SUCCESS else "partially", result.total_processed,
                     result.inserted, result.updated,
                     f", {result.failed} set aside" if result.failed else "")
