"""Bounded work: repairs per verification, replay in pages, no run for a replay of nothing, new settings.

Through the HTTP routes over the real engines and PostgreSQL; the valve floor
(RTARF_DELETE_MIN_COUNT) is pinned in test_sync_modes.py beside the valve.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from config import ConfigError, Settings, load_settings
from rtarf_sync import create_app
from rtarf_sync.engine.checks import replay
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.service import extension
from rtarf_sync.service.extension import scheduler_of
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import index_docs, scalar
from tests.infra.support import wait_for
from tests.engine.checks.test_modes_and_deletes import BASE, delete_docs, events

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WINDOW = {"from": engine_time(BASE - timedelta(hours=1)), "to": engine_time(BASE + timedelta(hours=12))}
AppFor = Callable[..., Flask]


@pytest.fixture
def app_for(make_settings: Callable[..., Settings]) -> Iterator[AppFor]:
    """Apps over the real engine and database, scheduled jobs off; shut down afterwards."""
    apps: list[Flask] = []

    def build(engine: EngineHttp, index: str, **env: Any) -> Flask:
        app = create_app(
            make_settings(
                engine,
                index,
                RTARF_SYNC_ENABLED="false",
                RTARF_VERIFY_INTERVAL_SECONDS="0",
                RTARF_SYNC_MAX_RETRIES="0",
                **env,
            )
        )
        apps.append(app)
        return app

    yield build
    for app in apps:
        extension.shutdown(app, timeout=5)


def runs(db: sa.Engine, table: str) -> int:
    """How many runs the history holds for `table`."""
    return int(scalar(db, "SELECT count(*) FROM rtarf_sync_runs WHERE target_table = :t", t=table))


def test_one_verification_repairs_at_most_max_repairs_and_frees_the_lock_between_them(
    engine: EngineHttp, index_name: str, app_for: AppFor
) -> None:
    engine.create_index(index_name)
    index_docs(engine, index_name, events("e", 8))
    engine.refresh(index_name)
    app = app_for(engine, index_name, RTARF_VERIFY_MAX_REPAIRS="2")
    client, scheduler = app.test_client(), scheduler_of(app)
    assert client.post("/scheduler/sync-now").get_json()["result"]["inserted"] == 8
    delete_docs(engine, index_name, "e01", "e03", "e05")
    between: list[str] = []

    def sync_after_first_repair(result: SyncResult) -> None:
        # Called after each repair: the process lock must be free there (SyncBusy otherwise, and
        # `between` stays empty: record() logs a listener's exception and goes on).
        if result.trigger == "repair" and not between:
            between.append(scheduler.sync_now().status)

    scheduler.add_result_listener(sync_after_first_repair)
    first = client.post("/scheduler/verify", json={**WINDOW, "repair": True}).get_json()
    assert [run["deleted"] for run in first["repaired"]] == [1, 1]
    assert [bucket["from"][:13] for bucket in first["unrepaired"]] == [engine_time(BASE + timedelta(hours=5))[:13]]
    assert first["after_repair"]["in_step"] is False
    assert between == ["success"]
    second = client.post("/scheduler/verify", json={**WINDOW, "repair": True}).get_json()
    assert ([run["deleted"] for run in second["repaired"]], second["unrepaired"]) == ([1], [])
    assert second["after_repair"]["in_step"] is True


def test_replay_reads_looks_up_and_writes_in_pages(
    elasticsearch: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    app_for: AppFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    elasticsearch.create_index(index_name)
    bad = {f"bad-{n}": {"message": f"no clock {n}"} for n in range(5)}
    index_docs(elasticsearch, index_name, bad)
    elasticsearch.refresh(index_name)
    client = app_for(elasticsearch, index_name).test_client()
    assert client.post("/scheduler/sync-now").get_json()["result"]["failed"] == 5
    index_docs(elasticsearch, index_name, {f"bad-{n}": {"@timestamp": engine_time(BASE), "n": n} for n in (0, 2, 4)})
    delete_docs(elasticsearch, index_name, "bad-3")
    monkeypatch.setattr(replay, "CHUNK", 2)  # three pages, the still-failing letter in the middle one
    answer = client.post("/scheduler/dead-letters/replay", json={}).get_json()
    assert {k: answer[k] for k in ("replayed", "still_failing", "gone")} == {
        "replayed": 3,
        "still_failing": 1,
        "gone": 1,
    }
    assert (
        scalar(
            db_engine,
            "SELECT count(*) FROM rtarf_sync_dead_letters WHERE target_table = :t AND resolved_at IS NULL",
            t=table_name,
        )
        == 1
    )


def test_a_replay_of_unknown_ids_writes_no_run_and_sends_no_webhook(
    elasticsearch: EngineHttp, index_name: str, table_name: str, db_engine: sa.Engine, app_for: AppFor
) -> None:
    app = app_for(
        elasticsearch,
        f"{index_name}-missing",
        RTARF_WEBHOOK_URLS="http://127.0.0.1:9/hook",
        RTARF_WEBHOOK_SECRET=SECRET,
    )
    extension.start(app)  # the delivery thread stores the queued messages
    client = app.test_client()

    def messages() -> list[str]:
        return [d["event_type"] for d in client.get("/scheduler/webhooks").get_json()["deliveries"]]

    assert client.post("/scheduler/sync-now").status_code >= 500  # the index does not exist: a failed run
    wait_for(lambda: messages() == ["sync.failed"], what="the first sync.failed stored")
    answer = client.post("/scheduler/dead-letters/replay", json={"ids": [999999999]}).get_json()
    assert (answer["not_found"], answer["run_id"], answer["replayed"]) == ([999999999], None, 0)
    assert runs(db_engine, table_name) == 1
    # Messages are stored in order: had the replay raised one (a false sync.recovered), it would
    # be stored before the second failure's.
    assert client.post("/scheduler/sync-now").status_code >= 500
    wait_for(lambda: len(messages()) >= 2, what="the second sync.failed stored")
    assert messages() == ["sync.failed", "sync.failed"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RTARF_DELETE_MIN_COUNT", "-1"),
        ("RTARF_DELETE_MIN_COUNT", "many"),
        ("RTARF_VERIFY_MAX_REPAIRS", "0"),
        ("RTARF_VERIFY_MAX_REPAIRS", "1.5"),
    ],
)
def test_bad_bounds_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}={value!r} is invalid"):
        load_settings({name: value})


def test_bounds_default_to_the_design() -> None:
    settings = load_settings({})
    assert (settings.reconcile.delete_min_count, settings.verify.max_repairs) == (100, 24)
    bounded = load_settings({"RTARF_DELETE_MIN_COUNT": "0", "RTARF_VERIFY_MAX_REPAIRS": "3"})
    assert (bounded.reconcile.delete_min_count, bounded.verify.max_repairs) == (0, 3)
