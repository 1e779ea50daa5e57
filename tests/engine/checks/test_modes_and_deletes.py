"""Run modes and delete reconciliation, on both engines, end to end through `POST /scheduler/sync-now`.

Every scenario ends with the live rows of the table equal to the engine's documents,
read by the independent oracle (plain REST and plain SQL).
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.service.scheduler import RtarfEventScheduler
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import deleted_keys, engine_docs, index_docs, stored_cursor, table_docs
from tests.infra.support import target_locked, waiting_service_backends, wait_for

BASE = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=2)
Post = Callable[..., dict[str, Any]]


def events(prefix: str, count: int, start: int = 0) -> dict[str, dict[str, Any]]:
    """`count` events an hour apart from BASE + `start` hours."""
    return {
        f"{prefix}{n:02d}": {"@timestamp": engine_time(BASE + timedelta(hours=n)), "n": n}
        for n in range(start, start + count)
    }


def delete_docs(engine: EngineHttp, index: str, *ids: str) -> None:
    """Delete documents by id and make it visible."""
    for doc_id in ids:
        engine.call("DELETE", f"/{index}/_doc/{doc_id}")
    engine.refresh(index)


@pytest.fixture
def make_client(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Post]]:
    """Apps over the real engine and database; `post(body, status)` calls sync-now and checks the status."""
    apps: list[Flask] = []

    def build(engine: EngineHttp, index: str, **env: Any) -> Post:
        settings = make_settings(engine, index, RTARF_SYNC_ENABLED="false", **env)
        app = create_app(settings, scheduler=RtarfEventScheduler(settings=settings))
        apps.append(app)
        client: FlaskClient = app.test_client()

        def post(body: dict[str, Any] | None = None, status: int = 200) -> dict[str, Any]:
            answer = (
                client.post("/scheduler/sync-now", json=body)
                if body is not None
                else client.post("/scheduler/sync-now")
            )
            assert answer.status_code == status, answer.get_json()
            return answer.get_json()["result"]

        return post

    yield build
    for app in apps:
        scheduler_of(app).shutdown(timeout=10)


def assert_in_step(db: sa.Engine, table: str, engine: EngineHttp, index: str) -> None:
    """The live rows are exactly the engine's documents, versions and sources included."""
    assert table_docs(db, table, live=True) == engine_docs(engine, index)


def test_full_run_soft_deletes_what_is_gone_and_a_recreated_document_comes_back(
    engine: EngineHttp, index_name: str, table_name: str, db_engine: sa.Engine, make_client: Callable[..., Post]
) -> None:
    engine.create_index(index_name)
    index_docs(engine, index_name, events("e", 12))
    engine.refresh(index_name)
    post = make_client(engine, index_name)
    assert post()["inserted"] == 12
    cursor = stored_cursor(db_engine, table_name)
    # The two newest go: a full run marks them, and must not move the cursor back to e09.
    delete_docs(engine, index_name, "e10", "e11")
    full = post({"mode": "full"})
    assert (full["mode"], full["deleted"], full["unchanged"]) == ("full", 2, 10)
    assert deleted_keys(db_engine, table_name) == {(index_name, "e10"), (index_name, "e11")}
    assert stored_cursor(db_engine, table_name) == cursor
    assert_in_step(db_engine, table_name, engine, index_name)
    # Re-created: the next run that reads it writes it again, clears deleted_at, counts it updated.
    index_docs(engine, index_name, {"e10": events("e", 12)["e10"]})
    engine.refresh(index_name)
    again = post({"mode": "full"})
    assert (again["updated"], again["deleted"]) == (1, 0)
    assert deleted_keys(db_engine, table_name) == {(index_name, "e11")}
    assert_in_step(db_engine, table_name, engine, index_name)


