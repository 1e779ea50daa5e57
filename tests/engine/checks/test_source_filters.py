"""Source filters on both engines: the pipeline's query narrows every read (runs, verification, repair,
replay) and never turns a document that stops matching into a deletion; `_source` includes/excludes keep
fields out of PostgreSQL, dead letters included."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from config import ColumnSpec, ConfigError, Settings
from rtarf_sync.engine.checks.repair import verify_and_repair
from rtarf_sync.engine.checks.replay import DeadLetterReplay
from rtarf_sync.engine.runs.sync import SyncService
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import index_docs, rows

BASE = datetime(2026, 5, 1, tzinfo=timezone.utc)
ALERTS = {"term": {"kind": "alert"}}


def _event(n: int, kind: str = "alert", **fields: Any) -> dict[str, Any]:
    moment = BASE + timedelta(minutes=n)
    return {
        "@timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "kind": kind,
        "event": {"severity": n % 5, "action": "login"},
        "user": {"name": f"user{n}", "email": f"user{n}@example.org"},
        "secret": "s3cret",
        **fields,
    }


def _create(engine: EngineHttp, index: str) -> None:
    engine.call(
        "PUT",
        f"/{index}",
        {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "properties": {
                    "@timestamp": {"type": "date"},
                    "kind": {"type": "keyword"},
                    "event": {"properties": {"severity": {"type": "keyword"}}},
                }
            },
        },
    )


def _load(engine: EngineHttp, index: str, docs: dict[str, dict[str, Any]]) -> None:
    assert index_docs(engine, index, docs)["errors"] is False
    engine.refresh(index)


def _live(db: sa.Engine, table: str) -> set[str]:
    return {row.es_id for row in rows(db, f'SELECT es_id FROM "{table}" WHERE deleted_at IS NULL')}


def _filtered(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, query=ALERTS, **changes)


MIXED = {**{f"a{n}": _event(n) for n in range(6)}, **{f"o{n}": _event(10 + n, kind="other") for n in range(4)}}


@pytest.mark.parametrize("read_mode", ["pit", "scroll"])
def test_the_query_narrows_incremental_and_full_runs(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    read_mode: str,
) -> None:
    _create(engine, index_name)
    _load(engine, index_name, MIXED)
    service = SyncService(_filtered(make_settings(engine, index_name, RTARF_SYNC_READ_MODE=read_mode)))
    result = service.run()
    assert (result.status, result.inserted) == ("success", 6)
    assert _live(db_engine, table_name) == {f"a{n}" for n in range(6)}
    full = service.run(mode="full")
    assert (full.status, full.inserted, full.unchanged, full.deleted) == ("success", 0, 6, 0)
    service.close()


def test_a_document_that_stops_matching_is_out_of_scope_never_deleted(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    _create(engine, index_name)
    _load(engine, index_name, MIXED)
    settings = _filtered(make_settings(engine, index_name, RTARF_DELETE_MODE="hard", RTARF_DELETE_MIN_COUNT=0))
    settings = dataclasses.replace(settings, reconcile=dataclasses.replace(settings.reconcile, delete_max_fraction=1.0))
    service = SyncService(settings)
    assert service.run().inserted == 6
    # a1 stops matching (still in the engine), a2 is deleted from the engine.
    _load(engine, index_name, {"a1": _event(1, kind="closed")})
    engine.call("DELETE", f"/{index_name}/_doc/a2?refresh=true")
    for mode, extra in (("full", {}), ("range", {"start": BASE, "end": BASE + timedelta(hours=1)})):
        result = service.run(mode=mode, **extra)
        assert result.status == "success", result.error
    assert _live(db_engine, table_name) == {"a0", "a1", "a3", "a4", "a5"}
    kept = rows(db_engine, f"SELECT source->>'kind' AS kind FROM \"{table_name}\" WHERE es_id = 'a1'")
    assert kept[0].kind == "alert"  # as last written: a document out of scope is neither updated nor deleted
    service.close()


def test_verification_counts_only_matching_documents(
    engine: EngineHttp, index_name: str, make_settings: Callable[..., Settings]
) -> None:
    _create(engine, index_name)
    _load(engine, index_name, MIXED)
    service = SyncService(_filtered(make_settings(engine, index_name)))
    assert service.run().inserted == 6
    answer = verify_and_repair(service, start=BASE, end=BASE + timedelta(hours=1), bucket="1h", repair_drift=True)
    assert (answer["in_step"], answer["source_total"], answer["target_total"]) == (True, 6, 6)
    assert answer["repaired"] is None or answer["repaired"] == []
    service.close()


def test_repair_reads_only_matching_documents(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    _create(engine, index_name)
    _load(engine, index_name, MIXED)
    service = SyncService(_filtered(make_settings(engine, index_name)))
    assert service.run().inserted == 6
    with db_engine.begin() as connection:
        connection.exec_driver_sql(f"DELETE FROM \"{table_name}\" WHERE es_id = 'a3'")
    answer = verify_and_repair(service, start=BASE, end=BASE + timedelta(hours=1), bucket="1h", repair_drift=True)
    assert (answer["source_total"], answer["target_total"]) == (6, 5)
    assert answer["after_repair"]["in_step"] is True
    assert _live(db_engine, table_name) == {f"a{n}" for n in range(6)}
    service.close()


@pytest.mark.parametrize("read_mode", ["pit", "scroll"])
def test_source_includes_and_excludes_keep_fields_out_of_postgresql_and_dead_letters(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    read_mode: str,
) -> None:
    _create(engine, index_name)
    _load(engine, index_name, {"good": _event(1), "bad": _event(2, event={"severity": "high", "action": "x"})})
    settings = dataclasses.replace(
        make_settings(engine, index_name, RTARF_SYNC_READ_MODE=read_mode),
        source_includes=("event.*", "user.*", "kind"),  # the cursor field is kept all the same
        source_excludes=("user.email",),
        columns=(ColumnSpec("severity", "event.severity", "smallint"),),
    )
    service = SyncService(settings)
    result = service.run()
    assert (result.inserted, result.failed) == (1, 1)
    stored = json.loads(rows(db_engine, f'SELECT source::text AS s FROM "{table_name}"')[0].s)
    assert stored == {
        "@timestamp": "2026-05-01T00:01:00.000Z",
        "kind": "alert",
        "event": {"severity": 1, "action": "login"},
        "user": {"name": "user1"},
    }
    (raw,) = [
        row.raw_document
        for row in rows(
            db_engine, "SELECT raw_document FROM rtarf_sync_dead_letters WHERE target_table = :t", t=table_name
        )
    ]
    assert "email" not in raw and "s3cret" not in raw and '"high"' in raw

    # Replayed through the ids lookup: still filtered, and the query applies there too.
    _load(engine, index_name, {"bad": _event(2)})
    outcome = DeadLetterReplay(service).run()
    assert outcome.replayed == 1
    replayed = json.loads(rows(db_engine, f"SELECT source::text AS s FROM \"{table_name}\" WHERE es_id = 'bad'")[0].s)
    assert "email" not in replayed["user"] and "secret" not in replayed
    service.close()


def test_replay_treats_a_document_outside_the_query_as_gone(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    _create(engine, index_name)
    _load(engine, index_name, {"good": _event(1), "bad": _event(2, event={"severity": "high"})})
    settings = _filtered(
        make_settings(engine, index_name), columns=(ColumnSpec("severity", "event.severity", "smallint"),)
    )
    service = SyncService(settings)
    assert service.run().failed == 1
    _load(engine, index_name, {"bad": _event(2, kind="other")})  # fixed, but no longer an alert
    outcome = DeadLetterReplay(service).run()
    assert (outcome.replayed, outcome.gone) == (0, 1)
    assert _live(db_engine, table_name) == {"good"}
    service.close()


def test_excludes_that_drop_the_cursor_field_are_refused(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(index="rtarf-events-x")
    for excluded in ("@timestamp", "@*", "*"):
        with pytest.raises(ConfigError, match="drops the cursor field"):
            SyncService(dataclasses.replace(settings, source_excludes=(excluded,)))
    nested = dataclasses.replace(settings, cursor_field="event.created", source_excludes=("event",))
    with pytest.raises(ConfigError, match="drops the cursor field event.created"):
        SyncService(nested)
