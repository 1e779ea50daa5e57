"""Two pipelines in one app: two indices into two tables, each with its own cursor, runs, dead letters,
metrics series, webhook messages and jobs; a stalled engine index holds up only its own pipeline.

Both engines: the real OpenSearch node and the Elasticsearch protocol server.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from config import load_settings
from rtarf_sync import create_app
from rtarf_sync.pipelines_file import load_pipelines
from rtarf_sync.sample import make_event
from rtarf_sync.service import extension
from tests.infra.harness.faultproxy import Fault, FaultProxy
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import index_docs
from tests.infra.support import count_rows, wait_for

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes: a test key, not a real one


def _pipelines_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pipelines.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _build(environ: dict[str, str], start: bool = False) -> Flask:
    settings = load_settings(environ)
    return create_app(settings, pipelines=load_pipelines(environ, settings), start_scheduler=start)


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        extension.shutdown(app, timeout=10)


def _index(engine: EngineHttp, index: str, first: int, count: int, bad: bool = False) -> None:
    docs = {f"doc-{n}": dict(make_event(n)) for n in range(first, first + count)}
    if bad:
        docs["nul-char"] = {**make_event(first + count), "message": "payload with a NUL\u0000inside"}
    assert index_docs(engine, index, docs)["errors"] is False
    engine.refresh(index)


def _samples(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_two_pipelines_sync_two_indices_into_two_tables_each_with_its_own_state(
    engine: EngineHttp, database_url: str, db_engine: sa.Engine, tmp_path: Path, apps: list[Flask]
) -> None:
    tag = uuid.uuid4().hex[:8]
    alerts_index, auth_index = f"rtarf-alerts-{tag}", f"rtarf-auth-{tag}"
    alerts_table, auth_table = f"alerts_{tag}", f"auth_{tag}"
    _index(engine, alerts_index, 0, 12)
    _index(engine, auth_index, 100, 7, bad=True)
    environ = {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_ES_URL": engine.url,
        "RTARF_SOURCE_ENGINE": engine.kind,
        "RTARF_SYNC_SETTLE_SECONDS": "0",
        "RTARF_WEBHOOK_URLS": "http://127.0.0.1:9/hook",  # nothing listens: messages stay in the outbox
        "RTARF_WEBHOOK_SECRET": SECRET,
        "RTARF_PIPELINES_FILE": _pipelines_file(
            tmp_path,
            f"""
            [defaults]
            webhook_events = "*"
            [pipelines.alerts]
            index = "{alerts_index}"
            table = "{alerts_table}"
            [pipelines.auth]
            index = "{auth_index}"
            table = "{auth_table}"
            """,
        ),
    }
    app = _build(environ)
    apps.append(app)
    client = app.test_client()
    alerts = client.post("/pipelines/alerts/sync-now").get_json()["result"]
    auth = client.post("/pipelines/auth/sync-now").get_json()["result"]
    assert (alerts["status"], alerts["inserted"]) == ("success", 12)
    assert (auth["status"], auth["inserted"], auth["failed"]) == ("partial", 7, 1)
    assert (count_rows(db_engine, alerts_table), count_rows(db_engine, auth_table)) == (12, 7)

    # Cursors, runs and dead letters answer per pipeline.
    assert client.get("/pipelines/alerts/cursor").get_json()["table"] == alerts_table
    assert client.get("/pipelines/auth/cursor").get_json()["source_index"] == auth_index
    alert_runs = client.get("/pipelines/alerts/runs").get_json()["runs"]
    auth_runs = client.get("/pipelines/auth/runs").get_json()["runs"]
    assert [run["run_id"] for run in alert_runs] == [alerts["run_id"]]
    assert [run["run_id"] for run in auth_runs] == [auth["run_id"]]
    assert client.get("/pipelines/alerts/dead-letters").get_json()["unresolved"] == 0
    dead = client.get("/pipelines/auth/dead-letters").get_json()
    assert dead["unresolved"] == 1 and [d["es_id"] for d in dead["dead_letters"]] == ["nul-char"]

    # Jobs: one sync and one verify job per pipeline, named after it.
    jobs = client.get("/pipelines/auth/jobs").get_json()["jobs"]
    assert sorted(job["id"] for job in jobs) == ["rtarf_event_sync.auth", "rtarf_verify.auth"]
    # Several pipelines and none named default: the /scheduler routes have no pipeline to act on.
    missing = client.post("/scheduler/sync-now")
    assert missing.status_code == 404 and "/pipelines/<name>/sync-now" in missing.get_json()["message"]

    # Metrics: one series per pipeline, told apart by the `pipeline` label.
    samples = _samples(app)
    for name in ("alerts", "auth"):
        key = (("mode", "incremental"), ("pipeline", name), ("status", "success" if name == "alerts" else "partial"))
        assert samples[("rtarf_sync_runs_total", (*key[:2], key[2], ("trigger", "manual")))] == 1.0
    assert samples[("rtarf_sync_dead_letters_unresolved", (("pipeline", "auth"),))] == 1.0
    assert samples[("rtarf_sync_dead_letters_unresolved", (("pipeline", "alerts"),))] == 0.0
    assert samples[("rtarf_sync_events_total", (("outcome", "inserted"), ("pipeline", "alerts")))] == 12.0

    # Webhook messages say which pipeline they are about.
    extension.shutdown(app, timeout=10)  # stores what the notifiers still hold in memory
    with db_engine.connect() as connection:
        bodies = connection.execute(
            sa.text("SELECT target_table, body FROM rtarf_sync_webhook_messages WHERE target_table IN (:a, :b)"),
            {"a": alerts_table, "b": auth_table},
        ).all()
    seen = {(table, json.loads(body)["data"]["pipeline"], json.loads(body)["type"]) for table, body in bodies}
    assert (alerts_table, "alerts", "sync.succeeded") in seen and (auth_table, "auth", "sync.partial") in seen
    assert all((table == alerts_table) == (pipeline == "alerts") for table, pipeline, _ in seen)


def test_a_pipeline_whose_engine_index_stalls_never_holds_up_another(
    engine: EngineHttp, database_url: str, db_engine: sa.Engine, tmp_path: Path, apps: list[Flask]
) -> None:
    tag = uuid.uuid4().hex[:8]
    stuck_index, quick_index = f"rtarf-stuck-{tag}", f"rtarf-quick-{tag}"
    _index(engine, stuck_index, 0, 3)
    _index(engine, quick_index, 0, 3)
    proxy = FaultProxy(engine.url).start()
    try:
        # Every request that names the stuck index is held for a minute: its pipeline's run hangs.
        proxy.add(
            Fault(
                "stall",
                seconds=60,
                path=f"{stuck_index}/_search/point_in_time|{stuck_index}/_pit|{stuck_index}/_search",
                times=1000,
            )
        )
        environ = {
            "RTARF_DATABASE_URL": database_url,
            "RTARF_ES_URL": proxy.url,
            "RTARF_SOURCE_ENGINE": engine.kind,
            "RTARF_SYNC_SETTLE_SECONDS": "0",
            "RTARF_ES_REQUEST_TIMEOUT_SECONDS": "120",
            "RTARF_PIPELINES_FILE": _pipelines_file(
                tmp_path,
                f"""
                [defaults]
                interval_seconds = 1
                verify_interval_seconds = 0
                [pipelines.stuck]
                index = "{stuck_index}"
                table = "stuck_{tag}"
                [pipelines.quick]
                index = "{quick_index}"
                table = "quick_{tag}"
                """,
            ),
        }
        app = _build(environ, start=True)
        apps.append(app)
        client = app.test_client()

        def status(name: str) -> dict[str, object]:
            return client.get(f"/pipelines/{name}/status").get_json()

        wait_for(lambda: status("stuck")["sync_in_progress"], timeout=30, what="the stuck pipeline's run to hang")
        begun = int(status("quick")["total_syncs"])  # type: ignore[call-overload]
        # The quick pipeline keeps its one-second interval while the other one hangs.
        wait_for(
            lambda: int(status("quick")["total_syncs"]) >= begun + 3,  # type: ignore[call-overload]
            timeout=40,
            what="three more runs of the quick pipeline",
        )
        assert status("stuck")["sync_in_progress"] is True and status("stuck")["total_syncs"] == 0
        assert count_rows(db_engine, f"quick_{tag}") == 3
        assert status("quick")["last_sync_status"] == "success"
        shown = client.get("/pipelines").get_json()["pipelines"]
        assert [(p["name"], p["sync_in_progress"]) for p in shown][:1] == [("stuck", True)]
    finally:
        for app in apps:
            for pipeline in extension.pipelines_of(app):
                pipeline.scheduler.request_stop()
        proxy.stop()
