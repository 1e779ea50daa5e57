"""Exact counts, checked against an independent oracle, on both engines."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.target.documents import EventRow
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.records import RunHistory
from rtarf_sync.sample import bulk_payload, make_event
from rtarf_sync.engine.target.sink import PostgresSink
from rtarf_sync.engine.runs.sync import SyncService
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import engine_docs, index_docs, scalar, table_docs

# Re-read everything on every run, so counts can be checked against the whole index.
FULL_OVERLAP = {"RTARF_SYNC_OVERLAP_SECONDS": 86400 * 3650, "RTARF_SYNC_BATCH_SIZE": 100}


def _load(engine: EngineHttp, index: str, count: int, first: int = 0) -> None:
    engine.create_index(index) if first == 0 else None
    engine.bulk(bulk_payload(index, (make_event(n) for n in range(first, first + count))))
    engine.refresh(index)


def test_first_load_then_rerun_then_changes(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    _load(engine, index_name, 450)
    service = SyncService(make_settings(engine, index_name, **FULL_OVERLAP))
    first = service.run()
    assert (first.status, first.inserted, first.updated, first.unchanged, first.failed) == ("success", 450, 0, 0, 0)
    assert first.total_processed == 450 and first.pages == 5
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)

    again = service.run()
    assert (again.status, again.inserted, again.updated, again.unchanged) == ("success", 0, 0, 450)

    changed = {
        make_event(n)["event"]["id"]: {**make_event(n), "severity": "critical", "note": f"triaged {n}"}
        for n in range(0, 450, 9)
    }
    assert index_docs(engine, index_name, changed)["errors"] is False
    engine.refresh(index_name)
    third = service.run()
    assert (third.inserted, third.updated, third.unchanged) == (0, len(changed), 450 - len(changed))
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
    service.close()


def test_new_events_are_inserted_and_counted(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    _load(engine, index_name, 120)
    service = SyncService(make_settings(engine, index_name, RTARF_SYNC_OVERLAP_SECONDS=0))
    assert service.run().inserted == 120
    _load(engine, index_name, 30, first=120)
    result = service.run()
    # Overlap 0 re-reads only the events at the stored cursor instant itself.
    assert (result.inserted, result.updated, result.unchanged) == (30, 0, 1)
    assert scalar(db_engine, f'SELECT count(*) FROM "{table_name}"') == 150
    service.close()


def test_first_synced_at_is_kept_and_last_synced_at_moves(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    _load(engine, index_name, 3)
    service = SyncService(make_settings(engine, index_name, **FULL_OVERLAP))
    service.run()
    doc_id = make_event(1)["event"]["id"]
    before = scalar(db_engine, f'SELECT first_synced_at FROM "{table_name}" WHERE es_id = :i', i=doc_id)
    index_docs(engine, index_name, {doc_id: {**make_event(1), "severity": "low"}})
    engine.refresh(index_name)
    assert service.run().updated == 1
    with db_engine.connect() as connection:
        row = connection.execute(
            sa.text(f'SELECT first_synced_at, last_synced_at, source FROM "{table_name}" WHERE es_id = :i'),
            {"i": doc_id},
        ).one()
    assert row.first_synced_at == before and row.last_synced_at > before
    assert row.source["severity"] == "low"
    service.close()


def _row(doc_id: str, seq_no: int, term: int = 1, note: str = "") -> EventRow:
    stamp = datetime(2025, 11, 14, tzinfo=timezone.utc) + timedelta(seconds=seq_no)
    return EventRow("idx", doc_id, stamp, f'{{"note": "{note}"}}'.encode(), seq_no, term)


def test_same_document_twice_in_one_page_keeps_the_newest(
    sink_parts: tuple[PostgresSink, Fence, RunHistory, int], db_engine: sa.Engine, table_name: str
) -> None:
    sink, fence, history, run_id = sink_parts
    page = [_row("a", 3, note="old"), _row("b", 4), _row("a", 7, note="new"), _row("b", 4)]
    counts = sink.write_page(page, [], fence, run_id, 1)
    assert (counts.inserted, counts.updated, counts.unchanged) == (2, 0, 2)
    assert scalar(db_engine, f"SELECT source->>'note' FROM \"{table_name}\" WHERE es_id = 'a'") == "new"
    assert history.committed(run_id) == (1, counts)


def test_older_version_after_newer_is_not_written(
    sink_parts: tuple[PostgresSink, Fence, RunHistory, int], db_engine: sa.Engine, table_name: str
) -> None:
    sink, fence, history, run_id = sink_parts
    assert sink.write_page([_row("a", 9, term=2, note="newest")], [], fence, run_id, 1).inserted == 1
    stale = sink.write_page([_row("a", 50, term=1, note="older term"), _row("a", 8, term=2)], [], fence, run_id, 2)
    assert (stale.inserted, stale.updated, stale.unchanged) == (0, 0, 2)
    newer = sink.write_page([_row("a", 10, term=2, note="newer")], [], fence, run_id, 3)
    assert (newer.updated, newer.unchanged) == (1, 0)
    with db_engine.connect() as connection:
        row = connection.execute(sa.text(f'SELECT es_primary_term, es_seq_no, source FROM "{table_name}"')).one()
    assert (row.es_primary_term, row.es_seq_no, row.source["note"]) == (2, 10, "newer")


def test_escapes_and_unicode_round_trip_exactly(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    engine.create_index(index_name)
    tricky = {
        "tab\tand\\backslash": {**make_event(1), "message": "C:\\Windows\\System32\ttab\nnewline\rreturn \\u0000 text"},
        "thai-ไทย": {**make_event(2), "user": {"name": "สมชาย", "note": "emoji 🛡️ and \\\\ two backslashes"}},
        'quote"id': {
            **make_event(3),
            "rule": {"name": 'a "quoted" rule', "nested": [{"x": None}, {"x": "y"}], "empty": []},
        },
    }
    assert index_docs(engine, index_name, tricky)["errors"] is False
    engine.refresh(index_name)
    service = SyncService(make_settings(engine, index_name))
    result = service.run()
    assert (result.status, result.inserted, result.failed) == ("success", 3, 0), result.error
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
    service.close()
