"""Transient failures are retried; a page is never committed twice and the cursor never runs ahead.

Engine faults are injected by the Elasticsearch protocol server; PostgreSQL
faults are real (terminated backends, a real serialization failure).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import pytest
import sqlalchemy as sa

from config import Settings
from rtarf_sync.sample import bulk_payload, make_event
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.engine.errors import is_transient
from rtarf_sync.engine.runs.sync import SyncService
from tests.infra.esserver import EsProtocolServer
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import engine_docs, scalar, table_docs
from tests.infra.support import prepare_tables, wait_for


@pytest.fixture
def loaded(elasticsearch: EngineHttp, index_name: str) -> EngineHttp:
    """120 sample events on the protocol server."""
    elasticsearch.create_index(index_name)
    elasticsearch.bulk(bulk_payload(index_name, (make_event(n) for n in range(120))))
    elasticsearch.refresh(index_name)
    return elasticsearch


@pytest.fixture
def log_mark(es_server: EsProtocolServer) -> int:
    """Where this test's requests start in the server's request log (the server lives for the session)."""
    return len(es_server.request_log)


def _pits_balanced(es_server: EsProtocolServer, since: int) -> bool:
    log = es_server.request_log[since:]
    opened = sum(1 for method, path in log if method == "POST" and path.endswith("/_pit"))
    closed = sum(1 for method, path in log if method == "DELETE" and path == "/_pit")
    return opened > 0 and opened == closed


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_error_statuses_are_retried(
    loaded: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    status: int,
) -> None:
    es_server.faults.only_paths("_search")
    es_server.faults.fail_next(3, status=status)
    result = SyncService(make_settings(loaded, index_name, RTARF_SYNC_BATCH_SIZE=50)).run()
    assert (result.status, result.inserted, result.unchanged, result.pages) == ("success", 120, 0, 3)
    assert table_docs(db_engine, table_name) == engine_docs(loaded, index_name)


def test_dropped_connections_and_timeouts_are_retried(
    loaded: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    es_server.faults.only_paths("_search")
    es_server.faults.drop_next(2)
    service = SyncService(
        make_settings(loaded, index_name, RTARF_SYNC_BATCH_SIZE=50, RTARF_ES_REQUEST_TIMEOUT_SECONDS=0.5)
    )
    first = service.run()
    assert (first.status, first.inserted, first.unchanged, first.pages) == ("success", 120, 0, 3)
    es_server.faults.delay_next(1, 1.5)
    again = service.run()
    overlap = scalar(
        db_engine,
        f'SELECT count(*) FROM "{table_name}" WHERE event_timestamp >= '
        f"(SELECT max(event_timestamp) FROM \"{table_name}\") - interval '60 seconds'",
    )
    assert (again.status, again.inserted, again.updated, again.unchanged) == ("success", 0, 0, overlap)
    assert scalar(db_engine, f'SELECT count(*) FROM "{table_name}"') == 120


def test_shard_failures_fail_the_page_instead_of_skipping_it(
    log_mark: int,
    loaded: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    es_server.faults.only_paths("_search")
    es_server.faults.shard_failure_next(2)
    result = SyncService(make_settings(loaded, index_name, RTARF_SYNC_BATCH_SIZE=50)).run()
    assert (result.status, result.inserted, result.unchanged, result.pages) == ("success", 120, 0, 3)

    es_server.faults.shard_failure_next(100)
    failing = SyncService(make_settings(loaded, index_name, RTARF_SYNC_MAX_RETRIES=2)).run()
    assert failing.status == "failed"
    assert failing.error == "search page failed after 3 attempts: search page: 1 shard(s) failed"
    assert _pits_balanced(es_server, log_mark), "every point in time was closed, failures included"


def _fail_after_first_page(db: sa.Engine, table: str, es_server: EsProtocolServer) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if scalar(db, "SELECT max(pages) FROM rtarf_sync_runs WHERE target_table = :t", t=table):
            break
        time.sleep(0.02)
    es_server.faults.fail_next(1000, status=503)


def test_retries_exhausted_fail_the_run_and_the_next_run_completes(
    log_mark: int,
    loaded: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    service = SyncService(make_settings(loaded, index_name, RTARF_SYNC_BATCH_SIZE=40, RTARF_SYNC_MAX_RETRIES=1))
    es_server.faults.only_paths("_search")
    es_server.faults.delay_next(1000, 0.1)
    failing = threading.Thread(target=_fail_after_first_page, args=(db_engine, table_name, es_server))
    failing.start()
    failed = service.run()
    failing.join()
    es_server.faults.reset()
    assert failed.status == "failed"
    assert (failed.error or "").startswith("search page failed after 2 attempts: search: HTTP 503 ")
    assert 0 < scalar(db_engine, f'SELECT count(*) FROM "{table_name}"') < 120
    cursor = scalar(db_engine, "SELECT cursor_value FROM rtarf_sync_cursor WHERE target_table = :t", t=table_name)
    newest = scalar(db_engine, f'SELECT max(event_timestamp) FROM "{table_name}"')
    assert cursor == newest, "the cursor never runs ahead of the data"
    done = service.run()
    assert done.status == "success" and done.inserted + failed.inserted == 120 and done.updated == 0
    assert table_docs(db_engine, table_name) == engine_docs(loaded, index_name)
    assert _pits_balanced(es_server, log_mark)


def test_an_expired_point_in_time_is_reopened_and_nothing_is_lost(
    log_mark: int,
    loaded: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    es_server.faults.only_paths("_search")
    es_server.faults.expire_pits_at_search(2)  # the second page meets an unknown context
    service = SyncService(make_settings(loaded, index_name, RTARF_SYNC_BATCH_SIZE=30))
    outcome = [service.run()]
    result = outcome[0]
    assert result.status == "success", result.error
    assert (result.inserted, result.unchanged) == (120, 0)
    assert "reopened it and resumed after sort values" in result.warnings[0]
    assert table_docs(db_engine, table_name) == engine_docs(loaded, index_name)
    assert _pits_balanced(es_server, log_mark)


def test_lost_postgresql_connections_are_retried(
    loaded: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    es_server.faults.only_paths("_search")
    es_server.faults.delay_next(6, 0.2)
    stop = threading.Event()
    terminated: list[int] = []

    def terminate_backends() -> None:
        while not stop.is_set():
            with db_engine.connect() as connection:
                killed = connection.execute(
                    sa.text(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = 'rtarf-event-sync'"
                    )
                ).scalar()
                terminated.append(int(killed or 0))
                connection.commit()
            time.sleep(0.25)

    killer = threading.Thread(target=terminate_backends)
    killer.start()
    try:
        result = SyncService(
            make_settings(loaded, index_name, RTARF_SYNC_BATCH_SIZE=20, RTARF_SYNC_MAX_RETRIES=10)
        ).run()
    finally:
        stop.set()
        killer.join()
    assert sum(terminated) > 0, "connections were really cut"
    assert result.status == "success", result.error
    # Exact, not inserted + unchanged: a page whose commit landed before its answer was lost
    # must be counted once, not written again and counted as unchanged.
    assert (result.inserted, result.updated, result.unchanged, result.total_processed, result.pages) == (
        120,
        0,
        0,
        120,
        6,
    )
    assert scalar(db_engine, "SELECT total_processed FROM rtarf_sync_runs WHERE target_table = :t", t=table_name) == 120
    assert table_docs(db_engine, table_name) == engine_docs(loaded, index_name)


def test_serialization_failures_and_deadlocks_count_as_transient(db_engine: sa.Engine, table_name: str) -> None:
    with db_engine.begin() as connection:
        connection.execute(sa.text(f'CREATE TABLE "{table_name}" (k int primary key, v int)'))
        connection.execute(sa.text(f'INSERT INTO "{table_name}" VALUES (1, 0)'))
    first, second = db_engine.connect(), db_engine.connect()
    try:
        for connection in (first, second):
            connection.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            connection.execute(sa.text(f'SELECT v FROM "{table_name}" WHERE k = 1')).scalar()
        first.execute(sa.text(f'UPDATE "{table_name}" SET v = 1 WHERE k = 1'))
        first.commit()
        with pytest.raises(sa.exc.DBAPIError) as caught:
            second.execute(sa.text(f'UPDATE "{table_name}" SET v = 2 WHERE k = 1'))
        assert caught.value.orig.sqlstate == "40001"
        assert is_transient(caught.value)
    finally:
        first.close()
        second.close()
    with db_engine.connect() as connection, pytest.raises(sa.exc.DBAPIError) as refused:
        connection.execute(sa.text(f"INSERT INTO \"{table_name}\" VALUES (1, 'not a number')"))
    assert not is_transient(refused.value)


def test_a_stale_owner_cannot_commit_after_another_took_over(
    loaded: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    settings = make_settings(loaded, index_name, RTARF_SYNC_BATCH_SIZE=40, RTARF_LEASE_TTL_SECONDS=5)
    es_server.faults.only_paths("_search")
    es_server.faults.delay_next(1, 0)
    es_server.faults.delay_next(1, 3)  # the stale owner stalls on page 2
    prepare_tables(settings)  # so that polling the runs table never races their creation
    stale = SyncService(settings)
    outcome: dict[str, SyncResult] = {}
    worker = threading.Thread(target=lambda: outcome.update(result=stale.run()))
    worker.start()
    wait_for(
        lambda: scalar(db_engine, "SELECT max(pages) FROM rtarf_sync_runs WHERE target_table = :t", t=table_name) == 1,
        what="the stale owner's first page",
    )
    # The owner now stalls on page 2. Like a paused or partitioned process, it lost its lease
    # meanwhile: another owner took it (a new epoch) and let it lapse. Done in one statement, so
    # the stalled owner's renewal thread cannot renew in between.
    with db_engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE rtarf_sync_lease SET epoch = epoch + 1, owner = 'an-owner-since-gone', "
                "expires_at = now() - interval '1 second' WHERE name = :t"
            ),
            {"t": table_name},
        )
    taker = SyncService(settings).run()
    worker.join(30)
    stale_result = outcome["result"]
    assert taker.status == "success"
    assert stale_result.status == "failed" and "taken over" in (stale_result.error or "")
    assert table_docs(db_engine, table_name) == engine_docs(loaded, index_name)
    epochs = scalar(db_engine, "SELECT epoch FROM rtarf_sync_lease WHERE name = :t", t=table_name)
    assert epochs == 3
