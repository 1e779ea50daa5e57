"""Each of the two layers that keep a run's lease is enough on its own.

- page commits alone (the renewal thread held back with `renew_lease=False`):
  many small slow pages over several TTLs; and one page whose write waits on a
  table lock for two TTLs (the page holds the lease row meanwhile, and renews
  the lease again with its counts, so it commits a lease that is still good);
- the renewal thread alone: the same slow write, then a read of the next page
  longer than the TTL (test_lease_keeping.py pins a slow read alone, with a
  second process as the contender);
- a renewal that waited on a page's lease row counts from when it lands.

In each run a contender tries to take the lease all along: it is always told
the lease is held, the run succeeds and the lease keeps epoch 1.
"""

from __future__ import annotations

import threading
from typing import Callable

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.lease import Holder, Lease
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.tables import build_tables, create_tables
from rtarf_sync.sample import bulk_payload, make_event
from tests.infra.esserver import EsProtocolServer
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import engine_docs, scalar, table_docs
from tests.infra.support import lease_holder, prepare_tables, target_locked, waiting_service_backends, wait_for

TTL = 5  # the smallest RTARF_LEASE_TTL_SECONDS allowed


class Contender:
    """Another owner trying to take the lease, over and over, until the run ends."""

    def __init__(self, db: sa.Engine, table: str) -> None:
        self.db, self.table = db, table
        self.lease = Lease(build_tables(table).lease, table, TTL)
        self.taken: list[Fence] = []  # taken while the run was still running: what must never happen
        self.refused = 0
        self.after_run = False

    def try_once(self) -> bool:
        """One attempt; a take-over is recorded, a refusal counted. True when trying makes no more sense."""
        with self.db.begin() as connection:
            got = self.lease.acquire(connection, "contender")
            # Read after the acquire: a run records its end before it releases the lease.
            running = connection.execute(
                sa.text("SELECT count(*) FROM rtarf_sync_runs WHERE target_table = :t AND status = 'running'"),
                {"t": self.table},
            ).scalar_one()
        if isinstance(got, Holder):
            assert got.owner != "contender"
            self.refused += 1
        elif running:
            self.taken.append(got)
        else:
            self.after_run = True
        return bool(self.taken) or self.after_run

    def until(self, done: Callable[[], bool], timeout: float = 120) -> None:
        """Try every few milliseconds until `done()`, a take-over or the run's end (a hang guard, not timing)."""
        wait_for(lambda: self.try_once() or done(), timeout=timeout, what="the run to end under contention")


def _run_in_thread(service: SyncService) -> tuple[threading.Thread, dict[str, SyncResult]]:
    outcome: dict[str, SyncResult] = {}
    worker = threading.Thread(target=lambda: outcome.update(result=service.run()))
    worker.start()
    return worker, outcome


def _loaded(elasticsearch: EngineHttp, index_name: str, count: int) -> None:
    elasticsearch.create_index(index_name)
    elasticsearch.bulk(bulk_payload(index_name, (make_event(n) for n in range(count))))
    elasticsearch.refresh(index_name)


def _past_ttls(db: sa.Engine, table: str, ttls: int) -> bool:
    """True once the lease was taken more than `ttls` TTLs ago (PostgreSQL's clock)."""
    return bool(
        scalar(
            db,
            "SELECT now() > acquired_at + make_interval(secs => :s) FROM rtarf_sync_lease WHERE name = :n",
            s=ttls * TTL,
            n=table,
        )
    )


def _kept(
    result: SyncResult, contender: Contender, db: sa.Engine, table: str, pages: int, count: int, ttls: int
) -> None:
    assert contender.taken == [], "another owner took the lease while the run was working"
    assert contender.refused > 0
    # What makes the test mean something: the run outlasted several TTLs (the injected delays see to it).
    assert scalar(
        db,
        "SELECT finished_at - started_at > make_interval(secs => :s) FROM rtarf_sync_runs WHERE id = :i",
        s=ttls * TTL,
        i=result.run_id,
    )
    assert (result.status, result.pages, result.inserted) == ("success", pages, count), result.error
    # Epoch 1 for the whole run; 2 only if the contender took the lease once the run had given it back.
    assert scalar(db, "SELECT epoch FROM rtarf_sync_lease WHERE name = :t", t=table) == 1 + contender.after_run


