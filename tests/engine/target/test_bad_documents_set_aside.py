"""Documents that cannot be stored are set aside with their reason; the rest of the page lands."""

from __future__ import annotations

from typing import Callable

import sqlalchemy as sa

from config import Settings
from rtarf_sync.sample import make_event
from rtarf_sync.engine.runs.sync import SyncService
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import index_docs, rows, scalar

NUL = "\u0000"


def _create_lenient_index(engine: EngineHttp, index: str) -> None:
    """A date-mapped cursor that still accepts malformed values, as many real indices do."""
    engine.call(
        "PUT",
        f"/{index}",
        {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"properties": {"@timestamp": {"type": "date", "ignore_malformed": True}}},
        },
    )


def _bad_and_good(index: str) -> dict[str, dict[str, object]]:
    docs: dict[str, dict[str, object]] = {f"good-{n}": make_event(n) for n in range(8)}
    docs["not-a-date"] = {**make_event(100), "@timestamp": "yesterday afternoon"}
    docs["nul-char"] = {**make_event(101), "message": f"payload with a NUL{NUL}inside"}
    docs["too-big"] = {**make_event(102), "blob": "x" * 6000}
    docs["no-cursor"] = {"message": "no timestamp at all"}
    return docs


def test_bad_documents_go_to_dead_letters_and_the_page_still_lands(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    _create_lenient_index(engine, index_name)
    assert index_docs(engine, index_name, _bad_and_good(index_name))["errors"] is False
    engine.refresh(index_name)
    service = SyncService(
        make_settings(engine, index_name, RTARF_SYNC_MAX_DOCUMENT_BYTES=5000, RTARF_SYNC_BATCH_SIZE=50)
    )
    result = service.run()
    assert (result.status, result.inserted, result.failed, result.pages) == ("partial", 8, 4, 1)
    stored = {row.es_id for row in rows(db_engine, f'SELECT es_id FROM "{table_name}"')}
    assert stored == {f"good-{n}" for n in range(8)}
    dead = {
        row.es_id: row
        for row in rows(
            db_engine,
            "SELECT es_index, es_id, reason, failed_at, raw_document FROM rtarf_sync_dead_letters "
            "WHERE target_table = :t",
            t=table_name,
        )
    }
    assert set(dead) == {"not-a-date", "nul-char", "too-big", "no-cursor"}
    assert "not a date" in dead["not-a-date"].reason
    assert "NUL" in dead["nul-char"].reason and "\\u0000" in dead["nul-char"].raw_document
    assert "over the limit of 5000" in dead["too-big"].reason
    assert "missing cursor field @timestamp" in dead["no-cursor"].reason
    assert all(row.es_index == index_name and row.failed_at is not None for row in dead.values())
    assert '"yesterday afternoon"' in dead["not-a-date"].raw_document
    service.close()


def test_rerun_does_not_dead_letter_the_same_version_twice(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    _create_lenient_index(engine, index_name)
    index_docs(engine, index_name, _bad_and_good(index_name))
    engine.refresh(index_name)
    settings = make_settings(
        engine, index_name, RTARF_SYNC_MAX_DOCUMENT_BYTES=5000, RTARF_SYNC_OVERLAP_SECONDS=86400 * 3650
    )
    service = SyncService(settings)
    assert service.run().failed == 4
    again = service.run()
    assert (again.status, again.failed, again.known_bad, again.unchanged) == ("success", 0, 4, 8)
    count = "SELECT count(*) FROM rtarf_sync_dead_letters WHERE target_table = :t"
    assert scalar(db_engine, count, t=table_name) == 4
    # A new version of a bad document is a new dead letter; a fixed one lands.
    index_docs(
        engine, index_name, {"nul-char": {**make_event(101), "message": f"still{NUL}bad"}, "too-big": make_event(102)}
    )
    engine.refresh(index_name)
    third = service.run()
    assert (third.failed, third.inserted) == (1, 1)
    assert scalar(db_engine, count, t=table_name) == 5
    service.close()


def test_a_row_postgresql_refuses_is_set_aside_by_its_error(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    """A row that passes every check here but breaks a constraint an operator added costs only that row."""
    engine.create_index(index_name)
    index_docs(
        engine,
        index_name,
        {"ok-1": make_event(1), "ok-2": make_event(2), "refused": {**make_event(3), "severity": "forbidden"}},
    )
    engine.refresh(index_name)
    service = SyncService(make_settings(engine, index_name))
    service.ensure_tables()
    with db_engine.begin() as connection:
        connection.execute(
            sa.text(
                f"ALTER TABLE \"{table_name}\" ADD CONSTRAINT no_forbidden CHECK (source->>'severity' <> 'forbidden')"
            )
        )
    result = service.run()
    assert (result.status, result.inserted, result.failed) == ("partial", 2, 1), result.error
    reason = scalar(
        db_engine,
        "SELECT reason FROM rtarf_sync_dead_letters WHERE target_table = :t AND es_id = :i",
        t=table_name,
        i="refused",
    )
    assert "PostgreSQL refused the row" in reason and "no_forbidden" in reason
    assert {r.es_id for r in rows(db_engine, f'SELECT es_id FROM "{table_name}"')} == {"ok-1", "ok-2"}
    service.close()
