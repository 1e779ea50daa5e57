"""Replicas that share pipelines: who is alive, and which of them owns which pipeline.

Each process keeps a membership row in the lease table (name `member:<id>`, never a table name, as
`:` is not in an identifier) and renews it every third of the lease TTL; a process that stops
renewing (kill -9 included) drops out when its row expires. Every process computes the owner of
each pipeline from the same list of members by rendezvous hashing, so members agree without
talking, and a join or a leave moves only the pipelines that must move. Ownership only spreads
the scheduling: the run lease still makes sure one run at a time touches a table.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

MEMBER_PREFIX = "member:"


def new_member_id() -> str:
    """A member id that says which host and process it is, unique across restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _expiry(ttl_seconds: int) -> sa.ColumnElement[datetime]:
    return sa.func.clock_timestamp() + sa.func.make_interval(0, 0, 0, 0, 0, 0, ttl_seconds)


def heartbeat(engine: sa.Engine, lease: sa.Table, member: str, ttl_seconds: int) -> list[str]:
    """Renew this member's row and return every live member's id, sorted (this one included)."""
    name = MEMBER_PREFIX + member
    with engine.begin() as connection:
        connection.execute(
            insert(lease)
            .values(name=name, owner=member, epoch=1, acquired_at=sa.func.now(), expires_at=_expiry(ttl_seconds))
            .on_conflict_do_update(index_elements=[lease.c.name], set_={"expires_at": _expiry(ttl_seconds)})
        )
        rows = connection.execute(
            sa.select(lease.c.owner).where(
                lease.c.name.startswith(MEMBER_PREFIX, autoescape=True), lease.c.expires_at > sa.func.now()
            )
        ).scalars()
        members = sorted(set(rows) | {member})
        # Rows of members long gone are removed by whoever is alive, so the table stays small.
        connection.execute(
            sa.delete(lease).where(
                lease.c.name.startswith(MEMBER_PREFIX, autoescape=True),
                lease.c.expires_at < sa.func.now() - sa.text("interval '1 hour'"),
            )
        )
    return members


def leave(engine: sa.Engine, lease: sa.Table, member: str) -> None:
    """Remove this member's row, so the others take its pipelines over at their next heartbeat."""
    with engine.begin() as connection:
        connection.execute(sa.delete(lease).where(lease.c.name == MEMBER_PREFIX + member))


def _rank(member: str, pipeline: str) -> bytes:
    return hashlib.sha256(f"{member}\x00{pipeline}".encode()).digest()


def assignment(pipelines: list[str], members: list[str]) -> dict[str, str]:
    """Pipeline -> owning member: each pipeline goes to its highest-ranked member (rendezvous hashing)
    that has fewer than its fair share, so the work spreads evenly and a join or leave moves little."""
    share = -(-len(pipelines) // max(len(members), 1))  # ceil
    load = dict.fromkeys(members, 0)
    owners: dict[str, str] = {}
    for pipeline in pipelines:
        ranked = sorted(members, key=lambda member: _rank(member, pipeline), reverse=True)
        owner = next(member for member in ranked if load[member] < share)
        load[owner] += 1
        owners[pipeline] = owner
    return owners
