"""A new or changed typed column is added at start-up and filled from the stored `source`, in batches,
without reading the engine; a removed column stays in the table with a warning."""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

import pytest
import sqlalchemy as sa

from config import ColumnSpec, Settings
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.columns.schema import apply_columns
from tests.engine.target.test_typed_columns import create_index, event
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import index_docs, rows

SEVERITY = ColumnSpec("severity", "event.severity", "smallint", index=True)
RULE = ColumnSpec("rule_name", "rule.name", "text")


def _synced_without_columns(
    engine: EngineHttp, index_name: str, make_settings: Callable[..., Settings], count: int = 10
) -> Settings:
    create_index(engine, index_name)
    docs = {f"d{n:02d}": event(n) for n in range(count)}
    docs["odd"] = event(50, event={"severity": "high"}, rule={"name": ["a", "b"]})
    index_docs(engine, index_name, docs)
    engine.refresh(index_name)
    settings = make_settings(engine, index_name)
    service = SyncService(settings)
    assert service.run().inserted == count + 1
    service.close()
    # Gone from the engine: whatever fills the columns now can only read PostgreSQL.
    engine.call("DELETE", f"/{index_name}")
    return settings


def _column(db: sa.Engine, table: str, column: str) -> dict[str, object]:
    return {row[0]: row[1] for row in rows(db, f'SELECT es_id, "{column}" FROM "{table}"')}


def test_a_new_column_is_added_and_filled_from_the_stored_source_in_batches(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _synced_without_columns(engine, index_name, make_settings)
    service = SyncService(dataclasses.replace(settings, columns=(SEVERITY, RULE)))
    changes = apply_columns(service.engine, service.tables, batch=3)  # 11 rows: four batches
    assert (changes.added, changes.filled, changes.rows, changes.not_converted) == (
        ["severity", "rule_name"],
        ["severity", "rule_name"],
        11,
        2,
    )
    severity = _column(db_engine, table_name, "severity")
    assert severity == {**{f"d{n:02d}": n % 5 for n in range(10)}, "odd": None}
    assert _column(db_engine, table_name, "rule_name")["d07"] == "rule-7"
    assert "2 value(s) did not convert and were stored as NULL" in caplog.text
    recorded = rows(db_engine, "SELECT name, path, type FROM rtarf_sync_columns WHERE target_table = :t", t=table_name)
    assert sorted(recorded) == [("rule_name", "rule.name", "text"), ("severity", "event.severity", "smallint")]
    indexes = rows(db_engine, "SELECT indexname FROM pg_indexes WHERE tablename = :t", t=table_name)
    assert (f"{table_name}_severity_idx",) in indexes
    # Started again with the same columns: nothing to add or fill.
    again = apply_columns(service.engine, service.tables)
    assert (again.added, again.filled, again.rows) == ([], [], 0)
    service.close()


def test_a_changed_path_or_type_refills_and_a_removed_column_stays_with_a_warning(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _synced_without_columns(engine, index_name, make_settings)
    SyncService(dataclasses.replace(settings, columns=(SEVERITY, RULE))).ensure_tables()

    moved = dataclasses.replace(RULE, path="source.ip")
    retyped = dataclasses.replace(SEVERITY, type="text")
    service = SyncService(dataclasses.replace(settings, columns=(retyped, moved)))
    changes = apply_columns(service.engine, service.tables)
    assert (changes.added, changes.retyped, changes.filled) == ([], ["severity"], ["severity", "rule_name"])
    assert _column(db_engine, table_name, "rule_name")["d03"] == "10.1.2.3"
    assert _column(db_engine, table_name, "severity")["odd"] == "high"
    types = dict(
        rows(
            db_engine,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = :t",
            t=table_name,
        )
    )
    assert types["severity"] == "text"

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        SyncService(dataclasses.replace(settings, columns=(moved,))).ensure_tables()
    assert "keeps column(s) no longer configured, unwritten from now on: severity" in caplog.text
    assert "severity" in types and _column(db_engine, table_name, "severity")["d01"] == "1"
    recorded = rows(db_engine, "SELECT name FROM rtarf_sync_columns WHERE target_table = :t", t=table_name)
    assert recorded == [("rule_name",)]
    service.close()
