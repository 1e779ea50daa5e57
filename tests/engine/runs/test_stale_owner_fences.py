"""A run that lost its lease after its last page changes nothing more: its end-of-run steps are fenced.

test_sync_faults.py pins the page fence (a stale owner's next page is refused).
A full run has two more write steps after its pages: a sliced run moves the
stored cursor once at the end, and every full run applies its deletions. Here
the lease is taken over while the run is between its last page and those
steps (stalled on a slow engine answer), and neither step may land.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Callable

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.engine.runs.sync import SyncService
from tests.infra.esserver import EsProtocolServer
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import deleted_keys, index_docs, scalar, stored_cursor
from tests.infra.support import prepare_tables, wait_for

BASE = datetime(2026, 4, 1, tzinfo=timezone.utc)
STALL = 4  # seconds an engine answer is held back, while the test takes the lease over


def _loaded(engine: EngineHttp, index: str) -> None:
    engine.create_index(index)
    index_docs(
        engine, index, {f"e{n:02d}": {"@timestamp": engine_time(BASE + timedelta(hours=n)), "n": n} for n in range(12)}
    )
    engine.refresh(index)


def _take_over(db: sa.Engine, table: str) -> None:
    """Another owner takes the lease (a new epoch) and lets it lapse, in one statement (as test_sync_faults)."""
    with db.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE rtarf_sync_lease SET epoch = epoch + 1, owner = 'an-owner-since-gone', "
                "expires_at = now() - interval '1 second' WHERE name = :t"
            ),
            {"t": table},
        )


def _run_in_thread(service: SyncService) -> tuple[threading.Thread, dict[str, SyncResult]]:
    outcome: dict[str, SyncResult] = {}
    worker = threading.Thread(target=lambda: outcome.update(result=service.run(mode="full")))
    worker.start()
    return worker, outcome


def test_a_sliced_full_run_that_lost_its_lease_after_its_pages_does_not_move_the_cursor(
    elasticsearch: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    _loaded(elasticsearch, index_name)
    settings = make_settings(elasticsearch, index_name, RTARF_SYNC_SLICES=2)
    prepare_tables(settings)
    es_server.faults.only_paths("_search")
    # Each slice reads one page of documents, then an empty page; every answer is held back, so the
    # empty pages arrive a whole STALL after both pages were committed.
    es_server.faults.delay_next(4, STALL)
    service = SyncService(settings)
    worker, outcome = _run_in_thread(service)
    try:
        wait_for(
            lambda: scalar(db_engine, "SELECT max(pages) FROM rtarf_sync_runs WHERE target_table = :t", t=table_name)
            == 2,
            timeout=30,
            what="both slices' pages committed",
        )
        _take_over(db_engine, table_name)
    finally:
        worker.join(60)
        service.close()
    result = outcome["result"]
    assert result.status == "failed" and "taken over" in (result.error or ""), result
    assert stored_cursor(db_engine, table_name) is None, "the stale owner moved the cursor"


def test_a_full_run_that_lost_its_lease_while_confirming_deletions_deletes_nothing(
    elasticsearch: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    _loaded(elasticsearch, index_name)
    settings = make_settings(elasticsearch, index_name)
    service = SyncService(settings)
    try:
        assert service.run().inserted == 12
        elasticsearch.call("DELETE", f"/{index_name}/_doc/e05")
        elasticsearch.refresh(index_name)
        es_server.faults.only_paths("_search")
        es_server.faults.delay_next(2, 0)  # the page of documents and the empty page
        es_server.faults.delay_next(1, STALL)  # then the lookup that confirms e05 is gone
        worker, outcome = _run_in_thread(service)
        try:
            run_id = wait_for(
                lambda: scalar(
                    db_engine,
                    "SELECT max(id) FROM rtarf_sync_runs WHERE target_table = :t AND mode = 'full'",
                    t=table_name,
                ),
                what="the full run",
            )
            wait_for(
                lambda: scalar(db_engine, "SELECT to_regclass(:g) IS NOT NULL", g=f"rtarf_sync_gone_{run_id}"),
                timeout=30,
                what="the candidates for deletion",
            )
            _take_over(db_engine, table_name)
        finally:
            worker.join(60)
    finally:
        service.close()
    result = outcome["result"]
    assert result.status == "failed" and "taken over" in (result.error or ""), result
    assert (result.deleted, deleted_keys(db_engine, table_name)) == (0, set()), "the stale owner deleted rows"
