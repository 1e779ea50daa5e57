"""RTARF_LOG_FORMAT=json: every line one JSON object, naming the run it belongs to, secrets masked.

Real runs against the real OpenSearch node and PostgreSQL: under gunicorn (its own access and
error lines included) and in process with parallel slices; the run fields are checked against
the run's row in rtarf_sync_runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa

from config import ConfigError, Settings, load_settings
from rtarf_sync import create_app
from rtarf_sync.engine.runs.lease import Fence, Lease
from rtarf_sync.engine.runs.renewal import LeaseKeeper
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.engine.target.tables import build_tables, create_tables
from rtarf_sync.logs import configure_logging
from rtarf_sync.run_context import in_run
from rtarf_sync.service.extension import scheduler_of
from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.harness.http import EngineHttp
from tests.infra.harness.process import free_port
from tests.infra.support import load_sample, offline_settings, runs_of, service_env, wait_for

TOKEN = "planted-Secret-token-7Qx2w9Lm"  # an API token: a secret the Redactor knows
RUN_FIELDS = ("run_id", "pipeline", "trigger", "mode")


def _objects(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object; fails on the first line that is not one."""
    objects = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(value, dict), line
        assert {"timestamp", "level", "logger", "message"} <= value.keys(), line
        objects.append(value)
    return objects


def _check_run_lines(lines: list[dict[str, Any]], run: dict[str, Any]) -> list[dict[str, Any]]:
    """The lines of `run` (its row); each carries the row's trigger and mode and the default pipeline."""
    mine = [line for line in lines if line.get("run_id") == run["id"]]
    assert mine, f"no line names run {run['id']}"
    for line in mine:
        assert (line["pipeline"], line["trigger"], line["mode"]) == ("default", run["trigger"], run["mode"]), line
    return mine


@pytest.fixture
def text_logs_after() -> Iterator[None]:
    """Give the process its text format and level back, for the tests that follow."""
    yield
    configure_logging(offline_settings())


def test_the_format_is_text_by_default_and_checked() -> None:
    assert offline_settings().log_format == "text"
    assert offline_settings(RTARF_LOG_FORMAT="JSON").log_format == "json"
    with pytest.raises(ConfigError, match="RTARF_LOG_FORMAT='xml' is invalid: expected one of text, json"):
        load_settings({"RTARF_LOG_FORMAT": "xml"})


@pytest.mark.e2e
def test_a_run_under_gunicorn_logs_json_lines_naming_it(
    tmp_path: Path, opensearch: EngineHttp, index_name: str, table_name: str, database_url: str, db_engine: sa.Engine
) -> None:
    load_sample(opensearch, index_name, 40)
    env = service_env(
        database_url,
        opensearch,
        index_name,
        table_name,
        **{
            "RTARF_SYNC_BATCH_SIZE": "10",
            "RTARF_API_TOKEN": TOKEN,
            # DEBUG: the engine client then logs each request, from the thread that reads the pages.
            "RTARF_LOG_FORMAT": "json",
            "RTARF_LOG_LEVEL": "DEBUG",
        },
    )
    server = GunicornProcess(tmp_path, env)
    try:
        server.start()
        wait_for(
            lambda: server.get("/scheduler/status").json()["total_syncs"] == 1,
            timeout=90,
            what="the first scheduled run",
        )
        # A careless client puts the token in a query string: the access line must not show it.
        assert server.get(f"/healthz?token={TOKEN}").status_code == 200
        wait_for(lambda: "/healthz?token=" in server.log(), what="the access line")
        code, _ = server.terminate(timeout=60)
        assert code == 0, server.log()
    finally:
        server.close()
    text = server.log()
    assert TOKEN not in text
    lines = _objects(text)
    [run] = runs_of(db_engine, table_name)
    assert (run["trigger"], run["mode"], run["status"]) == ("scheduled", "incremental", "success")
    mine = _check_run_lines(lines, run)
    assert any(line["message"].startswith("Starting RTARF event sync") for line in mine)
    assert any(line["message"].startswith("Sync completed successfully") for line in mine)
    assert any(line["thread"] == "rtarf-page-reader" for line in mine), "no line of the page reader names the run"
    reader_lines = [line for line in lines if line.get("thread") == "rtarf-page-reader"]
    assert reader_lines and all(line.get("run_id") == run["id"] for line in reader_lines)
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert any("/healthz?token=***" in line["message"] for line in access), access
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in lines)
    assert any("SIGTERM received" in line["message"] for line in lines)
    assert all(not set(RUN_FIELDS) & line.keys() for line in access)  # a request outside a run names none


