"""Keeping the lease for as long as a run works, whatever its pages take.

Each page's transaction renews the lease too (fencing), but a page can take
longer than the lease's TTL: a slow engine, a stalled answer, a table lock.
`LeaseKeeper` is a small thread that renews the lease through the same fence
every third of the TTL. When a renewal finds the lease taken over, or cannot
reach PostgreSQL for a whole TTL, the keeper records why and stops; the run
checks `keeper.check()` between pages and stops with LeaseLost. The page
fence still refuses any commit after a take-over, so the keeper only makes a
long run keep its lease (and a lost one stop sooner); it never decides alone.
Either layer alone keeps a run of pages shorter than the TTL; only this thread
covers a page read longer than it (docs/lease-and-verification.md). `running=False`
builds a keeper that never starts its thread, for the tests that prove it.
"""

from __future__ import annotations

import logging
import threading
import time
from contextvars import copy_context
from types import TracebackType
from typing import Callable

import sqlalchemy as sa

from rtarf_sync.engine.errors import LeaseLost
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.lease import Lease

log = logging.getLogger("rtarf_sync.lease")  # the name log filters know


class LeaseKeeper:
    """Renews `fence` every `interval` seconds (a third of the TTL) until stopped; `running=False`: never."""

    def __init__(
        self,
        engine: sa.Engine,
        lease: Lease,
        fence: Fence,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        running: bool = True,
    ) -> None:
        self.engine, self.lease, self.fence, self.clock, self.running = engine, lease, fence, clock, running
        self.interval = interval if interval is not None else lease.ttl / 3
        self.renewals = 0
        self._lost: str | None = None
        self._renewed = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=copy_context().run,
            args=(self._loop,),  # its lines name the run
            name=f"lease-keeper-{fence.name}",
            daemon=True,
        )

    def __enter__(self) -> "LeaseKeeper":
        if self.running:
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if not self.running:
            return
        # A renewal waiting on PostgreSQL ends within its connect timeout; the thread is a daemon anyway.
        self._thread.join(timeout=max(self.lease.ttl, 1))

    @property
    def lost(self) -> str | None:
        """Why the lease is no longer ours, or None while it is."""
        return self._lost

    def check(self) -> None:
        """Raise LeaseLost when a renewal found the lease gone."""
        if self._lost is not None:
            raise LeaseLost(self._lost)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._renew():
                return

    def _renew(self) -> bool:
        """Renew once; False when the keeper must stop (the lease is lost)."""
        try:
            with self.engine.begin() as connection:
                self.lease.fence(connection, self.fence)
        except LeaseLost as error:
            self._lose(str(error))
            return False
        except Exception as error:  # noqa: BLE001 - any failure to reach PostgreSQL is retried next tick
            silent = self.clock() - self._renewed
            if silent >= self.lease.ttl:
                self._lose(
                    f"lease {self.fence.name} could not be renewed for {silent:.0f}s "
                    f"(TTL {self.lease.ttl}s): {str(error).splitlines()[0]}"
                )
                return False
            log.warning("could not renew lease %s (will retry): %s", self.fence.name, str(error).splitlines()[0])
            return True
        self._renewed = self.clock()
        self.renewals += 1
        return True

    def _lose(self, why: str) -> None:
        self._lost = why
        log.error("lease lost while the run was working: %s; the run stops before its next page", why)
