"""Dead letters over HTTP and their replay, against real PostgreSQL and each engine.

The case users hit: documents set aside for a missing cursor field, fixed in
the engine, then replayed; plus one still broken, one deleted, and a stored row
newer than the engine's version, which the replay must not overwrite.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.cli.main import main
from rtarf_sync.engine.errors import SourceError
from rtarf_sync.sample import make_event
from rtarf_sync.service.extension import scheduler_of
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import index_docs, rows, scalar

TOKEN = "dead-letter-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OLD = "2024-01-02T03:04:05Z"  # far below any cursor: only a replay can bring these in


@pytest.fixture
def app(engine: EngineHttp, index_name: str, make_settings: Callable[..., Settings]) -> Iterator[Flask]:
    """An app over a real engine with the token set, and a first run that set four documents aside."""
    engine.create_index(index_name)
    docs: dict[str, dict[str, Any]] = {f"good-{n}": make_event(n) for n in range(5)}
    docs.update({f"no-ts-{n}": {"message": f"agent {n} lost its clock", "host": {"name": f"h{n}"}} for n in range(4)})
    assert index_docs(engine, index_name, docs)["errors"] is False
    engine.refresh(index_name)
    application = create_app(make_settings(engine, index_name, RTARF_API_TOKEN=TOKEN))
    first = application.test_client().post("/scheduler/sync-now", headers=AUTH).get_json()
    assert (first["result"]["status"], first["result"]["inserted"], first["result"]["failed"]) == ("partial", 5, 4)
    yield application
    scheduler_of(application).shutdown(timeout=20)


def _ids_by_doc(client: Any) -> dict[str, int]:
    listed = client.get("/scheduler/dead-letters").get_json()["dead_letters"]
    return {item["es_id"]: item["id"] for item in listed}


def test_list_and_detail_show_the_documented_fields(app: Flask) -> None:
    client = app.test_client()
    body = client.get("/scheduler/dead-letters?limit=3").get_json()
    assert body["unresolved"] == 4 and len(body["dead_letters"]) == 3 and body["next_before"] is not None
    item = body["dead_letters"][0]
    assert list(item) == [
        "id",
        "es_index",
        "es_id",
        "es_seq_no",
        "es_primary_term",
        "reason",
        "run_id",
        "created_at",
        "resolved_at",
    ]
    assert item["reason"] == "missing cursor field @timestamp" and item["resolved_at"] is None
    rest = client.get(f"/scheduler/dead-letters?before={body['next_before']}").get_json()
    assert len(rest["dead_letters"]) == 1 and rest["next_before"] is None
    assert [i["id"] for i in body["dead_letters"] + rest["dead_letters"]] == sorted(
        (i["id"] for i in body["dead_letters"] + rest["dead_letters"]), reverse=True
    )
    assert client.get("/scheduler/dead-letters?reason=not+a+date").get_json()["dead_letters"] == []
    assert client.get("/scheduler/dead-letters?resolved=true").get_json()["dead_letters"] == []
    assert client.get("/scheduler/dead-letters?resolved=maybe").get_json()["parameter"] == "resolved"
    assert "raw_document" not in json.dumps(body)

    # The detail carries the document, so with a token set it needs the token.
    assert client.get(f"/scheduler/dead-letters/{item['id']}").status_code == 401
    detail = client.get(f"/scheduler/dead-letters/{item['id']}", headers=AUTH).get_json()
    assert {**detail, "raw_document": None} == {**item, "raw_document": None}
    assert json.loads(detail["raw_document"])["message"].startswith("agent ")
    missing = client.get("/scheduler/dead-letters/999999999", headers=AUTH)
    assert missing.status_code == 404 and missing.get_json()["error"] == "Not Found"
    bad = client.get("/scheduler/dead-letters?limit=0")
    assert bad.status_code == 400 and bad.get_json()["parameter"] == "limit"


def test_replay_writes_fixed_documents_and_keeps_the_rest(
    app: Flask, engine: EngineHttp, index_name: str, table_name: str, db_engine: sa.Engine
) -> None:
    client = app.test_client()
    ids = _ids_by_doc(client)
    cursor_before = client.get("/scheduler/status").get_json()["lag_seconds"]
    # Fixed in the engine: no-ts-0 and no-ts-1 get their timestamp (an old one); no-ts-2 is
    # still broken; no-ts-3 was deleted.
    index_docs(
        engine,
        index_name,
        {
            "no-ts-0": {"@timestamp": OLD, "message": "fixed 0"},
            "no-ts-1": {"@timestamp": OLD, "message": "fixed 1"},
            "no-ts-2": {"message": "still no clock"},
        },
    )
    engine.call("DELETE", f"/{index_name}/_doc/no-ts-3")
    engine.refresh(index_name)
    # A row already in PostgreSQL with a newer version than the engine's must stay as it is.
    with db_engine.begin() as connection:
        connection.execute(
            sa.text(
                f'INSERT INTO "{table_name}" (es_index, es_id, event_timestamp, source, es_seq_no, es_primary_term) '
                "VALUES (:i, 'no-ts-1', now(), '{\"message\": \"newer\"}', 1000000, 1000)"
            ),
            {"i": index_name},
        )

    assert client.post("/scheduler/dead-letters/replay", json={}).status_code == 401
    answer = client.post("/scheduler/dead-letters/replay", json={}, headers=AUTH)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert {k: body[k] for k in ("replayed", "still_failing", "gone")} == {"replayed": 2, "still_failing": 1, "gone": 1}
    stored = {
        r.es_id: r.source["message"]
        for r in rows(db_engine, f"SELECT es_id, source FROM \"{table_name}\" WHERE es_id LIKE 'no-ts-%'")
    }
    assert stored == {"no-ts-0": "fixed 0", "no-ts-1": "newer"}
    resolved = {
        r.es_id
        for r in rows(
            db_engine,
            "SELECT es_id FROM rtarf_sync_dead_letters WHERE target_table = :t AND resolved_at IS NOT NULL",
            t=table_name,
        )
    }
    assert resolved == {"no-ts-0", "no-ts-1", "no-ts-3"}
    unresolved = client.get("/scheduler/dead-letters?resolved=false").get_json()["dead_letters"]
    assert [item["es_id"] for item in unresolved] == ["no-ts-2"]

    run = client.get(f"/scheduler/runs/{body['run_id']}").get_json()
    assert (run["trigger"], run["mode"], run["status"]) == ("replay", "replay", "success")
    assert (run["inserted"], run["unchanged"], run["known_bad"]) == (1, 1, 1)
    status = client.get("/scheduler/status").get_json()
    assert status["dead_letters_unresolved"] == 1
    assert status["lag_seconds"] >= cursor_before  # the old timestamps did not move the cursor
    assert (
        scalar(db_engine, "SELECT cursor_value FROM rtarf_sync_cursor WHERE target_table = :t", t=table_name).year
        > 2024
    )

    # Replaying the resolved ones again changes nothing; an unknown id is reported.
    again = client.post(
        "/scheduler/dead-letters/replay", json={"ids": [ids["no-ts-0"], 999999999]}, headers=AUTH
    ).get_json()
    assert (again["replayed"], again["already_resolved"], again["not_found"]) == (0, 1, [999999999])
    bad = client.post("/scheduler/dead-letters/replay", json={"ids": ["x"]}, headers=AUTH)
    assert bad.status_code == 400 and bad.get_json()["parameter"] == "ids"


def test_cli_lists_shows_and_replays(
    app: Flask,
    engine: EngineHttp,
    index_name: str,
    database_url: str,
    table_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_ES_URL": engine.url,
        "RTARF_SOURCE_ENGINE": engine.kind,
        "RTARF_ES_INDEX": index_name,
        "RTARF_TABLE": table_name,
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["dead-letters", "list"]) == 0
    listing = capsys.readouterr().out
    assert "missing cursor field @timestamp" in listing and "4 unresolved" in listing
    first = _ids_by_doc(app.test_client())["no-ts-0"]
    assert main(["dead-letters", "show", str(first)]) == 0
    assert "agent 0 lost its clock" in capsys.readouterr().out
    index_docs(engine, index_name, {"no-ts-0": {"@timestamp": OLD, "message": "fixed by hand"}})
    engine.refresh(index_name)
    assert main(["dead-letters", "replay", str(first)]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert (replayed["replayed"], replayed["still_failing"], replayed["gone"]) == (1, 0, 0)
    assert main(["runs", "--json", "--limit", "1"]) == 0
    newest = json.loads(capsys.readouterr().out)["runs"][0]
    assert (newest["trigger"], newest["run_id"]) == ("replay", replayed["run_id"])
    assert main(["dead-letters", "show", "999999999"]) == 1


def test_find_ids_gives_current_versions_and_refuses_a_missing_index(
    engine: EngineHttp, index_name: str, make_settings: Callable[..., Settings]
) -> None:
    from rtarf_sync.engine.source.clients import build_api

    engine.create_index(index_name)
    index_docs(engine, index_name, {"a": make_event(1), "b": make_event(2)})
    index_docs(engine, index_name, {"a": make_event(3)})  # a second version of "a"
    engine.refresh(index_name)
    api = build_api(make_settings(engine, index_name))
    try:
        hits = {hit["_id"]: hit for hit in api.find_ids(index_name, ["a", "b", "c"])["hits"]["hits"]}
        assert set(hits) == {"a", "b"}
        assert hits["a"]["_seq_no"] > hits["b"]["_seq_no"] and hits["a"]["_primary_term"] == 1
        assert hits["a"]["_source"] == make_event(3)
        with pytest.raises(SourceError, match="index_not_found"):  # missing is not "no hits": replay decides
            api.find_ids(f"{index_name}-gone", ["a"])
    finally:
        api.close()


def test_replay_waits_for_no_one_while_another_process_holds_the_lease(
    app: Flask, table_name: str, db_engine: sa.Engine
) -> None:
    service = scheduler_of(app).service
    with db_engine.begin() as connection:
        held = service.lease.acquire(connection, "other-host:1:abcdef12")
    assert held.owner == "other-host:1:abcdef12"
    answer = app.test_client().post("/scheduler/dead-letters/replay", json={}, headers=AUTH)
    assert answer.status_code == 409, answer.get_json()
    assert "other-host:1:abcdef12" in answer.get_json()["message"]
    assert (
        scalar(
            db_engine,
            "SELECT count(*) FROM rtarf_sync_dead_letters WHERE target_table = :t AND resolved_at IS NULL",
            t=table_name,
        )
        == 4
    )
    status = app.test_client().get("/scheduler/status").get_json()
    assert status["skipped_syncs"] == 1  # counted like a skipped sync, for the metrics and webhooks too