def test_parallel_slices_and_listeners_name_the_run_and_secrets_are_masked_in_every_field(
    capsys: pytest.CaptureFixture[str],
    text_logs_after: None,
    opensearch: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
) -> None:
    load_sample(opensearch, index_name, 30)
    settings = make_settings(
        opensearch,
        index_name,
        RTARF_LOG_FORMAT="json",
        RTARF_LOG_LEVEL="DEBUG",
        RTARF_SYNC_SLICES="2",
        RTARF_SYNC_BATCH_SIZE="5",
        RTARF_API_TOKEN=TOKEN,
        RTARF_SYNC_ENABLED="false",
    )
    scheduler = scheduler_of(create_app(settings))  # configures logging the way the service does

    def failing_listener(result: SyncResult) -> None:
        raise RuntimeError("listener broke")

    scheduler.add_result_listener(failing_listener)
    try:
        result = scheduler.sync_now(trigger="manual", mode="full")
    finally:
        scheduler.shutdown(timeout=5)
    assert result.status == "success", result.error
    log = logging.getLogger("rtarf_sync.test")
    try:
        raise RuntimeError(f"the engine said: bad token {TOKEN}")
    except RuntimeError:
        log.exception("planted", extra={"request": {"headers": [f"Bearer {TOKEN}"]}, "note": TOKEN})
    text = capsys.readouterr().err
    assert TOKEN not in text
    lines = _objects(text)
    [run] = runs_of(db_engine, table_name)
    assert (run["id"], run["trigger"], run["mode"]) == (result.run_id, "manual", "full")
    mine = _check_run_lines(lines, run)
    slice_threads = {line["thread"] for line in mine if line["thread"].startswith("rtarf-slice-")}
    assert slice_threads == {"rtarf-slice-0", "rtarf-slice-1"}
    assert all(line.get("run_id") == run["id"] for line in lines if line["thread"].startswith("rtarf-slice-"))
    # What the listeners log after the run, about it, names it too.
    assert any(line["message"] == "A result listener failed" for line in mine)
    [planted] = [line for line in lines if line["message"] == "planted"]
    assert not set(RUN_FIELDS) & planted.keys()  # the run has ended: its context was reset
    assert planted["note"] == "***"
    assert planted["request"] == {"headers": ["Bearer ***"]}
    assert "RuntimeError: the engine said: bad token ***" in planted["exc_info"]


def test_the_lease_keeper_names_the_run_that_started_it(
    capsys: pytest.CaptureFixture[str], text_logs_after: None, db_engine: sa.Engine, table_name: str
) -> None:
    configure_logging(offline_settings(RTARF_LOG_FORMAT="json"))
    tables = build_tables(table_name)
    create_tables(db_engine, tables)
    lease = Lease(tables.lease, table_name, 60)
    with db_engine.begin() as connection:
        fence = lease.acquire(connection, "json-logs-test")
    assert isinstance(fence, Fence)
    # PostgreSQL unreachable for the keeper: its renewal fails and it says so, in its own thread.
    gone = sa.create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/rtarf", connect_args={"connect_timeout": 2}
    )
    run = SyncResult(trigger="scheduled", mode="incremental", run_id=4242)
    seen: list[str] = []

    def renewal_failed() -> bool:
        seen.append(capsys.readouterr().err)
        return "could not renew lease" in "".join(seen)

    try:
        with in_run(run), LeaseKeeper(gone, lease, fence, interval=0.05):
            wait_for(renewal_failed, what="a failed renewal")
    finally:
        gone.dispose()
    lines = _objects("".join(seen) + capsys.readouterr().err)
    renewals = [line for line in lines if line["message"].startswith("could not renew lease")]
    assert renewals
    for line in renewals:
        assert line["thread"].startswith("lease-keeper-"), line
        assert (line["run_id"], line["trigger"], line["mode"]) == (4242, "scheduled", "incremental"), line
