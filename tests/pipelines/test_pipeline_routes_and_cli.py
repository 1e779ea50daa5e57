"""Choosing a pipeline: /pipelines/<name>/... and `--pipeline NAME`; an unknown name is 404 / exit 2.

The /scheduler routes act on `default` (or the only pipeline), GET /scheduler/status lists every
pipeline, the status page shows one row per pipeline, and without a pipelines file nothing changes.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from config import load_settings
from rtarf_sync import create_app
from rtarf_sync.pipelines_file import load_pipelines
from rtarf_sync.service import extension
from tests.cli.test_cli import engine_env, run_cli
from tests.infra.harness.http import EngineHttp
from tests.infra.support import count_rows, load_sample, offline_settings, wait_for


@pytest.fixture
def two(tmp_path: Path, database_url: str, engine: EngineHttp) -> Iterator[tuple[dict[str, str], str]]:
    """Variables for pipelines `default` and `firewall`, each with its own index (20 and 5 events)."""
    tag = uuid.uuid4().hex[:8]
    load_sample(engine, f"rtarf-default-{tag}", 20)
    load_sample(engine, f"rtarf-firewall-{tag}", 5)
    path = tmp_path / "pipelines.toml"
    path.write_text(
        f"""
        [defaults]
        settle_seconds = 0
        [pipelines.default]
        index = "rtarf-default-{tag}"
        table = "default_{tag}"
        [pipelines.firewall]
        index = "rtarf-firewall-{tag}"
        table = "firewall_{tag}"
        """,
        encoding="utf-8",
    )
    yield {"RTARF_DATABASE_URL": database_url, "RTARF_PIPELINES_FILE": str(path), **engine_env(engine)}, tag


@pytest.fixture
def app(two: tuple[dict[str, str], str]) -> Iterator[Flask]:
    environ, _ = two
    settings = load_settings(environ)
    application = create_app(settings, pipelines=load_pipelines(environ, settings))
    yield application
    extension.shutdown(application, timeout=10)


def test_routes_choose_the_pipeline_and_scheduler_routes_act_on_default(
    app: Flask, two: tuple[dict[str, str], str], db_engine: sa.Engine
) -> None:
    _, tag = two
    client = app.test_client()
    assert client.post("/scheduler/sync-now").get_json()["result"]["inserted"] == 20
    assert client.post("/pipelines/firewall/sync-now").get_json()["result"]["inserted"] == 5
    assert (count_rows(db_engine, f"default_{tag}"), count_rows(db_engine, f"firewall_{tag}")) == (20, 5)

    listed = client.get("/pipelines").get_json()["pipelines"]
    assert [(p["name"], p["table"], p["total_syncs"]) for p in listed] == [
        ("default", f"default_{tag}", 1),
        ("firewall", f"firewall_{tag}", 1),
    ]
    status = client.get("/scheduler/status").get_json()
    assert status["job_id"] == "rtarf_event_sync" and set(status["pipelines"]) == {"default", "firewall"}
    assert status["pipelines"]["firewall"]["last_sync_status"] == "success"
    assert client.get("/pipelines/firewall/status").get_json()["job_id"] == "rtarf_event_sync.firewall"
    assert [job["id"] for job in client.get("/scheduler/jobs").get_json()["jobs"]] == [
        "rtarf_event_sync",
        "rtarf_verify",
    ]

    # start and stop act on one pipeline only.
    assert client.post("/pipelines/firewall/start").status_code == 200
    assert client.get("/pipelines/firewall/status").get_json()["is_running"] is True
    assert client.get("/scheduler/status").get_json()["is_running"] is False
    assert client.post("/pipelines/firewall/stop").status_code == 200
    assert client.get("/pipelines/firewall/status").get_json()["is_running"] is False

    wait_for(lambda: not client.get("/pipelines/firewall/status").get_json()["sync_in_progress"], what="the run")
    answer = client.post(
        "/pipelines/firewall/verify",
        json={"repair": False, "from": "2025-11-14T00:00:00Z", "to": "2025-11-15T00:00:00Z"},
    )
    verify = answer.get_json()
    assert answer.status_code == 200, verify
    assert (verify["in_step"], verify["source_total"]) == (True, 5)

    for path in ("/pipelines/nope/status", "/pipelines/nope/runs", "/pipelines/Nope/cursor"):
        missing = client.get(path)
        assert missing.status_code == 404, path
        assert set(missing.get_json()) >= {"error", "message"} and "no pipeline named" in missing.get_json()["message"]
    assert client.post("/pipelines/nope/sync-now").status_code == 404

    page = client.get("/").get_data(as_text=True)
    assert f"firewall_{tag}" in page and f"default_{tag}" in page


def test_a_caller_without_the_token_learns_no_pipeline_names() -> None:
    token = "t" * 24
    app = create_app(offline_settings(RTARF_API_TOKEN=token))
    client = app.test_client()
    for path in ("/pipelines/nope/sync-now", "/pipelines/default/sync-now"):
        assert client.post(path).status_code == 401, path
    assert client.post("/pipelines/nope/stop", headers={"Authorization": f"Bearer {token}"}).status_code == 404
    extension.shutdown(app, timeout=5)


def test_the_cli_acts_on_the_chosen_pipeline_and_refuses_an_unknown_one(
    two: tuple[dict[str, str], str], db_engine: sa.Engine
) -> None:
    environ, tag = two
    synced = run_cli("sync", "--pipeline", "firewall", env=environ)
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["inserted"] == 5
    assert count_rows(db_engine, f"firewall_{tag}") == 5
    before = run_cli("--pipeline", "firewall", "runs", "--json", env=environ)
    assert before.returncode == 0 and len(json.loads(before.stdout)["runs"]) == 1
    default = run_cli("sync", env=environ)
    assert default.returncode == 0 and json.loads(default.stdout)["inserted"] == 20
    unknown = run_cli("sync", "--pipeline", "nope", env=environ)
    assert unknown.returncode == 2
    assert "--pipeline 'nope': no such pipeline (pipelines: default, firewall)" in unknown.stderr


def test_a_bad_pipelines_file_stops_the_cli_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "pipelines.toml"
    path.write_text('[pipelines.alerts]\ntable = "t_a"\ncolumns = { "Bad Name" = { path = "a", type = "text" } }\n')
    done = run_cli("check", env={"RTARF_PIPELINES_FILE": str(path)})
    assert done.returncode == 2
    assert "pipeline 'alerts', key 'columns': column 'Bad Name'" in done.stderr
