"""One sync at a time across threads, workers and replicas: a lease row with an epoch.

`acquire` takes the lease when it is free or expired and bumps its epoch.
Every page's transaction calls `fence`, which renews the lease only if this
owner still holds that epoch; otherwise the transaction is refused, so a
paused or stale owner can never commit after another took over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from rtarf_sync.errors import LeaseLost


@dataclass(frozen=True)
class Fence:
    """Proof of holding the lease: its name, our owner id and the epoch we got."""

    name: str
    owner: str
    epoch: int


@dataclass(frozen=True)
class Holder:
    """Who holds a lease we could not take."""

    owner: str
    expires_at: datetime


class Lease:
    """The lease named `name` in the lease table."""

    def __init__(self, table: sa.Table, name: str, ttl_seconds: int) -> None:
        self.table, self.name, self.ttl = table, name, ttl_seconds

    def _expiry(self) -> sa.ColumnElement[datetime]:
        return sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, self.ttl)

    def acquire(self, connection: sa.Connection, owner: str) -> Fence | Holder:
        """Take the lease if free or expired; otherwise say who holds it."""
        lease = self.table
        statement = insert(lease).values(name=self.name, owner=owner, epoch=1, acquired_at=sa.func.now(),
                                         expires_at=self._expiry())
        statement = statement.on_conflict_do_update(
            index_elements=[lease.c.name],
            set_={"owner": owner, "epoch": lease.c.epoch + 1, "acquired_at": sa.func.now(),
                  "expires_at": self._expiry()},
            # Our own owner id matches only when a retried acquire already landed.
            where=sa.or_(lease.c.expires_at < sa.func.now(), lease.c.owner == owner),
        ).returning(lease.c.epoch)
        epoch = connection.execute(statement).scalar()
        if epoch is not None:
            return Fence(self.name, owner, int(epoch))
        row = connection.execute(sa.select(lease.c.owner, lease.c.expires_at)
                                 .where(lease.c.name == self.name)).one()
        return Holder(row.owner, row.expires_at)

    def fence(self, connection: sa.Connection, fence: Fence) -> None:
        """Renew the lease inside the caller's transaction, or raise LeaseLost."""
        lease = self.table
        renewed = connection.execute(
            sa.update(lease)
            .where(lease.c.name == fence.name, lease.c.owner == fence.owner, lease.c.epoch == fence.epoch)
            .values(expires_at=self._expiry())
        ).rowcount
        if renewed != 1:
            raise LeaseLost(f"lease {fence.name} epoch {fence.epoch} was taken over by another owner")

    def release(self, connection: sa.Connection, fence: Fence) -> None:
        """Give the lease up at once (expire it), if we still hold it."""
        lease = self.table
        connection.execute(
            sa.update(lease)
            .where(lease.c.name == fence.name, lease.c.owner == fence.owner, lease.c.epoch == fence.epoch)
            .values(expires_at=sa.func.now() - sa.text("interval '1 microsecond'"))
        )
