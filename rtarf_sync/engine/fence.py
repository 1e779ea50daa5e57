"""The lease fence: the proof of holding a lease, and the one statement that checks and renews it.

A writer's transaction renews the lease row only if its owner still holds that epoch; when no
row was renewed another owner took over and the transaction must not commit (`LeaseLost`).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from rtarf_sync.engine.errors import LeaseLost


@dataclass(frozen=True)
class Fence:
    """Proof of holding the lease: its name, our owner id and the epoch we got."""

    name: str
    owner: str
    epoch: int


def renewal(lease_table: str) -> str:
    """The renewal statement for a quoted lease table; its parameters are `renewal_values`."""
    # clock_timestamp(), not now() (the transaction's start): a renewal that waited on the row lock
    # of a page longer than the TTL counts from when it runs, so from the end of a page however long.
    return (
        f"UPDATE {lease_table} SET expires_at = clock_timestamp() + make_interval(secs => %s) "
        "WHERE name = %s AND owner = %s AND epoch = %s"
    )


def renewal_values(fence: Fence, ttl_seconds: float) -> tuple[float, str, str, int]:
    """The parameters of `renewal` for this fence and lease lifetime."""
    return (float(ttl_seconds), fence.name, fence.owner, fence.epoch)


def check_renewed(rowcount: int, fence: Fence) -> None:
    """Raise LeaseLost unless the renewal renewed exactly the lease row of this fence."""
    if rowcount != 1:
        raise LeaseLost(f"lease {fence.name} epoch {fence.epoch} was taken over by another owner")


def renew(connection: sa.Connection, lease_table: sa.Table, fence: Fence, ttl_seconds: float) -> None:
    """Renew the lease inside the caller's transaction, or raise LeaseLost."""
    quoted = connection.dialect.identifier_preparer.format_table(lease_table)
    check_renewed(connection.exec_driver_sql(renewal(quoted), renewal_values(fence, ttl_seconds)).rowcount, fence)
