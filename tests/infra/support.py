"""Helpers for the scheduler and API tests: settings without reachable engines, gated jobs, polling."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from config import Settings, load_settings
from rtarf_sync.engine.runs.result import SUCCESS, SyncResult
from tests.infra.harness.process import free_port

if TYPE_CHECKING:
    import sqlalchemy as sa

    from tests.infra.harness.http import EngineHttp


def offline_settings(**env: Any) -> Settings:
    """Settings whose engine and database ports have nothing listening (nothing real is touched)."""
    environ = {
        "RTARF_ES_URL": f"http://127.0.0.1:{free_port()}",
        "RTARF_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/rtarf",
        "RTARF_SOURCE_ENGINE": "elasticsearch",
        "RTARF_SYNC_MAX_RETRIES": "0",
        "RTARF_ES_REQUEST_TIMEOUT_SECONDS": "2",
    }
    environ.update({key: str(value) for key, value in env.items()})
    return load_settings(environ)


def service_env(database_url: str, engine: EngineHttp, index: str, table: str, **extra: str) -> dict[str, str]:
    """The environment of a service process syncing `index` into `table`: no settle, runs only when asked
    (an hour's interval), plus `extra`."""
    return {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_ES_URL": engine.url,
        "RTARF_ES_INDEX": index,
        "RTARF_TABLE": table,
        "RTARF_SOURCE_ENGINE": engine.kind,
        "RTARF_SYNC_SETTLE_SECONDS": "0",
        "RTARF_SYNC_INTERVAL_SECONDS": "3600",
        **extra,
    }


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class GatedJob:
    """A job that blocks until released, so a test can act while a run is in progress."""

    def __init__(self, result: SyncResult | None = None, *, gated: bool = True) -> None:
        self.result = result or SyncResult(status=SUCCESS, total_processed=150, inserted=10, updated=140)
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()
        if not gated:
            self.release.set()

    def __call__(self) -> SyncResult:
        with self._lock:
            self.calls += 1
        self.started.set()
        if not self.release.wait(60):
            raise RuntimeError("the test never released the job")
        return self.result

    def call_count(self) -> int:
        """How many runs have started."""
        with self._lock:
            return self.calls


def load_sample(engine: EngineHttp, index: str, count: int, seed: int = 42) -> int:
    """Create `index`, bulk-load `count` sample events into it and make them searchable."""
    from rtarf_sync.sample import load_events

    engine.create_index(index)
    loaded = load_events(engine.bulk, index, count, seed=seed)
    engine.refresh(index)
    return loaded


def count_rows(db_engine: sa.Engine, table: str) -> int:
    """Rows in the target table, or 0 while it does not exist yet."""
    import sqlalchemy as sa

    with db_engine.connect() as connection:
        exists = connection.execute(sa.text("SELECT to_regclass(:name)"), {"name": table}).scalar()
        if exists is None:
            return 0
        return int(connection.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one())


def runs_of(db_engine: sa.Engine, table: str) -> list[dict[str, Any]]:
    """The run history rows recorded for `table`, oldest first."""
    import sqlalchemy as sa

    with db_engine.connect() as connection:
        if connection.execute(sa.text("SELECT to_regclass('rtarf_sync_runs')")).scalar() is None:
            return []
        rows = connection.execute(
            sa.text("SELECT * FROM rtarf_sync_runs WHERE target_table = :table ORDER BY id"), {"table": table}
        )
        return [dict(row) for row in rows.mappings()]


def prepare_tables(settings: Settings) -> None:
    """Create the target and state tables the way the service does."""
    from rtarf_sync.engine.runs.sync import SyncService

    service = SyncService(settings)
    try:
        service.ensure_tables()
    finally:
        service.close()


@contextmanager
def target_locked(db_engine: sa.Engine, table: str) -> Iterator[None]:
    """Hold a SHARE lock on the target table until the block ends.

    A run that writes a page meanwhile waits, holding its lease.
    """
    import sqlalchemy as sa

    with db_engine.connect() as connection, connection.begin():
        connection.execute(sa.text(f'LOCK TABLE "{table}" IN SHARE MODE'))
        yield


def lease_holder(db_engine: sa.Engine, table: str) -> str | None:
    """The owner of the unexpired lease on `table`, if any."""
    import sqlalchemy as sa

    with db_engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT owner FROM rtarf_sync_lease WHERE name = :name AND expires_at > now()"), {"name": table}
        ).scalar()


def waiting_service_backends(db_engine: sa.Engine) -> int:
    """How many of the service's PostgreSQL sessions are waiting for a lock right now."""
    import sqlalchemy as sa

    with db_engine.connect() as connection:
        return int(
            connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'rtarf-event-sync' AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def held_sink(db_engine: sa.Engine, table: str, source_index: str = "idx") -> tuple[Any, Any, Any, int]:
    """A PostgresSink on a fresh `table`, holding its lease, with a run row to count into:
    (sink, fence, run history, run id)."""
    from datetime import datetime, timezone

    from rtarf_sync.engine.fence import Fence
    from rtarf_sync.engine.runs.lease import Lease
    from rtarf_sync.engine.runs.records import RunHistory
    from rtarf_sync.engine.target.sink import PostgresSink
    from rtarf_sync.engine.target.tables import build_tables, create_tables

    tables = build_tables(table)
    create_tables(db_engine, tables)
    lease = Lease(tables.lease, table, 60)
    with db_engine.begin() as connection:
        fence = lease.acquire(connection, "test-owner")
    assert isinstance(fence, Fence)
    history = RunHistory(db_engine, tables, source_index)
    run_id = history.start("test", "test-owner", datetime.now(timezone.utc))
    return PostgresSink(db_engine, tables, lease.ttl, source_index), fence, history, run_id
