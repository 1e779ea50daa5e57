"""Progress a person can follow on stderr, for the command line and the demo.

`ProgressLine` counts work done towards a known total (sample loading);
`RunWatcher` reports a running sync from a callback every few seconds, so a
long first sync shows that it is moving.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any, Callable, TextIO

Snapshot = Callable[[], "dict[str, Any] | None"]


class ProgressLine:
    """One line of progress: rewritten in place on a terminal, a line per step otherwise."""

    def __init__(self, label: str, stream: TextIO | None = None, min_interval: float = 0.5) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval = min_interval
        self.tty = self.stream.isatty()
        self._started = time.monotonic()
        self._last = 0.0

    def update(self, done: int, total: int) -> None:
        """Show `done` of `total`; on a terminal at most every `min_interval` seconds."""
        now = time.monotonic()
        if self.tty and done < total and now - self._last < self.min_interval:
            return
        self._last = now
        elapsed = max(now - self._started, 1e-6)
        percent = 100.0 * done / total if total else 100.0
        text = f"{self.label}: {done:,}/{total:,} ({percent:.0f}%, {done / elapsed:,.0f}/s)"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if done >= total else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class RunWatcher:
    """Prints what `snapshot()` says about a running sync every `every` seconds, from a thread."""

    def __init__(self, snapshot: Snapshot, every: float = 2.0, stream: TextIO | None = None) -> None:
        self.snapshot = snapshot
        self.every = every
        self.stream = stream if stream is not None else sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rtarf-run-watcher", daemon=True)

    def __enter__(self) -> "RunWatcher":
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        shown = ""
        while not self._stop.wait(self.every):
            try:
                row = self.snapshot()
            except Exception:  # noqa: BLE001 - progress must never break the run it watches
                continue
            line = describe_run(row) if row else ""
            if line and line != shown:  # a line only when something moved
                self.stream.write(line + "\n")
                self.stream.flush()
                shown = line


def describe_run(row: dict[str, Any]) -> str:
    """One line about a run in progress, from its run-history row."""
    return (
        f"sync: {row.get('pages', 0):,} pages committed, {row.get('total_processed', 0):,} events "
        f"({row.get('inserted', 0):,} inserted, {row.get('updated', 0):,} updated, "
        f"{row.get('unchanged', 0):,} unchanged, {row.get('failed', 0):,} set aside)"
    )
