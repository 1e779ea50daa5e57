"""Verification, self-repair and cursor control against the real engines and PostgreSQL.

Expected counts come from the documents each test writes, never from the
service; the end state is checked with the independent oracle (tests/infra/oracle.py).
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.checks.repair import verify_and_repair
from rtarf_sync.engine.checks.verify import Verifier, Window
from rtarf_sync.service.extension import scheduler_of
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import engine_docs, index_docs, rows, table_docs
from tests.infra.support import count_rows, lease_holder, runs_of, target_locked, waiting_service_backends, wait_for

UTC = timezone.utc
BASE = datetime(2026, 3, 1, tzinfo=UTC)
TOKEN = "verify-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(moment: datetime | None, n: int) -> dict[str, Any]:
    source: dict[str, Any] = {"event": {"id": n}, "message": f"event {n}"}
    if moment is not None:
        source["@timestamp"] = iso(moment)
    return source


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        scheduler_of(app).shutdown(timeout=20)


@pytest.fixture
def services() -> Iterator[list[SyncService]]:
    made: list[SyncService] = []
    yield made
    for service in made:
        service.close()


# Bucket edges are exact: 00:59:59.999 is in hour 0, 01:00:00.000 in hour 1, the window end is excluded.
DOCS = {
    "a1": BASE,
    "a2": BASE + timedelta(minutes=59, seconds=59, milliseconds=999),
    "b1": BASE + timedelta(hours=1),
    "b2": BASE + timedelta(hours=1, minutes=30),
    "b3": BASE + timedelta(hours=1, minutes=30),
    "c1": BASE + timedelta(hours=23, minutes=59, seconds=59),
    "d1": BASE + timedelta(days=1),
    "e1": BASE + timedelta(days=1, hours=5),
    "before": BASE - timedelta(milliseconds=1),
    "at-end": BASE + timedelta(days=2),
    "no-time": None,
}
HOURS = {
    BASE: 2,
    BASE + timedelta(hours=1): 3,
    BASE + timedelta(hours=23): 1,
    BASE + timedelta(days=1): 1,
    BASE + timedelta(days=1, hours=5): 1,
}


def test_bucket_counts_are_exact_by_hour_and_day_with_missing_cursor_on_both_sides(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
    services: list[SyncService],
) -> None:
    engine.create_index(index_name)
    index_docs(engine, index_name, {doc_id: event(moment, n) for n, (doc_id, moment) in enumerate(DOCS.items())})
    engine.refresh(index_name)
    service = SyncService(make_settings(engine, index_name))
    services.append(service)
    assert service.run().ok
    verifier = Verifier(service)
    window = Window(BASE, BASE + timedelta(days=2), "1h")

    hourly = verifier.check(window)
    assert (hourly.source, hourly.target) == (HOURS, HOURS)
    assert (hourly.in_step, hourly.missing_source, hourly.missing_target) == (True, 1, 0)

    # Drift on both sides: a late document in the engine, a soft-deleted row, a row without a time.
    index_docs(engine, index_name, {"e2": event(BASE + timedelta(days=1, hours=5, minutes=30), 99)})
    engine.refresh(index_name)
    with db_engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE \"{table_name}\" SET deleted_at = now() WHERE es_id = 'b2'"))
        connection.execute(
            sa.text(f"INSERT INTO \"{table_name}\" (es_index, es_id, source) VALUES ('{index_name}', 'legacy', '{{}}')")
        )
    answer = verifier.check(window).to_dict()
    assert answer["in_step"] is False
    assert (answer["source_total"], answer["target_total"]) == (9, 7)
    assert answer["differing"] == [
        {"from": "2026-03-01T01:00:00+00:00", "to": "2026-03-01T02:00:00+00:00", "source": 3, "target": 2},
        {"from": "2026-03-02T05:00:00+00:00", "to": "2026-03-02T06:00:00+00:00", "source": 2, "target": 1},
    ]
    assert answer["missing_cursor"] == {"source": 1, "target": 1}

    daily = verifier.check(Window(BASE, BASE + timedelta(days=2), "1d")).to_dict()
    assert [(d["from"], d["source"], d["target"]) for d in daily["differing"]] == [
        ("2026-03-01T00:00:00+00:00", 6, 5),
        ("2026-03-02T00:00:00+00:00", 3, 2),
    ]
    # A window that starts inside a bucket counts, and reports, only its part of it.
    part = verifier.check(Window(BASE + timedelta(hours=1, minutes=15), BASE + timedelta(days=1), "1h")).to_dict()
    assert part["differing"] == [
        {"from": "2026-03-01T01:15:00+00:00", "to": "2026-03-01T02:00:00+00:00", "source": 2, "target": 1}
    ]

    stored = rows(
        db_engine,
        "SELECT in_step, buckets_differing, source_total, target_total, bucket "
        "FROM rtarf_sync_verifications WHERE target_table = :t ORDER BY id",
        t=table_name,
    )
    assert [tuple(row) for row in stored] == [
        (True, 0, 8, 8, "1h"),
        (False, 2, 9, 7, "1h"),
        (False, 2, 9, 7, "1d"),
        (False, 1, 3, 2, "1h"),
    ]


def _late_arrivals_app(
    engine: EngineHttp, index_name: str, make_settings: Callable[..., Settings], apps: list[Flask]
) -> Flask:
    settings = make_settings(
        engine,
        index_name,
        RTARF_SYNC_INTERVAL_SECONDS=3600,
        RTARF_VERIFY_INTERVAL_SECONDS=1,
        RTARF_VERIFY_LOOKBACK_HOURS=6,
        RTARF_VERIFY_REPAIR="true",
        RTARF_API_TOKEN=TOKEN,
    )
    app = create_app(settings, start_scheduler=True)
    apps.append(app)
    return app


def test_late_arrivals_two_hours_below_the_cursor_are_caught_by_the_scheduled_verify_and_repaired(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
    apps: list[Flask],
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    engine.create_index(index_name)
    index_docs(engine, index_name, {f"on-time-{n}": event(now - timedelta(minutes=5 + 7 * n), n) for n in range(40)})
    engine.refresh(index_name)
    client = _late_arrivals_app(engine, index_name, make_settings, apps).test_client()
    wait_for(lambda: count_rows(db_engine, table_name) == 40, timeout=60, what="the first sync")
    cursor = datetime.fromisoformat(client.get("/scheduler/cursor").get_json()["cursor"])
    assert cursor == now - timedelta(minutes=5)

    # An agent offline for two hours ships 25 events stamped two hours below the cursor.
    late = {f"late-{n}": event(cursor - timedelta(hours=2, seconds=20 * n), 100 + n) for n in range(25)}
    index_docs(engine, index_name, late)
    engine.refresh(index_name)

    repairs = wait_for(
        lambda: [
            run for run in runs_of(db_engine, table_name) if run["trigger"] == "repair" and run["status"] != "running"
        ],
        timeout=60,
        what="a repair run",
    )
    assert client.post("/scheduler/stop", headers=AUTH).status_code == 200  # pauses the verify job too
    # The process lock is free between the parts of a verification: wait for its stored answer instead.
    wait_for(
        lambda: "trigger"
        in rows(
            db_engine,
            "SELECT result FROM rtarf_sync_verifications WHERE target_table = :t AND NOT in_step ORDER BY id LIMIT 1",
            t=table_name,
        )[0].result,
        what="the verification to end",
    )
    wait_for(lambda: not client.get("/scheduler/status").get_json()["sync_in_progress"], what="the job to end")
    jobs = {job["id"]: job for job in client.get("/scheduler/jobs").get_json()["jobs"]}
    assert jobs["rtarf_verify"]["paused"] is True and jobs["rtarf_event_sync"]["paused"] is True

    repairs = [run for run in runs_of(db_engine, table_name) if run["trigger"] == "repair"]
    assert {run["mode"] for run in repairs} == {"range"} and {run["status"] for run in repairs} == {"success"}
    assert sum(run["inserted"] for run in repairs) == 25
    for run in repairs:  # each repair covers one hour bucket (or its part inside the window)
        assert run["range_to"] - run["range_from"] <= timedelta(hours=1)
    caught = rows(
        db_engine,
        "SELECT result FROM rtarf_sync_verifications WHERE target_table = :t AND NOT in_step ORDER BY id LIMIT 1",
        t=table_name,
    )[0].result
    assert caught["trigger"] == "scheduled"
    assert sum(d["source"] - d["target"] for d in caught["differing"]) == 25
    assert caught["after_repair"]["in_step"] is True
    assert client.get("/scheduler/cursor").get_json()["cursor"] == cursor.isoformat()  # range runs never move it

    final = client.post("/scheduler/verify", headers=AUTH, json={"bucket": "1d"})
    assert final.status_code == 200, final.get_json()
    assert final.get_json()["in_step"] is True and final.get_json()["source_total"] == 64
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)


def test_verify_and_cursor_routes_check_their_bodies_and_the_token(
    elasticsearch: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    apps: list[Flask],
) -> None:
    elasticsearch.create_index(index_name)
    index_docs(elasticsearch, index_name, {"x": event(BASE, 1)})
    elasticsearch.refresh(index_name)
    app = create_app(make_settings(elasticsearch, index_name, RTARF_API_TOKEN=TOKEN))
    apps.append(app)
    client = app.test_client()
    for body, field in (
        ({"bucket": "2h"}, "bucket"),
        ({"from": "yesterday"}, "from"),
        ({"repair": "yes"}, "repair"),
        ({"to": "2026-01-01T00:00:00Z", "from": "2026-01-02T00:00:00Z"}, "from"),
        ({"window": 1}, "window"),
        ({"bucket": 1}, "bucket"),
    ):
        answer = client.post("/scheduler/verify", headers=AUTH, json=body)
        assert answer.status_code == 400, body
        assert answer.get_json()["message"].startswith(f"{field}:"), answer.get_json()
    assert client.post("/scheduler/verify", json={}).status_code == 401
    assert client.put("/scheduler/cursor", json={"cursor": None}).status_code == 401

    assert client.get("/scheduler/cursor").get_json() == {
        "cursor": None,
        "source_index": index_name,
        "table": table_name,
    }
    refused = client.put("/scheduler/cursor", headers=AUTH, json={"cursor": "2026-03-01T00:00:00Z"})
    assert refused.status_code == 409 and "force" in refused.get_json()["message"]
    assert client.get("/scheduler/cursor").get_json()["cursor"] is None
    assert client.post("/scheduler/sync-now", headers=AUTH).status_code == 200
    stored = client.get("/scheduler/cursor").get_json()["cursor"]
    assert stored == "2026-03-01T00:00:00+00:00"
    earlier = client.put("/scheduler/cursor", headers=AUTH, json={"cursor": "2026-02-01T00:00:00Z"})
    assert earlier.status_code == 200
    assert earlier.get_json() == {
        "cursor": "2026-02-01T00:00:00+00:00",
        "source_index": index_name,
        "table": table_name,
        "previous": stored,
    }
    later = {"cursor": "2026-04-01T00:00:00+00:00"}
    assert client.put("/scheduler/cursor", headers=AUTH, json=later).status_code == 409
    assert client.put("/scheduler/cursor", headers=AUTH, json={**later, "force": True}).status_code == 200
    future = {"cursor": iso(datetime.now(UTC) + timedelta(days=1)), "force": True}
    assert client.put("/scheduler/cursor", headers=AUTH, json=future).status_code == 409
    for body, field in (
        ({"cursor": "soon"}, "cursor"),
        ({}, "cursor"),
        ({"cursor": None, "force": 1}, "force"),
        ({"cursor": None, "at": 1}, "at"),
    ):
        answer = client.put("/scheduler/cursor", headers=AUTH, json=body)
        assert answer.status_code == 400 and answer.get_json()["message"].startswith(f"{field}:"), body
    assert client.put("/scheduler/cursor", headers=AUTH, json={"cursor": None}).get_json()["cursor"] is None
    assert client.get("/scheduler/cursor").get_json()["cursor"] is None

    jobs = client.get("/scheduler/jobs").get_json()["jobs"]
    verify_job = next(job for job in jobs if job["id"] == "rtarf_verify")
    assert (verify_job["interval_seconds"], verify_job["paused"]) == (3600, True)


def test_verify_and_cursor_changes_never_overlap_a_running_sync(
    elasticsearch: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
    apps: list[Flask],
) -> None:
    elasticsearch.create_index(index_name)
    index_docs(elasticsearch, index_name, {f"e{n}": event(BASE + timedelta(minutes=n), n) for n in range(30)})
    elasticsearch.refresh(index_name)
    settings = make_settings(elasticsearch, index_name)
    here, there = create_app(settings), create_app(settings)  # two processes' worth of services
    apps.extend([here, there])
    client = here.test_client()
    assert client.post("/scheduler/sync-now").status_code == 200  # tables exist, so the lock below can be taken
    index_docs(elasticsearch, index_name, {"new": event(BASE + timedelta(hours=1), 99)})
    elasticsearch.refresh(index_name)
    answers: dict[str, Any] = {}
    window = {"from": iso(BASE), "to": iso(BASE + timedelta(days=1)), "repair": True}
    with target_locked(db_engine, table_name):  # the sync holds its lease while it waits to write its page
        running = threading.Thread(target=lambda: answers.update(sync=client.post("/scheduler/sync-now")))
        running.start()
        wait_for(
            lambda: waiting_service_backends(db_engine) == 1 and lease_holder(db_engine, table_name),
            what="the sync to wait holding the lease",
        )
        assert client.post("/scheduler/verify", json=window).status_code == 409  # this process: the lock
        assert client.put("/scheduler/cursor", json={"cursor": None}).status_code == 409
        other = there.test_client()
        busy = other.post("/scheduler/verify", json=window)  # another process: the lease
        assert busy.status_code == 409 and "holds the lease" in busy.get_json()["message"]
        assert other.put("/scheduler/cursor", json={"cursor": None}).status_code == 409
    running.join(30)
    assert answers["sync"].status_code == 200
    assert rows(db_engine, "SELECT count(*) FROM rtarf_sync_verifications WHERE target_table = :t", t=table_name) == [
        (0,)
    ]
    # And the other way round: while a verification runs, sync-now in the same process answers 409.
    with db_engine.connect() as connection, connection.begin():
        connection.execute(sa.text("LOCK TABLE rtarf_sync_verifications IN EXCLUSIVE MODE"))  # holds its store
        verifying = threading.Thread(
            target=lambda: answers.update(verify=client.post("/scheduler/verify", json=window))
        )
        verifying.start()
        wait_for(lambda: waiting_service_backends(db_engine) == 1, what="the verification to wait")
        assert client.post("/scheduler/sync-now").status_code == 409
    verifying.join(30)
    verified = answers["verify"].get_json()
    assert (verified["in_step"], verified["source_total"], verified["repaired"]) == (True, 31, [])


def test_cli_verify_exits_by_the_outcome_and_cursor_commands_show_set_and_reset(
    elasticsearch: EngineHttp,
    index_name: str,
    table_name: str,
    database_url: str,
    make_settings: Callable[..., Settings],
    services: list[SyncService],
) -> None:
    from tests.cli.test_cli import run_cli

    elasticsearch.create_index(index_name)
    index_docs(elasticsearch, index_name, {f"e{n}": event(BASE + timedelta(hours=n), n) for n in range(30)})
    elasticsearch.refresh(index_name)
    service = SyncService(make_settings(elasticsearch, index_name))
    services.append(service)
    assert service.run().ok
    env = {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_TABLE": table_name,
        "RTARF_ES_INDEX": index_name,
        "RTARF_ES_URL": elasticsearch.url,
        "RTARF_SOURCE_ENGINE": "elasticsearch",
    }
    window = ["--from", iso(BASE), "--to", iso(BASE + timedelta(days=2)), "--bucket", "1d"]

    index_docs(elasticsearch, index_name, {"late": event(BASE + timedelta(hours=2, minutes=5), 99)})
    elasticsearch.refresh(index_name)
    drift = run_cli("verify", *window, env=env)
    assert drift.returncode == 1 and "1 bucket(s) differ" in drift.stderr
    assert json.loads(drift.stdout)["differing"] == [
        {"from": "2026-03-01T00:00:00+00:00", "to": "2026-03-02T00:00:00+00:00", "source": 25, "target": 24}
    ]
    repaired = run_cli("verify", *window, "--repair", env=env)
    assert repaired.returncode == 0, repaired.stderr
    answer = json.loads(repaired.stdout)
    assert [(run["trigger"], run["mode"], run["inserted"]) for run in answer["repaired"]] == [("repair", "range", 1)]
    assert answer["after_repair"]["in_step"] is True
    assert table_docs(service.engine, table_name) == engine_docs(elasticsearch, index_name)

    shown = run_cli("cursor", "show", env=env)
    assert json.loads(shown.stdout)["cursor"] == "2026-03-02T05:00:00+00:00"
    later = run_cli("cursor", "set", "2026-03-03T00:00:00Z", env=env)
    assert later.returncode == 1 and "--force" in later.stderr
    earlier = run_cli("cursor", "set", "2026-03-01T12:00:00", env=env)
    assert earlier.returncode == 0
    assert json.loads(earlier.stdout)["previous"] == "2026-03-02T05:00:00+00:00"
    assert json.loads(run_cli("cursor", "show", env=env).stdout)["cursor"] == "2026-03-01T12:00:00+00:00"
    assert json.loads(run_cli("cursor", "reset", env=env).stdout)["cursor"] is None


def synced_day(
    engine: EngineHttp, index_name: str, make_settings: Callable[..., Settings], services: list[SyncService]
) -> tuple[dict[str, datetime], SyncService]:
    """A day of events every 5 minutes (7 s past), indexed into `index_name` and synced by a new service."""
    day = {f"m{n:04d}": BASE + timedelta(minutes=n, seconds=7) for n in range(0, 1440, 5)}
    assert index_docs(engine, index_name, {doc_id: event(at, 1) for doc_id, at in day.items()})["errors"] is False
    engine.refresh(index_name)
    service = SyncService(make_settings(engine, index_name))
    services.append(service)
    assert service.run().inserted == len(day)
    return day, service


def test_a_repair_rereads_only_the_span_of_the_day_that_differs(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    services: list[SyncService],
) -> None:
    """A day bucket is compared again by the minute: the repair's range run covers the first to the last
    differing minute, and still inserts, updates and deletes everything in it."""
    engine.create_index(index_name, shards=2)
    day, service = synced_day(engine, index_name, make_settings, services)

    # Between 10:03 and 10:41: two late arrivals, a newer version (same count), and a deletion.
    late = {
        "late-1": BASE + timedelta(hours=10, minutes=3, seconds=1),
        "late-2": BASE + timedelta(hours=10, minutes=22),
    }
    assert index_docs(engine, index_name, {doc_id: event(at, 2) for doc_id, at in late.items()})["errors"] is False
    assert index_docs(engine, index_name, {"m0620": event(day["m0620"], 2)})["errors"] is False
    engine.call("DELETE", f"/{index_name}/_doc/m0640")
    engine.refresh(index_name)

    answer = verify_and_repair(service, start=BASE, end=BASE + timedelta(days=1), bucket="1d", repair_drift=True)
    [repaired] = answer["repaired"]
    assert (repaired["inserted"], repaired["updated"], repaired["deleted"], repaired["status"]) == (2, 1, 1, "success")
    assert (repaired["range_from"], repaired["range_to"]) == (
        (BASE + timedelta(hours=10, minutes=3)).isoformat(),
        (BASE + timedelta(hours=10, minutes=41)).isoformat(),
    )
    assert answer["after_repair"]["in_step"] is True
    assert table_docs(db_engine, table_name, live=True) == engine_docs(engine, index_name)


@pytest.fixture
def few_buckets(opensearch: EngineHttp) -> Iterator[int]:
    """The node answers at most 200 aggregation buckets a request (search.max_buckets), for one test."""
    opensearch.call("PUT", "/_cluster/settings", {"persistent": {"search.max_buckets": 200}})
    try:
        yield 200
    finally:
        opensearch.call("PUT", "/_cluster/settings", {"persistent": {"search.max_buckets": None}})


def test_a_repair_on_an_engine_with_few_buckets_compares_coarser_parts(
    opensearch: EngineHttp,
    few_buckets: int,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    services: list[SyncService],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The day's 288 busy minutes are more buckets than the engine answers: the comparison is asked again
    in coarser parts (8 minutes) instead of giving up, so the repair still reads only part of the day."""
    opensearch.create_index(index_name)
    day, service = synced_day(opensearch, index_name, make_settings, services)
    assert len(day) > few_buckets

    late = {
        "late-1": BASE + timedelta(hours=10, minutes=3, seconds=1),
        "late-2": BASE + timedelta(hours=10, minutes=6),
    }
    assert index_docs(opensearch, index_name, {doc_id: event(at, 2) for doc_id, at in late.items()})["errors"] is False
    opensearch.call("DELETE", f"/{index_name}/_doc/m0640")
    opensearch.refresh(index_name)

    answer = verify_and_repair(service, start=BASE, end=BASE + timedelta(days=1), bucket="1d", repair_drift=True)
    [repaired] = answer["repaired"]
    assert (repaired["inserted"], repaired["deleted"], repaired["status"]) == (2, 1, "success")
    # 8-minute parts from midnight: 10:00-10:08 holds the late arrivals, 10:40-10:48 the deletion.
    assert (repaired["range_from"], repaired["range_to"]) == (
        (BASE + timedelta(hours=10)).isoformat(),
        (BASE + timedelta(hours=10, minutes=48)).isoformat(),
    )
    assert not [r for r in caplog.records if "fingerprints could not be compared" in r.getMessage()]
    assert answer["after_repair"]["in_step"] is True
    assert table_docs(db_engine, table_name, live=True) == engine_docs(opensearch, index_name)
