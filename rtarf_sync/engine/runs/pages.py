"""One run's pages: read the run's scope, commit each page exactly once, then finish what the read began.

    RunPages(service, result, fence).run(scope, force, keeper)

The read (source/slices.py) hands over converted pages, read ahead on other threads; each page
is committed in one transaction with the cursor (target/sink.py), and a page whose commit
answer was lost is never committed twice (the run's row says how many pages landed). Full and
range runs also reconcile deletes (checks/reconcile.py); after the read the cursor of a sliced
read moves once, and a run that inserted a large share of the table analyses it.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING

from opentelemetry import trace

from rtarf_sync.engine.checks.reconcile import Reconciliation
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.retry import with_retry
from rtarf_sync.engine.runs.overlap import narrow_overlap
from rtarf_sync.engine.runs.plan import RunScope
from rtarf_sync.engine.runs.renewal import LeaseKeeper
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.engine.source.metadata import STORED_SHARE, MetadataChoice
from rtarf_sync.engine.source.slices import read_pages
from rtarf_sync.engine.source.timing import TimedSearch
from rtarf_sync.engine.target.bookkeeping import COUNTERS
from rtarf_sync.engine.target.cursor_store import latest, newest_of_page
from rtarf_sync.engine.target.documents import Deferred, EventRow, PageConverter, Rejected, engine_time
from rtarf_sync.engine.target.sink import PageCounts
from rtarf_sync.engine.target.statistics import refresh_statistics
from rtarf_sync.engine.errors import RunInterrupted
from rtarf_sync.tracing import tracer

if TYPE_CHECKING:
    from rtarf_sync.engine.runs.sync import SyncService

log = logging.getLogger("rtarf_sync.sync")  # the name log filters know
PROGRESS_SECONDS = 10.0
Page = tuple[list[EventRow], list[Rejected]] | Deferred  # what PageConverter hands the writer


def _delta(before: PageCounts, after: PageCounts) -> PageCounts:
    return PageCounts(**{name: getattr(after, name) - getattr(before, name) for name in COUNTERS})


class RunPages:
    """The pages of one run of `service`, counted into `result`, every commit fenced by `fence`."""

    def __init__(self, service: SyncService, result: SyncResult, fence: Fence) -> None:
        self.service, self.result, self.fence = service, result, fence

    def run(self, scope: RunScope, force: bool, keeper: LeaseKeeper) -> None:
        """Read and commit the scope; reconcile its deletes where the mode does; record the cursor reached."""
        service, result, fence = self.service, self.result, self.fence
        s = service.settings
        result.engine = service.api.kind
        log.info(
            "Starting RTARF event sync (%s) from %s...",
            scope.mode,
            "OpenSearch" if result.engine == "opensearch" else "Elasticsearch",
        )
        slices = s.reconcile.slices if scope.reconciles else 1
        deletes = self._reconciliation(scope) if scope.reconciles else None
        try:
            # Pages of parallel slices come out of cursor order: the cursor moves once, at the end.
            highest = self._copy_pages(scope, slices, deletes, keeper)
            if scope.moves_cursor and slices > 1 and highest is not None:
                service.db(lambda: service.sink.move_cursor(highest, fence, result.run_id or 0), "move cursor")
            if deletes is not None:
                result.deleted = service.db(lambda: deletes.finish(s.reconcile.delete_mode, force), "reconcile deletes")
            service.db(
                lambda: refresh_statistics(service.engine, service.tables, result.inserted), "analyse the target"
            )
        finally:
            if deletes is not None:
                deletes.close()
        stored = service.db(service.sink.load_cursor, "load cursor")
        result.cursor = engine_time(stored) if stored is not None else None

    def _copy_pages(
        self, scope: RunScope, slices: int, deletes: Reconciliation | None, keeper: LeaseKeeper
    ) -> datetime | None:
        """Read the scope and commit it page by page; return the newest cursor value read."""
        service, result = self.service, self.result
        sink, s = service.sink, service.settings
        stored = service.db(sink.load_cursor, "load cursor")
        service.db(sink.begin_run, "look at the target")
        narrowed = narrow_overlap(service, scope, stored, result)
        plan = scope.read_plan(s, stored, narrowed.ranges if narrowed is not None else None)
        per_page = scope.moves_cursor and slices == 1
        highest: datetime | None = None
        api = TimedSearch(service.api, service.observe) if service.observed else service.api
        convert = PageConverter(s.cursor_field, s.max_document_bytes, service.tables.columns)
        # The first page is read metadata first where the run starts below what is stored (an overlap,
        # a full or range run after a first load); from then on, as the pages written say (metadata.py).
        # A narrowed overlap says how much of what it still reads is stored.
        choice = MetadataChoice(
            narrowed.stored_share >= STORED_SHARE and bool(narrowed.differing)
            if narrowed is not None
            else stored is not None and (scope.reconciles or s.overlap_seconds > 0)
        )
        pages = read_pages(api, plan, service.retry, s.read_mode, slices, convert, result, choice)
        try:
            reported = time.monotonic()
            for page_no, (page, page_span) in enumerate(pages, start=1):
                # The page's span (begun by its reader, its read beneath) holds the write and ends with it.
                with trace.use_span(page_span, end_on_exit=True):
                    page_span.set_attribute("rtarf.page.number", page_no)
                    if service.stopping:
                        raise RunInterrupted("interrupted by shutdown; the next run resumes from the stored cursor")
                    keeper.check()
                    if result.reopens:
                        sink.read_twice()
                    began = time.perf_counter()
                    with tracer.start_as_current_span("rtarf.page.write"):
                        counts, newest = self._commit_page(
                            page, convert, page_no, per_page, deletes.seen if deletes else None
                        )
                    service.observe("write", began)
                result.add(**vars(counts))
                choice.record(counts.unchanged, sum(vars(counts).values()))
                convert.convert_ahead = counts.inserted + counts.updated > 0
                highest = latest(highest, newest)
                reported = self._report_progress(reported)
        finally:
            pages.close()
            sink.read_twice()  # what other writers of this sink do (repair, replay) looks every key up
        return highest

    def _reconciliation(self, scope: RunScope) -> Reconciliation | None:
        """The run's delete reconciliation, its key table ready; None when RTARF_DELETE_MODE=off."""
        service = self.service
        if service.settings.reconcile.delete_mode == "off":
            return None
        deletes = Reconciliation(
            service.engine,
            service.tables,
            service.api,
            service.settings,
            scope,
            self.result.run_id or 0,
            service.retry,
            service.lease,
            self.fence,
        )
        service.db(deletes.open, "create the run's key table")
        return deletes

    def _report_progress(self, last: float) -> float:
        """Log a progress line at most every PROGRESS_SECONDS, so a long first sync can be followed."""
        now = time.monotonic()
        if now - last < PROGRESS_SECONDS:
            return last
        result = self.result
        log.info(
            "Sync in progress: %d events processed in %d pages (%d inserted, %d updated)",
            result.total_processed,
            result.pages,
            result.inserted,
            result.updated,
        )
        return now

    def _commit_page(
        self, page: Page, convert: PageConverter, page_no: int, advance_cursor: bool, seen: str | None
    ) -> tuple[PageCounts, datetime | None]:
        """Commit a page exactly once; return its counts and its newest cursor value."""
        service, result, fence = self.service, self.result, self.fence
        sink, history = service.sink, service.history
        before = PageCounts(**{name: getattr(result, name) for name in COUNTERS})
        attempts = 0

        def attempt() -> tuple[PageCounts, datetime | None]:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                # The last commit may have landed before its answer was lost: never commit a page twice.
                pages, totals = service.db(lambda: history.committed(result.run_id or 0), "check page")
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

        return with_retry(attempt, service.retry, f"write page {page_no}")
