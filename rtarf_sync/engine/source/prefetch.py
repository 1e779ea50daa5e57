"""Read the next page while the current one is being written.

A producer thread iterates the page generator and hands pages over through a
queue of bounded size, so reading and writing overlap but memory stays at a
few pages whatever the index size. The producer owns the generator: it is the
only thread that advances or closes it, so the reader's context (point in
time or scroll) is always closed, errors included.
"""

from __future__ import annotations

import queue
import threading
from contextvars import copy_context
from typing import Generic, Iterator, TypeVar, cast

T = TypeVar("T")
_DONE = object()


def put_until_stopped(target: "queue.Queue[object]", item: object, stop: threading.Event) -> bool:
    """Put `item` on a bounded queue, giving up (False) once `stop` is set: a reader never blocks a close."""
    while not stop.is_set():
        try:
            target.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class Prefetch(Generic[T]):
    """Iterate `source` in a background thread, at most `depth` items ahead."""

    def __init__(self, source: Iterator[T], depth: int = 1) -> None:
        self._source = source
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        # Run in a copy of the context: the reader's log lines name the run, as the consumer's do.
        self._thread = threading.Thread(
            target=copy_context().run, args=(self._produce,), name="rtarf-page-reader", daemon=True
        )
        self._thread.start()

    def _put(self, item: object) -> bool:
        return put_until_stopped(self._queue, item, self._stop)

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    break
            else:
                self._put(_DONE)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, who raises it
            self._put(error)
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield cast(T, item)  # neither the end mark nor an error: an item of the source

    def close(self) -> None:
        """Stop the producer, close the source and wait for the thread to end."""
        self._stop.set()
        self._thread.join()