def test_range_run_hard_deletes_inside_its_window_only_and_never_moves_the_cursor(
    engine: EngineHttp, index_name: str, table_name: str, db_engine: sa.Engine, make_client: Callable[..., Post]
) -> None:
    engine.create_index(index_name)
    index_docs(engine, index_name, events("e", 12))
    engine.refresh(index_name)
    post = make_client(engine, index_name, RTARF_DELETE_MODE="hard")
    assert post()["inserted"] == 12
    cursor = stored_cursor(db_engine, table_name)
    # The window is hours 2 to 24: e03 is deleted inside it, e00 below it; e04 moves out of it
    # (its cursor value changed), and two late events arrive in it, above the stored cursor.
    delete_docs(engine, index_name, "e03", "e00")
    moved = {"e04": {"@timestamp": engine_time(BASE + timedelta(hours=30)), "n": 4}}
    index_docs(engine, index_name, {**moved, **events("late", 2, start=20)})
    engine.refresh(index_name)
    window = {
        "mode": "range",
        "from": engine_time(BASE + timedelta(hours=2)),
        "to": engine_time(BASE + timedelta(hours=24)),
    }
    ranged = post(window)
    assert (ranged["mode"], ranged["deleted"], ranged["inserted"]) == ("range", 1, 2)
    keys = set(table_docs(db_engine, table_name))
    assert (index_name, "e03") not in keys and {(index_name, "e04"), (index_name, "e00")} <= keys
    assert stored_cursor(db_engine, table_name) == cursor
    # A full run settles the rest: e00 is gone, e04 has its new version.
    full = post({"mode": "full"})
    assert (full["deleted"], full["updated"]) == (1, 1)
    assert stored_cursor(db_engine, table_name) > cursor
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)


def test_rows_of_a_deleted_index_are_left_alone_unless_asked(
    engine: EngineHttp, index_name: str, table_name: str, db_engine: sa.Engine, make_client: Callable[..., Post]
) -> None:
    kept, dropped = f"{index_name}-kept", f"{index_name}-old"
    for index, docs in ((kept, events("k", 10)), (dropped, events("o", 2))):
        engine.create_index(index)
        index_docs(engine, index, docs)
        engine.refresh(index)
    post = make_client(engine, f"{index_name}-*")
    assert post()["inserted"] == 12
    engine.delete_index(dropped)  # retention, not deletion
    delete_docs(engine, kept, "k00")
    assert post({"mode": "full"})["deleted"] == 1
    assert len(table_docs(db_engine, table_name, live=True)) == 11
    vanishing = make_client(engine, f"{index_name}-*", RTARF_DELETE_VANISHED_INDICES="true")
    assert vanishing({"mode": "full"})["deleted"] == 2
    assert_in_step(db_engine, table_name, engine, f"{index_name}-*")
    engine.delete_index(kept)


def test_the_safety_valve_stops_deletions_above_its_floor_and_fraction_and_force_overrides(
    engine: EngineHttp, index_name: str, table_name: str, db_engine: sa.Engine, make_client: Callable[..., Post]
) -> None:
    engine.create_index(index_name)
    index_docs(engine, index_name, events("e", 12))
    engine.refresh(index_name)
    assert make_client(engine, index_name)()["inserted"] == 12
    delete_docs(engine, index_name, "e01", "e02", "e03")  # 25% of the rows, over the 20% fraction
    strict = make_client(engine, index_name, RTARF_DELETE_MIN_COUNT="2")
    refused = strict({"mode": "full"}, status=500)
    assert refused["status"] == "failed" and refused["deleted"] == 0
    assert "3 of 12 live rows" in refused["error"] and "RTARF_DELETE_MAX_FRACTION=0.2" in refused["error"]
    assert "RTARF_DELETE_MIN_COUNT=2" in refused["error"]
    assert deleted_keys(db_engine, table_name) == set()
    assert strict({"mode": "full", "force": True})["deleted"] == 3
    # The floor: up to RTARF_DELETE_MIN_COUNT deletions pass whatever the fraction.
    delete_docs(engine, index_name, "e04", "e05", "e06")  # 3 of the 9 live rows left: a third
    floor = make_client(engine, index_name, RTARF_DELETE_MIN_COUNT="3")
    assert floor({"mode": "full"})["deleted"] == 3
    assert_in_step(db_engine, table_name, engine, index_name)


