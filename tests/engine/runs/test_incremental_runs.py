"""Incremental runs: equal timestamps, late-visible events, and a process killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.sample import bulk_payload, make_event
from rtarf_sync.engine.runs.sync import SyncService
from tests.infra.esserver import EsProtocolServer
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import engine_docs, index_docs, rows, scalar, table_docs
from tests.infra.support import lease_holder, wait_for

REPO = Path(__file__).resolve().parents[3]


def test_three_pages_sharing_one_timestamp_all_arrive(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    engine.create_index(index_name)
    stamp = "2025-11-14T10:00:00.000Z"
    index_docs(engine, index_name, {f"a{n:03d}": {"@timestamp": stamp, "n": n} for n in range(35)})
    engine.refresh(index_name)
    service = SyncService(make_settings(engine, index_name, RTARF_SYNC_BATCH_SIZE=10, RTARF_SYNC_OVERLAP_SECONDS=0))
    first = service.run()
    assert (first.inserted, first.pages) == (35, 4)
    # More events at the very same instant arrive after the cursor reached it.
    index_docs(engine, index_name, {f"b{n:03d}": {"@timestamp": stamp, "n": n} for n in range(25)})
    engine.refresh(index_name)
    second = service.run()
    assert (second.inserted, second.unchanged) == (25, 35)
    assert scalar(db_engine, f'SELECT count(*) FROM "{table_name}"') == 60
    service.close()


def test_late_visible_events_older_than_the_cursor_arrive_next_run(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    engine.create_index(index_name)
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    index_docs(
        engine, index_name, {f"on-time-{n}": {"@timestamp": engine_time(now + timedelta(seconds=n))} for n in range(20)}
    )
    engine.refresh(index_name)
    service = SyncService(make_settings(engine, index_name, RTARF_SYNC_OVERLAP_SECONDS=60))
    assert service.run().inserted == 20
    # Indexed earlier but visible only now (a slow pipeline), stamped before the cursor.
    index_docs(
        engine,
        index_name,
        {
            "late-1": {"@timestamp": engine_time(now + timedelta(seconds=3))},
            "late-2": {"@timestamp": engine_time(now - timedelta(seconds=30))},
        },
    )
    engine.refresh(index_name)
    second = service.run()
    assert (second.inserted, second.updated) == (2, 0)
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
    service.close()


def test_events_newer_than_the_settle_lag_wait_for_the_next_run(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    engine.create_index(index_name)
    now = datetime.now(timezone.utc)
    index_docs(
        engine,
        index_name,
        {
            "settled": {"@timestamp": engine_time(now - timedelta(minutes=10))},
            "fresh": {"@timestamp": engine_time(now - timedelta(seconds=2))},
        },
    )
    engine.refresh(index_name)
    settling = SyncService(make_settings(engine, index_name, RTARF_SYNC_SETTLE_SECONDS=60))
    assert settling.run().inserted == 1
    settling.close()
    settled = SyncService(make_settings(engine, index_name, RTARF_SYNC_SETTLE_SECONDS=0))
    assert settled.run().inserted == 1
    settled.close()
    assert scalar(db_engine, f'SELECT count(*) FROM "{table_name}"') == 2


def test_changing_the_index_setting_starts_from_the_beginning(
    engine: EngineHttp, index_name: str, make_settings: Callable[..., Settings]
) -> None:
    engine.create_index(index_name)
    engine.bulk(bulk_payload(index_name, (make_event(n) for n in range(40))))
    engine.refresh(index_name)
    narrow = SyncService(make_settings(engine, index_name, RTARF_SYNC_OVERLAP_SECONDS=0))
    assert narrow.run().inserted == 40
    assert narrow.run().total_processed == 1
    narrow.close()
    wide = SyncService(make_settings(engine, f"{index_name}*", RTARF_SYNC_OVERLAP_SECONDS=0))
    again = wide.run()
    assert (again.total_processed, again.unchanged) == (40, 40)
    wide.close()


_CHILD = """
import os, sys
sys.path.insert(0, {repo!r})
from config import load_settings
from rtarf_sync.engine.runs.sync import SyncService
print(SyncService(load_settings(os.environ)).run().status, flush=True)
"""


def test_sigkill_between_pages_leaves_postgres_consistent(
    elasticsearch: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    elasticsearch.create_index(index_name)
    elasticsearch.bulk(bulk_payload(index_name, (make_event(n) for n in range(300))))
    elasticsearch.refresh(index_name)
    settings_env = {
        "RTARF_DATABASE_URL": make_settings().database_url.reveal(),
        "RTARF_TABLE": table_name,
        "RTARF_ES_URL": elasticsearch.url,
        "RTARF_ES_INDEX": index_name,
        "RTARF_SOURCE_ENGINE": "elasticsearch",
        "RTARF_SYNC_BATCH_SIZE": "20",
        "RTARF_SYNC_SETTLE_SECONDS": "0",
        "RTARF_LEASE_TTL_SECONDS": "5",
    }
    SyncService(make_settings(elasticsearch, index_name)).ensure_tables()
    es_server.faults.only_paths("_search")
    es_server.faults.delay_next(1000, 0.15)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(repo=str(REPO))],
        env={**os.environ, **settings_env},
        stdout=subprocess.PIPE,
    )
    wait_for(
        lambda: (scalar(db_engine, "SELECT max(pages) FROM rtarf_sync_runs WHERE target_table = :t", t=table_name) or 0)
        >= 3,
        timeout=60,
        what="three committed pages",
    )
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    es_server.faults.reset()
    landed = scalar(db_engine, f'SELECT count(*) FROM "{table_name}"')
    assert 60 <= landed < 300 and landed % 20 == 0, "only whole pages are committed"
    wait_for(lambda: lease_holder(db_engine, table_name) is None, what="the killed owner's lease to expire")
    result = SyncService(make_settings(elasticsearch, index_name, RTARF_LEASE_TTL_SECONDS=5)).run()
    assert result.status == "success", result.error
    assert result.inserted == 300 - landed
    assert table_docs(db_engine, table_name) == engine_docs(elasticsearch, index_name)
    killed = rows(
        db_engine, "SELECT status, error FROM rtarf_sync_runs WHERE target_table = :t ORDER BY id LIMIT 1", t=table_name
    )[0]
    # The killed run never recorded its end; the next run closed it as abandoned.
    assert killed.status == "failed" and killed.error.startswith("abandoned:")
