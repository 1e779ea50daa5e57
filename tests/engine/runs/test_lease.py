"""The lease: taken once, fenced on every page, and never a reason to wait."""

from __future__ import annotations

import time

import sqlalchemy as sa

from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.lease import Holder, Lease
from rtarf_sync.engine.target.tables import build_tables, create_tables


def test_a_second_owner_is_told_at_once_while_the_holder_commits_a_page(db_engine: sa.Engine, table_name: str) -> None:
    tables = build_tables(table_name)
    create_tables(db_engine, tables)
    lease = Lease(tables.lease, table_name, 60)
    with db_engine.begin() as connection:
        fence = lease.acquire(connection, "holder")
    assert isinstance(fence, Fence) and fence.epoch == 1
    page = db_engine.connect()
    page_tx = page.begin()
    lease.fence(page, fence)  # the holder's page transaction now locks the lease row
    try:
        started = time.monotonic()
        with db_engine.begin() as connection:
            connection.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
            other = lease.acquire(connection, "second")
        assert isinstance(other, Holder) and other.owner == "holder"
        assert time.monotonic() - started < 2, "the second owner did not wait for the page to commit"
    finally:
        page_tx.commit()
        page.close()


def test_an_expired_lease_is_taken_over_with_a_new_epoch_and_fences_the_old_owner(
    db_engine: sa.Engine, table_name: str
) -> None:
    tables = build_tables(table_name)
    create_tables(db_engine, tables)
    lease = Lease(tables.lease, table_name, 60)
    with db_engine.begin() as connection:
        old = lease.acquire(connection, "old")
        connection.execute(
            sa.update(tables.lease)
            .where(tables.lease.c.name == table_name)
            .values(expires_at=sa.func.now() - sa.text("interval '1 second'"))
        )
    with db_engine.begin() as connection:
        new = lease.acquire(connection, "new")
    assert isinstance(old, Fence) and isinstance(new, Fence) and new.epoch == old.epoch + 1
    with db_engine.begin() as connection:
        try:
            lease.fence(connection, old)
        except Exception as error:  # noqa: BLE001 - the type is checked below
            refused = error
        else:
            refused = None
    assert refused is not None and "taken over" in str(refused)