def test_page_commits_alone_keep_the_lease_over_a_run_of_many_ttls(
    elasticsearch: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    _loaded(elasticsearch, index_name, 120)
    settings = make_settings(elasticsearch, index_name, RTARF_SYNC_BATCH_SIZE=10, RTARF_LEASE_TTL_SECONDS=TTL)
    prepare_tables(settings)
    es_server.faults.only_paths("_search")
    es_server.faults.delay_next(13, TTL * 0.3)  # every page read slow: 13 reads take longer than three TTLs
    service = SyncService(settings, renew_lease=False)  # the renewal thread never runs
    contender = Contender(db_engine, table_name)
    worker, outcome = _run_in_thread(service)
    try:
        wait_for(lambda: lease_holder(db_engine, table_name), what="the run to take the lease")
        contender.until(lambda: not worker.is_alive())
    finally:
        worker.join(60)
        service.close()
    _kept(outcome["result"], contender, db_engine, table_name, pages=12, count=120, ttls=3)
    assert table_docs(db_engine, table_name) == engine_docs(elasticsearch, index_name)


def test_page_commits_alone_keep_the_lease_over_a_write_longer_than_the_ttl(
    elasticsearch: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    _loaded(elasticsearch, index_name, 10)  # one full page, then the empty page that ends the run
    settings = make_settings(elasticsearch, index_name, RTARF_SYNC_BATCH_SIZE=10, RTARF_LEASE_TTL_SECONDS=TTL)
    prepare_tables(settings)
    es_server.faults.only_paths("_search")
    es_server.faults.delay_next(1, 0)
    es_server.faults.delay_next(1, 2.5 * TTL)  # the empty page arrives half a TTL after the write could end
    service = SyncService(settings, renew_lease=False)  # the renewal thread never runs
    contender = Contender(db_engine, table_name)
    worker, outcome = _run_in_thread(service)
    try:
        with target_locked(db_engine, table_name):  # page 1's write waits, holding the lease row, for 2 TTLs
            wait_for(
                lambda: waiting_service_backends(db_engine) >= 1 and lease_holder(db_engine, table_name),
                what="page 1 to wait for the lock",
            )
            contender.until(lambda: _past_ttls(db_engine, table_name, 2))
        contender.until(lambda: not worker.is_alive())
    finally:
        worker.join(60)
        service.close()
    _kept(outcome["result"], contender, db_engine, table_name, pages=1, count=10, ttls=2)


def test_the_renewal_thread_alone_keeps_the_lease_over_a_write_longer_than_the_ttl(
    elasticsearch: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    _loaded(elasticsearch, index_name, 20)
    settings = make_settings(elasticsearch, index_name, RTARF_SYNC_BATCH_SIZE=10, RTARF_LEASE_TTL_SECONDS=TTL)
    prepare_tables(settings)
    es_server.faults.only_paths("_search")
    es_server.faults.delay_next(1, 0)
    # Page 2 is read while page 1 waits, and arrives two TTLs after page 1 could write: no page commit
    # renews the lease in between, only the thread.
    es_server.faults.delay_next(1, 4 * TTL)
    service = SyncService(settings)
    contender = Contender(db_engine, table_name)
    worker, outcome = _run_in_thread(service)
    try:
        with target_locked(db_engine, table_name):  # page 1's write waits, holding the lease row, for 2 TTLs
            wait_for(
                lambda: waiting_service_backends(db_engine) >= 1 and lease_holder(db_engine, table_name),
                what="page 1 to wait for the lock",
            )
            contender.until(lambda: _past_ttls(db_engine, table_name, 2))
        contender.until(lambda: not worker.is_alive())
    finally:
        worker.join(60)
        service.close()
    _kept(outcome["result"], contender, db_engine, table_name, pages=2, count=20, ttls=4)
    assert table_docs(db_engine, table_name) == engine_docs(elasticsearch, index_name)


def test_a_renewal_that_waited_on_a_page_counts_from_when_it_lands(db_engine: sa.Engine, table_name: str) -> None:
    tables = build_tables(table_name)
    create_tables(db_engine, tables)
    lease = Lease(tables.lease, table_name, TTL)
    with db_engine.begin() as connection:
        fence = lease.acquire(connection, "holder")
    assert isinstance(fence, Fence)
    with db_engine.connect() as page, page.begin():
        lease.fence(page, fence)  # a page's transaction: it renews, and holds the lease row until it commits
        began = page.execute(sa.text("SELECT now()")).scalar_one()
        keeper = threading.Thread(target=lambda: _fence_once(db_engine, lease, fence))
        keeper.start()
        wait_for(
            lambda: scalar(
                db_engine,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'UPDATE rtarf_sync_lease%'",
            ),
            what="the renewal to wait",
        )
        wait_for(
            lambda: scalar(db_engine, "SELECT clock_timestamp() > :b + make_interval(secs => :s)", b=began, s=TTL + 1),
            timeout=30,
            what="the page to outlast the TTL",
        )
    keeper.join(30)
    assert scalar(db_engine, "SELECT expires_at > now() FROM rtarf_sync_lease WHERE name = :n", n=table_name), (
        "the renewal that waited behind the page left the lease expired"
    )


def _fence_once(db: sa.Engine, lease: Lease, fence: Fence) -> None:
    with db.begin() as connection:
        lease.fence(connection, fence)