def test_a_document_indexed_while_a_full_run_reads_is_not_deleted(
    engine: EngineHttp, index_name: str, table_name: str, db_engine: sa.Engine, make_settings: Callable[..., Settings]
) -> None:
    engine.create_index(index_name)
    index_docs(engine, index_name, events("e", 10))
    engine.refresh(index_name)
    service = SyncService(make_settings(engine, index_name, RTARF_SYNC_BATCH_SIZE=2))
    assert service.run().inserted == 10
    delete_docs(engine, index_name, "e05")  # gone when the full run's point in time opens ...
    outcome: list[SyncResult] = []
    with target_locked(db_engine, "rtarf_sync_cursor"):
        runner = threading.Thread(target=lambda: outcome.append(service.run(mode="full")))
        runner.start()
        wait_for(lambda: waiting_service_backends(db_engine), what="the full run to wait on its first page")
        # ... and back, with a new event, while the run reads.
        index_docs(engine, index_name, {"e05": events("e", 10)["e05"], **events("new", 1, start=40)})
        engine.refresh(index_name)
    runner.join(60)
    (full,) = outcome
    assert (full.status, full.deleted, full.total_processed) == ("success", 0, 9)
    assert deleted_keys(db_engine, table_name) == set()
    assert service.run(mode="full").deleted == 0
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
    service.close()


def test_one_and_four_slices_bring_the_same_rows(
    engine: EngineHttp, index_name: str, db_engine: sa.Engine, make_settings: Callable[..., Settings]
) -> None:
    engine.create_index(index_name, shards=2)
    index_docs(engine, index_name, {**events("e", 40), "no-stamp": {"n": -1}})
    engine.refresh(index_name)
    tables = []
    for slices in (1, 4):
        table = f"sliced_{slices}_{index_name[-10:]}"
        service = SyncService(
            make_settings(engine, index_name, RTARF_TABLE=table, RTARF_SYNC_SLICES=slices, RTARF_SYNC_BATCH_SIZE=7)
        )
        result = service.run(mode="full")
        service.close()
        assert (result.status, result.inserted, result.failed) == ("partial", 40, 1), result.error
        assert stored_cursor(db_engine, table) == BASE + timedelta(hours=39)
        tables.append(table_docs(db_engine, table))
    assert (
        tables[0]
        == tables[1]
        == {key: doc for key, doc in engine_docs(engine, index_name).items() if key[1] != "no-stamp"}
    )


def test_cli_sync_runs_full_and_range(
    elasticsearch: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rtarf_sync.cli.main import main

    elasticsearch.create_index(index_name)
    index_docs(elasticsearch, index_name, events("e", 6))
    elasticsearch.refresh(index_name)
    make_settings(elasticsearch, index_name)  # the same variables, checked
    for name, value in {
        "RTARF_DATABASE_URL": str(db_engine.url.render_as_string(hide_password=False)),
        "RTARF_TABLE": table_name,
        "RTARF_ES_URL": elasticsearch.url,
        "RTARF_ES_INDEX": index_name,
        "RTARF_SOURCE_ENGINE": "elasticsearch",
        "RTARF_SYNC_SETTLE_SECONDS": "0",
        "RTARF_DELETE_MIN_COUNT": "0",
    }.items():  # so the valve's fraction decides
        monkeypatch.setenv(name, value)
    start, end = engine_time(BASE), engine_time(BASE + timedelta(hours=3))
    assert main(["sync", "--progress-every", "0", "--from", start, "--to", end]) == 0
    ranged = json.loads(capsys.readouterr().out)
    assert (ranged["mode"], ranged["inserted"], ranged["cursor"]) == ("range", 3, None)
    delete_docs(elasticsearch, index_name, "e00", "e01")  # 2 of the 6 rows a full run answers for
    assert main(["sync", "--progress-every", "0", "--full"]) == 1
    refused = json.loads(capsys.readouterr().out)
    assert (refused["inserted"], refused["deleted"]) == (3, 0) and "2 of 6 live rows" in refused["error"]
    assert main(["sync", "--progress-every", "0", "--full", "--force"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert (full["mode"], full["inserted"], full["unchanged"], full["deleted"]) == ("full", 0, 4, 2)
    assert_in_step(db_engine, table_name, elasticsearch, index_name)
