"""Rows answer only to the indices the setting names now; incomplete engine answers decide nothing.

On both engines, end to end through the HTTP routes: a narrowed setting or a moved
alias leaves the rows of the other index alone in full and range runs, verification,
repair and replay; a closed index (OpenSearch) or failed shards and timeouts (the
protocol server's faults) fail the run and resolve nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.service.scheduler import RtarfEventScheduler
from tests.infra.esserver import EsProtocolServer
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import deleted_keys, index_docs, rows, table_docs
from tests.engine.checks.test_modes_and_deletes import BASE, delete_docs, events

Client = Callable[..., FlaskClient]
NO_CLOCK = {"message": "an agent lost its clock"}  # no cursor field: set aside as a dead letter


@pytest.fixture
def client_for(make_settings: Callable[..., Settings]) -> Iterator[Client]:
    """Test clients of apps over the real engine and database, scheduled jobs off."""
    apps: list[Flask] = []

    def build(engine: EngineHttp, index: str, **env: Any) -> FlaskClient:
        settings = make_settings(
            engine,
            index,
            RTARF_SYNC_ENABLED="false",
            RTARF_VERIFY_INTERVAL_SECONDS="0",
            RTARF_SYNC_MAX_RETRIES="1",
            **env,
        )
        app = create_app(settings, scheduler=RtarfEventScheduler(settings=settings))
        apps.append(app)
        return app.test_client()

    yield build
    for app in apps:
        scheduler_of(app).shutdown(timeout=10)


def post(client: FlaskClient, path: str, body: dict[str, Any] | None = None, status: int = 200) -> dict[str, Any]:
    """POST a JSON body and check the status."""
    answer = client.post(path, json=body if body is not None else {})
    assert answer.status_code == status, answer.get_json()
    return answer.get_json()  # type: ignore[no-any-return]  # the API answers a JSON object


def unresolved(db: sa.Engine, table: str) -> set[tuple[str, str]]:
    """(index, id) of the unresolved dead letters of `table`."""
    return {
        (r.es_index, r.es_id)
        for r in rows(
            db,
            "SELECT es_index, es_id FROM rtarf_sync_dead_letters WHERE target_table = :t AND resolved_at IS NULL",
            t=table,
        )
    }


def two_indices(engine: EngineHttp, index_name: str) -> tuple[str, str]:
    """Indices -a and -b with six events each at the same hours, and one dead letter each."""
    a, b = f"{index_name}-a", f"{index_name}-b"
    for index, prefix in ((a, "a"), (b, "b")):
        engine.create_index(index)
        index_docs(engine, index, {**events(prefix, 6), f"{prefix}-bad": NO_CLOCK})
        engine.refresh(index)
    return a, b


WINDOW = {"from": engine_time(BASE - timedelta(hours=1)), "to": engine_time(BASE + timedelta(hours=12))}


def test_a_narrowed_setting_never_deletes_marks_or_counts_rows_of_the_index_it_dropped(
    engine: EngineHttp, index_name: str, table_name: str, db_engine: sa.Engine, client_for: Client
) -> None:
    a, b = two_indices(engine, index_name)
    first = post(client_for(engine, f"{a},{b}"), "/scheduler/sync-now")["result"]
    assert (first["inserted"], first["failed"]) == (12, 2)
    # The operator narrows RTARF_ES_INDEX to b; a lives on, and changes, under another pipeline's care.
    delete_docs(engine, a, "a01", "a-bad")
    delete_docs(engine, b, "b01")  # b's own drift, to be found and repaired
    narrow = client_for(engine, b)

    checked = post(narrow, "/scheduler/verify", {**WINDOW, "repair": False})
    assert [(d["source"], d["target"]) for d in checked["differing"]] == [(0, 1)]
    assert (checked["source_total"], checked["target_total"]) == (5, 6)  # a's six rows are not counted

    repaired = post(narrow, "/scheduler/verify", {**WINDOW, "repair": True})
    assert [run["deleted"] for run in repaired["repaired"]] == [1] and repaired["after_repair"]["in_step"]
    assert deleted_keys(db_engine, table_name) == {(b, "b01")}

    ranged = post(narrow, "/scheduler/sync-now", {"mode": "range", **WINDOW})["result"]
    full = post(narrow, "/scheduler/sync-now", {"mode": "full"})["result"]
    assert (ranged["status"], ranged["deleted"], full["status"], full["deleted"]) == ("success", 0, "success", 0)

    replayed = post(narrow, "/scheduler/dead-letters/replay")
    assert (replayed["gone"], replayed["still_failing"], replayed["outside_scope"]) == (0, 1, 1)
    assert unresolved(db_engine, table_name) == {(a, "a-bad"), (b, "b-bad")}
    assert deleted_keys(db_engine, table_name) == {(b, "b01")}
    assert {key for key in table_docs(db_engine, table_name, live=True) if key[0] == a} == {
        (a, f"a{n:02d}") for n in range(6)
    }


def test_rows_of_an_index_the_alias_moved_away_from_are_left_alone(
    engine: EngineHttp, index_name: str, table_name: str, db_engine: sa.Engine, client_for: Client
) -> None:
    a, b = two_indices(engine, index_name)
    alias = f"{index_name}-current"
    engine.call("POST", "/_aliases", {"actions": [{"add": {"index": a, "alias": alias}}]})
    client = client_for(engine, alias)
    assert post(client, "/scheduler/sync-now")["result"]["inserted"] == 6
    engine.call(
        "POST",
        "/_aliases",
        {"actions": [{"remove": {"index": a, "alias": alias}}, {"add": {"index": b, "alias": alias}}]},
    )
    full = post(client, "/scheduler/sync-now", {"mode": "full"})["result"]
    assert (full["inserted"], full["failed"], full["deleted"]) == (6, 1, 0)  # b-bad set aside
    assert deleted_keys(db_engine, table_name) == set()
    assert post(client, "/scheduler/verify", WINDOW)["in_step"]


def test_a_closed_index_fails_runs_verification_and_replay_and_nothing_is_deleted_or_resolved(
    opensearch: EngineHttp, index_name: str, table_name: str, db_engine: sa.Engine, client_for: Client
) -> None:
    a, b = two_indices(opensearch, index_name)
    client = client_for(opensearch, f"{index_name}-*")
    assert post(client, "/scheduler/sync-now")["result"]["inserted"] == 12
    opensearch.call("POST", f"/{a}/_close")
    try:
        for body in ({"mode": "full"}, {"mode": "range", **WINDOW}):
            failed = post(client, "/scheduler/sync-now", body, status=500)["result"]
            assert failed["status"] == "failed" and f"index {a} of {index_name}-* is closed" in failed["error"]
        refused = client.post("/scheduler/verify", json=WINDOW)
        assert refused.status_code >= 500 and "is closed" in refused.get_data(as_text=True)
        replay = client.post("/scheduler/dead-letters/replay", json={})
        assert replay.status_code >= 500 and "is closed" in replay.get_data(as_text=True)
        assert deleted_keys(db_engine, table_name) == set()
        assert unresolved(db_engine, table_name) == {(a, "a-bad"), (b, "b-bad")}
    finally:
        opensearch.call("POST", f"/{a}/_open")


@pytest.mark.parametrize("fault", ["shard_failure_next", "timed_out_next"])
def test_an_incomplete_ids_answer_resolves_no_dead_letter(
    elasticsearch: EngineHttp,
    es_server: EsProtocolServer,
    fault: str,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    client_for: Client,
) -> None:
    elasticsearch.create_index(index_name)
    index_docs(elasticsearch, index_name, {**events("e", 3), "bad": NO_CLOCK})
    elasticsearch.refresh(index_name)
    client = client_for(elasticsearch, index_name)
    assert post(client, "/scheduler/sync-now")["result"]["failed"] == 1
    delete_docs(elasticsearch, index_name, "bad")  # gone indeed, but an incomplete answer cannot tell
    es_server.faults.only_paths("_search")
    getattr(es_server.faults, fault)(100)
    failed = client.post("/scheduler/dead-letters/replay", json={})
    es_server.faults.reset()
    assert failed.status_code >= 500
    assert ("shard(s) failed" if fault == "shard_failure_next" else "timed out") in failed.get_data(as_text=True)
    assert unresolved(db_engine, table_name) == {(index_name, "bad")}
    assert post(client, "/scheduler/dead-letters/replay")["gone"] == 1  # a complete answer decides


@pytest.mark.parametrize(
    ("fault", "said"), [("shard_failure_next", "1 shard(s) failed"), ("timed_out_next", "the search timed out")]
)
def test_an_incomplete_answer_fails_the_reconciliation_and_the_verification(
    elasticsearch: EngineHttp,
    es_server: EsProtocolServer,
    fault: str,
    said: str,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    client_for: Client,
) -> None:
    elasticsearch.create_index(index_name)
    index_docs(elasticsearch, index_name, events("e", 6))
    elasticsearch.refresh(index_name)
    client = client_for(elasticsearch, index_name)
    assert post(client, "/scheduler/sync-now")["result"]["inserted"] == 6
    delete_docs(elasticsearch, index_name, "e01", "e02")
    # e03 moves out of the window: not read by the range run, yet it exists; only a complete lookup says so.
    index_docs(elasticsearch, index_name, {"e03": {"@timestamp": engine_time(BASE + timedelta(hours=30)), "n": 3}})
    elasticsearch.refresh(index_name)
    es_server.faults.only_paths(f"/{index_name}/_search")  # the ids lookups and the counts; pages go to /_search
    getattr(es_server.faults, fault)(100)
    failed = post(client, "/scheduler/sync-now", {"mode": "range", **WINDOW}, status=500)["result"]
    assert failed["status"] == "failed" and f"look up ids: {said}" in failed["error"]
    assert deleted_keys(db_engine, table_name) == set()
    refused = client.post("/scheduler/verify", json=WINDOW)
    assert refused.status_code >= 500 and f"verification count: {said}" in refused.get_data(as_text=True)
    es_server.faults.reset()
    assert post(client, "/scheduler/sync-now", {"mode": "range", **WINDOW})["result"]["deleted"] == 2
    assert deleted_keys(db_engine, table_name) == {(index_name, "e01"), (index_name, "e02")}
