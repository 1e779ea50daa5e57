"""One sync at a time across threads, workers and replicas: a lease row with an epoch.

`acquire` takes the lease when it is free or expired and bumps its epoch.
Every page's transaction calls `fence` (the statement is fence.py's), which renews the lease only if this
owner still holds that epoch; otherwise the transaction is refused, so a
paused or stale owner can never commit after another took over.
"""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from rtarf_sync.engine.errors import RtarfSyncError
from rtarf_sync.engine.fence import Fence, renew


class LeaseHeld(RtarfSyncError):
    """Another owner holds the lease: the work that needs it was not done (try again later)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease we could not take."""

    owner: str
    expires_at: datetime

    def describe(self, name: str) -> str:
        """Why the lease named `name` could not be taken, for results and errors."""
        return f"another sync holds the lease on {name} ({self.owner}, until {self.expires_at.isoformat()})"


class Lease:
    """The lease named `name` in the lease table."""

    def __init__(self, table: sa.Table, name: str, ttl_seconds: int) -> None:
        self.table, self.name, self.ttl = table, name, ttl_seconds

    def _expiry(self) -> sa.ColumnElement[datetime]:
        # clock_timestamp(), not now() (the transaction's start): a renewal that waited on the row lock
        # of a page longer than the TTL is computed again once the page commits, so it counts from then.
        return sa.func.clock_timestamp() + sa.func.make_interval(0, 0, 0, 0, 0, 0, self.ttl)

    def acquire(self, connection: sa.Connection, owner: str) -> Fence | Holder:
        """Take the lease if free or expired; otherwise say who holds it. Never waits on the holder."""
        lease = self.table
        mine = lease.c.name == self.name
        # SKIP LOCKED: while the holder commits a page its transaction locks the lease row;
        # waiting for it would stall this caller for as long as that page takes.
        row = connection.execute(
            sa.select(lease.c.owner, lease.c.expires_at, (lease.c.expires_at < sa.func.now()).label("expired"))
            .where(mine)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            held = connection.execute(sa.select(lease.c.owner, lease.c.expires_at).where(mine)).first()
            if held is not None:
                return Holder(held.owner, held.expires_at)
            epoch = connection.execute(
                insert(lease)
                .values(name=self.name, owner=owner, epoch=1, acquired_at=sa.func.now(), expires_at=self._expiry())
                .on_conflict_do_nothing(index_elements=[lease.c.name])
                .returning(lease.c.epoch)
            ).scalar()
            return Fence(self.name, owner, int(epoch)) if epoch is not None else self._holder(connection)
        # Our own owner id matches only when a retried acquire already landed.
        if not row.expired and row.owner != owner:
            return Holder(row.owner, row.expires_at)
        epoch = connection.execute(
            sa.update(lease)
            .where(mine)
            .values(owner=owner, epoch=lease.c.epoch + 1, acquired_at=sa.func.now(), expires_at=self._expiry())
            .returning(lease.c.epoch)
        ).scalar_one()
        return Fence(self.name, owner, int(epoch))

    def _holder(self, connection: sa.Connection) -> Holder:
        row = connection.execute(
            sa.select(self.table.c.owner, self.table.c.expires_at).where(self.table.c.name == self.name)
        ).one()
        return Holder(row.owner, row.expires_at)

    def fence(self, connection: sa.Connection, fence: Fence) -> None:
        """Renew the lease inside the caller's transaction, or raise LeaseLost."""
        renew(connection, self.table, fence, self.ttl)

    def release(self, connection: sa.Connection, fence: Fence) -> None:
        """Give the lease up at once (expire it), if we still hold it."""
        lease = self.table
        connection.execute(
            sa.update(lease)
            .where(lease.c.name == fence.name, lease.c.owner == fence.owner, lease.c.epoch == fence.epoch)
            .values(expires_at=sa.func.now() - sa.text("interval '1 microsecond'"))
        )


def process_owners() -> str:
    """What every owner id of this process starts with (host and pid), to find its own runs."""
    return f"{socket.gethostname()}:{os.getpid()}:"


def owner_id(purpose: str = "") -> str:
    """A lease owner id unique to this process and call: host, pid, a random part, and what for."""
    suffix = f":{purpose}" if purpose else ""
    return f"{process_owners()}{uuid.uuid4().hex[:8]}{suffix}"


def take(engine: sa.Engine, lease: Lease, owner: str) -> Fence | Holder:
    """Take the lease in a transaction of its own (Lease.acquire), or say who holds it."""
    with engine.begin() as connection:
        return lease.acquire(connection, owner)


def release(engine: sa.Engine, lease: Lease, fence: Fence) -> None:
    """Give the lease back in a transaction of its own (Lease.release)."""
    with engine.begin() as connection:
        lease.release(connection, fence)


@contextmanager
def holding(engine: sa.Engine, lease: Lease, purpose: str) -> Iterator[Fence]:
    """Hold the lease for short work that is not a run (a verification, a cursor change).

    Raises LeaseHeld when another owner holds it; the lease is released on the way out.
    """
    got = take(engine, lease, owner_id(purpose))
    if isinstance(got, Holder):
        raise LeaseHeld(got.describe(lease.name))
    try:
        yield got
    finally:
        release(engine, lease, got)
