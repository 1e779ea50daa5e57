"""The lease and the run history stay true over long runs, failed starts, lost answers and killed processes.

- a run longer than the lease TTL keeps its lease by renewal, not by page
  commits: one page stalls for more than twice the TTL, and a second process
  (the real command line) started during the stall is told the lease is held;
- a renewal that finds the lease taken, or PostgreSQL gone for a whole TTL,
  stops the run;
- recording the run's start failing after the lease was taken gives the
  lease back at once;
- a retried start record leaves exactly one row;
- rows left `running` by a dead process are closed as failed by the next run,
  a dead-letter replay as much as a sync (one run lifecycle).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import psycopg
import pytest
import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.errors import LeaseLost
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.checks.replay import DeadLetterReplay
from rtarf_sync.engine.runs.lease import Lease
from rtarf_sync.engine.runs.renewal import LeaseKeeper
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.tables import build_tables, create_tables
from rtarf_sync.sample import bulk_payload, make_event
from tests.infra.esserver import EsProtocolServer
from tests.infra.harness.http import EngineHttp
from tests.infra.harness.process import free_port
from tests.infra.oracle import engine_docs, index_docs, scalar, table_docs
from tests.infra.support import lease_holder, prepare_tables, runs_of, wait_for

ROOT = Path(__file__).resolve().parents[3]
TTL = 5


@pytest.fixture
def held(db_engine: sa.Engine, table_name: str) -> tuple[Lease, Fence]:
    """A lease with a TTL of 5 s, just taken."""
    tables = build_tables(table_name)
    create_tables(db_engine, tables)
    lease = Lease(tables.lease, table_name, TTL)
    with db_engine.begin() as connection:
        fence = lease.acquire(connection, "keeper-test")
    assert isinstance(fence, Fence)
    return lease, fence


def _seconds_left(db: sa.Engine, table: str) -> float:
    return float(
        scalar(db, "SELECT extract(epoch FROM expires_at - now()) FROM rtarf_sync_lease WHERE name = :n", n=table)
    )


def test_the_keeper_renews_and_stops_when_the_lease_is_taken(
    held: tuple[Lease, Fence], db_engine: sa.Engine, table_name: str
) -> None:
    lease, fence = held
    with LeaseKeeper(db_engine, lease, fence, interval=0.1) as keeper:
        wait_for(lambda: keeper.renewals >= 3, what="three renewals")
        keeper.check()  # still ours
        with db_engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE rtarf_sync_lease SET epoch = epoch + 1, owner = 'thief' WHERE name = :n"),
                {"n": table_name},
            )
        wait_for(lambda: keeper.lost, what="the keeper to notice the take-over")
        with pytest.raises(LeaseLost, match="taken over"):
            keeper.check()
    assert scalar(db_engine, "SELECT owner FROM rtarf_sync_lease WHERE name = :n", n=table_name) == "thief"


def test_the_keeper_gives_up_after_a_ttl_without_postgresql(
    held: tuple[Lease, Fence], caplog: pytest.LogCaptureFixture
) -> None:
    lease, fence = held
    now = [0.0]  # the injected clock: no renewal succeeds, and time moves only when the test says
    gone = sa.create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/rtarf", connect_args={"connect_timeout": 2}
    )
    try:
        with (
            caplog.at_level(logging.WARNING, logger="rtarf_sync.lease"),
            LeaseKeeper(gone, lease, fence, interval=0.05, clock=lambda: now[0]) as keeper,
        ):
            now[0] = 1.0
            wait_for(lambda: "could not renew lease" in caplog.text, what="a first failed renewal")
            assert keeper.lost is None, "a failed renewal inside the TTL is retried, not fatal"
            now[0] = TTL + 0.5  # the injected clock: a whole TTL without a renewal
            wait_for(lambda: keeper.lost, what="the keeper to give up")
    finally:
        gone.dispose()
    assert "could not be renewed" in (keeper.lost or "") and f"TTL {TTL}s" in (keeper.lost or "")


def _cli_sync(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtarf_sync", "sync"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_run_longer_than_the_ttl_keeps_its_lease_and_a_second_process_cannot_take_over(
    elasticsearch: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    database_url: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    elasticsearch.create_index(index_name)
    elasticsearch.bulk(bulk_payload(index_name, (make_event(n) for n in range(90))))
    elasticsearch.refresh(index_name)
    env = {
        "RTARF_ES_URL": elasticsearch.url,
        "RTARF_SOURCE_ENGINE": "elasticsearch",
        "RTARF_ES_INDEX": index_name,
        "RTARF_DATABASE_URL": database_url,
        "RTARF_TABLE": table_name,
        "RTARF_SYNC_BATCH_SIZE": "30",
        "RTARF_LEASE_TTL_SECONDS": str(TTL),
        "RTARF_ES_REQUEST_TIMEOUT_SECONDS": "60",
        "RTARF_SYNC_SETTLE_SECONDS": "0",
    }
    es_server.faults.only_paths("_search")
    es_server.faults.delay_next(1, 0)
    es_server.faults.delay_next(1, 3 * TTL)  # page 2 stalls for three TTLs: no page commit renews the lease
    settings = make_settings(**env)
    prepare_tables(settings)  # so that the polling below never races the run's own table creation
    service = SyncService(settings)
    outcome: dict[str, SyncResult] = {}
    worker = threading.Thread(target=lambda: outcome.update(result=service.run()))
    worker.start()
    try:
        wait_for(
            lambda: scalar(db_engine, "SELECT max(pages) FROM rtarf_sync_runs WHERE target_table = :t", t=table_name)
            == 1,
            timeout=30,
            what="page 1 committed",
        )
        committed = time.monotonic()
        tries: list[tuple[float, int, str]] = []
        # Keep trying from a second process until the stall has outlasted the TTL by a margin.
        while time.monotonic() - committed < TTL + 2 or not tries:
            second = _cli_sync({**os.environ, **env, "RTARF_ES_REQUEST_TIMEOUT_SECONDS": "5"})
            pages = scalar(
                db_engine,
                "SELECT max(pages) FROM rtarf_sync_runs WHERE target_table = :t AND status = 'running'",
                t=table_name,
            )
            tries.append((time.monotonic() - committed, second.returncode, second.stderr[-300:]))
            assert second.returncode == 3, tries  # EXIT_SKIPPED: the lease is held
            assert pages == 1, "the first run was still stalled on page 2"
    finally:
        worker.join(60)
        service.close()
    assert tries[-1][0] > TTL + 2, tries
    result = outcome["result"]
    assert (result.status, result.pages, result.inserted) == ("success", 3, 90), result.error
    assert scalar(db_engine, "SELECT epoch FROM rtarf_sync_lease WHERE name = :t", t=table_name) == 1
    assert table_docs(db_engine, table_name) == engine_docs(elasticsearch, index_name)


@pytest.fixture
def refuse_run_start(db_engine: sa.Engine, table_name: str) -> Iterator[None]:
    """A trigger that makes PostgreSQL refuse to record runs of this target (a real server-side failure)."""
    function = f"refuse_{table_name}"
    with db_engine.begin() as connection:
        connection.execute(
            sa.text(
                f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'run history is read-only' USING ERRCODE = '42501'; END $$"
            )
        )
        connection.execute(
            sa.text(
                f"CREATE TRIGGER {function} BEFORE INSERT ON rtarf_sync_runs FOR EACH ROW "
                f"WHEN (NEW.target_table = '{table_name}') EXECUTE FUNCTION {function}()"
            )
        )
    yield
    with db_engine.begin() as connection:
        connection.execute(sa.text(f"DROP TRIGGER {function} ON rtarf_sync_runs"))
        connection.execute(sa.text(f"DROP FUNCTION {function}()"))


def test_a_failed_start_record_gives_the_lease_back_at_once(
    elasticsearch: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    request: pytest.FixtureRequest,
) -> None:
    elasticsearch.create_index(index_name)
    settings = make_settings(elasticsearch, index_name)
    prepare_tables(settings)
    request.getfixturevalue("refuse_run_start")
    result = SyncService(settings).run()
    assert result.status == "failed" and "run history is read-only" in (result.error or "")
    assert scalar(db_engine, "SELECT epoch FROM rtarf_sync_lease WHERE name = :t", t=table_name) == 1
    assert lease_holder(db_engine, table_name) is None, "the lease was released, not left to expire"


class LostInsertAnswer:
    """Lets the run's start record commit, then reports the connection lost, once (a fault at the driver edge)."""

    def __init__(self, engine: sa.Engine, table: str) -> None:
        self.engine, self.table, self.fired = engine, table, 0
        self._commit = engine.dialect.do_commit
        engine.dialect.do_commit = self._do_commit  # type: ignore[method-assign]  # the fault sits at the driver edge

    def _do_commit(self, dbapi_connection: Any) -> None:
        self._commit(dbapi_connection)
        if self.fired:
            return
        url = self.engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(url, autocommit=True) as connection:
            running = connection.execute(
                "SELECT count(*) FROM rtarf_sync_runs WHERE target_table = %s", (self.table,)
            ).fetchone()
        if running and running[0]:
            self.fired += 1
            raise psycopg.OperationalError("server closed the connection unexpectedly (injected after COMMIT)")


