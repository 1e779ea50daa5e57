"""Where a run's pages come from: one point in time, several slices of one, or a scroll.

    read_pages(...)  ->  Prefetch(one stream)            slices == 1, or no point in time
                     ->  SlicedPages(n readers, 1 PIT)    slices > 1 (full and range runs)

Either way the caller iterates converted pages and calls `close()`. A sliced read
opens one point in time, reads it with `n` threads, each asking for its own
`slice` (`{"id": i, "max": n}`), and hands the pages over through one bounded
queue, so memory stays at a few pages per slice. Slices share nothing but the
queue; the point in time is closed after every thread has ended, errors included.
Pages arrive out of cursor order, which is why a sliced run moves the stored
cursor only once its whole read is done (sync.py).
"""

from __future__ import annotations

import logging
import queue
import threading
from contextvars import copy_context
from typing import Any, Callable, Generator, Generic, Iterator, Protocol, Sequence, TypeVar, cast

from rtarf_sync.engine.source.clients import SearchApi
from rtarf_sync.engine.hits import AnyHit
from rtarf_sync.engine.errors import PitUnsupported
from rtarf_sync.tracing import traced_pages
from rtarf_sync.engine.source.prefetch import Prefetch, put_until_stopped
from rtarf_sync.engine.source.metadata import MetadataChoice
from rtarf_sync.engine.source.reader import PitReader, ReadPlan, ScrollReader, _quietly
from rtarf_sync.engine.retry import RetryPolicy, with_retry

log = logging.getLogger("rtarf_sync.reader")  # the name log filters know
T = TypeVar("T")
_DONE = object()


class ReadLog(Protocol):
    """Where a read notes how it read and what it warns of (a run's SyncResult)."""

    read_mode: str | None
    warnings: list[str]

    def reopened(self, note: str) -> None:
        """The point in time was reopened (`note` says where): a document may now be read twice."""


def single_stream(
    api: SearchApi,
    plan: ReadPlan,
    retry: RetryPolicy,
    read_mode: str,
    result: ReadLog,
    choice: MetadataChoice | None = None,
    defer_close: Callable[[Callable[[], None]], None] | None = None,
) -> Generator[Sequence[AnyHit], None, None]:
    """Pages of one point in time (metadata first where `choice` says), or of a scroll where the engine has none."""
    if read_mode in ("auto", "pit"):
        try:
            with PitReader(
                api, plan, retry, on_reopen=result.reopened, choice=choice, defer_close=defer_close
            ) as reader:
                result.read_mode = reader.mode
                yield from reader.pages()
            return
        except PitUnsupported:
            if read_mode == "pit":
                raise
            log.warning("the engine has no point in time; reading with scroll")
    with ScrollReader(api, plan, retry) as scroll:
        result.read_mode = scroll.mode
        yield from scroll.pages()


def _converted(pages: Generator[Sequence[AnyHit], None, None], convert: Callable[[Sequence[AnyHit]], T]) -> Iterator[T]:
    """Converted pages; closing this closes the reader's context."""
    try:
        for hits in pages:
            yield convert(hits)
    finally:
        pages.close()


class SlicedPages(Generic[T]):
    """Read `slices` slices of one point in time in parallel; iterate their pages as they come."""

    def __init__(
        self,
        api: SearchApi,
        plan: ReadPlan,
        retry: RetryPolicy,
        pit_id: str,
        slices: int,
        convert: Callable[[Sequence[AnyHit]], T],
        choice: MetadataChoice | None = None,
    ) -> None:
        self.api, self.pit_id, self.choice = api, pit_id, choice
        self._queue: queue.Queue[object] = queue.Queue(maxsize=slices)
        self._stop = threading.Event()
        # One copy of the context each (a context runs in one thread at a time): their lines name the run.
        self._threads = [
            threading.Thread(
                target=copy_context().run,
                args=(self._produce, plan, retry, (i, slices), convert),
                name=f"rtarf-slice-{i}",
                daemon=True,
            )
            for i in range(slices)
        ]
        for thread in self._threads:
            thread.start()

    def _put(self, item: object) -> bool:
        return put_until_stopped(self._queue, item, self._stop)

    def _produce(
        self, plan: ReadPlan, retry: RetryPolicy, slice_of: tuple[int, int], convert: Callable[[Sequence[AnyHit]], T]
    ) -> None:
        try:
            with PitReader(self.api, plan, retry, pit_id=self.pit_id, slice_of=slice_of, choice=self.choice) as reader:
                for traced in traced_pages(convert(hits) for hits in reader.pages()):
                    if not self._put(traced):
                        return
            self._put(_DONE)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, who raises it
            self._put(error)

    def __iter__(self) -> Iterator[T]:
        done = 0
        while done < len(self._threads):
            item = self._queue.get()
            if item is _DONE:
                done += 1
                continue
            if isinstance(item, BaseException):
                raise item
            yield cast(T, item)  # neither the end mark nor an error: a converted page

    def close(self) -> None:
        """Stop every slice, wait for the threads, close the point in time."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        _quietly(lambda: self.api.close_pit(self.pit_id), "close point in time")


def read_pages(
    api: SearchApi,
    plan: ReadPlan,
    retry: RetryPolicy,
    read_mode: str,
    slices: int,
    convert: Callable[[Sequence[AnyHit]], T],
    result: ReadLog,
    choice: MetadataChoice | None = None,
) -> Any:
    """Converted pages of a run, read ahead on other threads, each with its open page span (tracing.py);
    the caller ends the span once the page is written, and must `close()` the pages.

    With `choice`, each page of a point in time is read whole or metadata first as it says (metadata.py).
    """
    if slices > 1 and read_mode in ("auto", "pit"):
        try:
            pit_id = with_retry(lambda: api.open_pit(plan.index, plan.keep_alive), retry, "open point in time")
        except PitUnsupported:
            if read_mode == "pit":
                raise
            log.warning("the engine has no point in time; reading with one scroll instead of %d slices", slices)
        else:
            result.read_mode = PitReader.mode
            return SlicedPages(api, plan, retry, pit_id, slices, convert, choice)
    # The reader thread also turns hits into rows, while the caller waits for PostgreSQL.
    if choice is None:
        return Prefetch(traced_pages(_converted(single_stream(api, plan, retry, read_mode, result), convert)), depth=2)
    # The writer fetches sources from the point in time of pages read ahead: it stays open until `close()`.
    closes: list[Callable[[], None]] = []
    stream = single_stream(api, plan, retry, read_mode, result, choice, closes.append)
    return ClosingAfter(Prefetch(traced_pages(_converted(stream, convert)), depth=2), closes)


class ClosingAfter(Generic[T]):
    """Pages whose `close()` also runs `closes` once the reading thread has ended (the deferred point in time)."""

    def __init__(self, pages: Prefetch[T], closes: list[Callable[[], None]]) -> None:
        self.pages, self.closes = pages, closes

    def __iter__(self) -> Iterator[T]:
        return iter(self.pages)

    def close(self) -> None:
        """Stop the reading thread, then close what it left open."""
        self.pages.close()
        for close in self.closes:  # the thread has ended: nothing appends any more
            close()