def test_a_retried_start_record_leaves_exactly_one_row(
    elasticsearch: EngineHttp,
    index_name: str,
    table_name: str,
    database_url: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    elasticsearch.create_index(index_name)
    elasticsearch.bulk(bulk_payload(index_name, (make_event(n) for n in range(10))))
    elasticsearch.refresh(index_name)
    engine = sa.create_engine(database_url, pool_pre_ping=True)
    fault = LostInsertAnswer(engine, table_name)
    try:
        result = SyncService(make_settings(elasticsearch, index_name), engine=engine).run()
    finally:
        engine.dispose()
    assert fault.fired == 1
    assert (result.status, result.inserted) == ("success", 10), result.error
    assert [(run["id"], run["status"]) for run in runs_of(db_engine, table_name)] == [(result.run_id, "success")]


def test_runs_left_running_by_a_dead_process_are_closed_as_abandoned(
    elasticsearch: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    elasticsearch.create_index(index_name)
    settings = make_settings(elasticsearch, index_name)
    prepare_tables(settings)
    with db_engine.begin() as connection:  # what a process killed mid-run leaves behind
        connection.execute(
            sa.text(
                "INSERT INTO rtarf_sync_runs (target_table, source_index, trigger, owner, status, started_at) "
                "VALUES (:t, :i, 'scheduled', 'gone-host:4242:deadbeef', 'running', now() - interval '1 hour')"
            ),
            {"t": table_name, "i": index_name},
        )
    result = SyncService(settings).run()
    assert result.status == "success"
    runs = runs_of(db_engine, table_name)
    assert [(run["owner"], run["status"]) for run in runs] == [
        ("gone-host:4242:deadbeef", "failed"),
        (runs[1]["owner"], "success"),
    ]
    assert runs[0]["error"].startswith("abandoned:") and runs[0]["finished_at"] is not None
    assert (
        scalar(
            db_engine,
            "SELECT count(*) FROM rtarf_sync_runs WHERE status = 'running' AND target_table = :t",
            t=table_name,
        )
        == 0
    )


def _one_dead_letter(engine: EngineHttp, index: str, settings: Settings) -> None:
    """A sync that sets one oversized document aside (a dead letter to replay)."""
    engine.create_index(index)
    index_docs(engine, index, {"big": {**make_event(1), "blob": "x" * 6000}, "small": make_event(2)})
    engine.refresh(index)
    service = SyncService(settings)
    try:
        assert service.run().failed == 1
    finally:
        service.close()


def test_a_replay_closes_runs_left_running_by_a_dead_process_and_gives_the_lease_back(
    elasticsearch: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    settings = make_settings(elasticsearch, index_name, RTARF_SYNC_MAX_DOCUMENT_BYTES=5000)
    _one_dead_letter(elasticsearch, index_name, settings)
    with db_engine.begin() as connection:  # what a process killed mid-run leaves behind
        connection.execute(
            sa.text(
                "INSERT INTO rtarf_sync_runs (target_table, source_index, trigger, owner, status, started_at) "
                "VALUES (:t, :i, 'scheduled', 'gone-host:4242:deadbeef', 'running', now() - interval '1 hour')"
            ),
            {"t": table_name, "i": index_name},
        )
    service = SyncService(settings)
    try:
        outcome = DeadLetterReplay(service).run()
    finally:
        service.close()
    assert (outcome.ran, outcome.result.status, outcome.still_failing) == (True, "success", 1), outcome.result.error
    abandoned = [run for run in runs_of(db_engine, table_name) if run["owner"] == "gone-host:4242:deadbeef"]
    assert [run["status"] for run in abandoned] == ["failed"]
    assert abandoned[0]["error"].startswith("abandoned:")
    assert lease_holder(db_engine, table_name) is None, "the lease was released, not left to expire"


def test_a_replay_whose_start_record_fails_gives_the_lease_back_at_once(
    elasticsearch: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    request: pytest.FixtureRequest,
) -> None:
    settings = make_settings(elasticsearch, index_name, RTARF_SYNC_MAX_DOCUMENT_BYTES=5000)
    _one_dead_letter(elasticsearch, index_name, settings)
    request.getfixturevalue("refuse_run_start")
    service = SyncService(settings)
    try:
        outcome = DeadLetterReplay(service).run()
    finally:
        service.close()
    assert outcome.result.status == "failed" and "run history is read-only" in (outcome.result.error or "")
    assert lease_holder(db_engine, table_name) is None, "the lease was released, not left to expire"
