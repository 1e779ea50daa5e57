"""The command line, run as a user runs it: `python -m rtarf_sync ...` in a subprocess.

Every test points the CLI at the real test PostgreSQL and a real engine (the
OpenSearch node or the Elasticsearch protocol server) through RTARF_ variables,
and checks the outcome in the engine or the database, not only the output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from config import load_settings
from rtarf_sync import create_app
from rtarf_sync.cli.commands import sample_index
from rtarf_sync.sample import load_events
from rtarf_sync.engine.target.tables import CURSOR_TABLE, DEAD_LETTER_TABLE, LEASE_TABLE, RUNS_TABLE
from tests.infra.harness.http import EngineHttp
from tests.infra.harness.process import free_port

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {  # each command's --help must explain it: a phrase its help text has to contain
    "init-db": "rtarf_sync_dead_letters",
    "sync": "exit status: 0 success or partial",
    "status": "/scheduler/status",
    "check": "RTARF_DATABASE_URL",
    "load-sample": "--count",
    "serve": "gunicorn -c gunicorn.conf.py wsgi:app",
    "verify": "exit status: 0 in step",
    "cursor": "refused unless --force",
}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the CLI with only the given RTARF_ variables set."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("RTARF_")}
    return subprocess.run(
        [sys.executable, "-m", "rtarf_sync", *args],
        env={**base, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli_env(database_url: str, table_name: str, index_name: str) -> dict[str, str]:
    """Variables for a run against the test database, a fresh table and a fresh index."""
    return {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_TABLE": table_name,
        "RTARF_ES_INDEX": index_name,
        "RTARF_SYNC_SETTLE_SECONDS": "0",
        "RTARF_SYNC_RETRY_MAX_SECONDS": "0.2",
    }


def engine_env(engine: EngineHttp) -> dict[str, str]:
    return {"RTARF_ES_URL": engine.url, "RTARF_SOURCE_ENGINE": engine.kind}


def test_help_of_every_command_explains_it_without_valid_settings() -> None:
    bad = {"RTARF_SYNC_INTERVAL_SECONDS": "abc"}  # --help must not need a valid environment
    top = run_cli("--help", env=bad)
    assert top.returncode == 0, top.stderr
    for command, phrase in COMMANDS.items():
        assert command in top.stdout
        shown = run_cli(command, "--help", env=bad)
        assert shown.returncode == 0, shown.stderr
        assert phrase in shown.stdout, f"{command} --help does not mention {phrase!r}:\n{shown.stdout}"


def test_no_command_is_a_usage_error() -> None:
    shown = run_cli()
    assert shown.returncode == 2
    assert "COMMAND" in shown.stderr


@pytest.mark.parametrize(
    ("command", "name", "value"),
    [
        ("sync", "RTARF_SYNC_INTERVAL_SECONDS", "abc"),
        ("init-db", "RTARF_TABLE", "Bad-Name"),
        ("load-sample", "RTARF_SYNC_ENABLED", "maybe"),
        ("status", "RTARF_SYNC_BATCH_SIZE", "0"),
        ("check", "RTARF_SOURCE_ENGINE", "solr"),
    ],
)
def test_bad_setting_exits_2_with_one_line_naming_it(command: str, name: str, value: str) -> None:
    shown = run_cli(command, env={name: value})
    assert shown.returncode == 2
    lines = shown.stderr.strip().splitlines()
    assert len(lines) == 1, shown.stderr
    assert name in lines[0] and value in lines[0]
    assert shown.stdout == ""


def test_bad_database_url_is_named_without_its_password() -> None:
    shown = run_cli("sync", env={"RTARF_DATABASE_URL": "mysql://root:Canary-Db-9931@db/rtarf"})
    assert shown.returncode == 2
    assert "RTARF_DATABASE_URL" in shown.stderr
    assert "Canary-Db-9931" not in shown.stderr


def test_load_sample_indexes_the_events_and_refreshes(opensearch: EngineHttp, index_name: str) -> None:
    env = {"RTARF_ES_URL": opensearch.url}  # engine detected from GET /
    try:
        first = run_cli("load-sample", "--count", "1500", "--batch", "500", "--index", index_name, env=env)
        assert first.returncode == 0, first.stderr
        assert "1,500/1,500 (100%" in first.stderr  # progress a person can follow
        assert opensearch.count(index_name) == 1500  # no refresh here: the command made them searchable
        more = run_cli("load-sample", "--count", "500", "--first", "1500", "--index", index_name, env=env)
        again = run_cli("load-sample", "--count", "1500", "--index", index_name, env=env)
        assert more.returncode == 0 and again.returncode == 0, more.stderr + again.stderr
        assert opensearch.count(index_name) == 2000  # new numbers add events; the same numbers update them
    finally:
        opensearch.delete_index(index_name)


def test_load_sample_into_an_unreachable_engine_says_what_to_do() -> None:
    shown = run_cli("load-sample", "--count", "10", env={"RTARF_ES_URL": f"http://127.0.0.1:{free_port()}"})
    assert shown.returncode == 1
    assert "cannot reach the search engine" in shown.stderr and "RTARF_ES_URL" in shown.stderr


def test_sample_index_follows_the_index_setting() -> None:
    assert sample_index("rtarf-events*") == "rtarf-events-sample"
    assert sample_index("rtarf-events-*,other") == "rtarf-events-sample"
    assert sample_index("audit") == "audit"


def test_init_db_creates_the_tables_and_is_idempotent(
    cli_env: dict[str, str], db_engine: sa.Engine, table_name: str
) -> None:
    for _ in range(2):
        shown = run_cli("init-db", env=cli_env)
        assert shown.returncode == 0, shown.stderr
        assert table_name in shown.stdout and "***" not in shown.stdout
    inspector = sa.inspect(db_engine)
    names = set(inspector.get_table_names())
    assert {table_name, CURSOR_TABLE, LEASE_TABLE, RUNS_TABLE, DEAD_LETTER_TABLE} <= names
    columns = {column["name"]: str(column["type"]) for column in inspector.get_columns(table_name)}
    assert columns["es_id"] == "TEXT" and columns["source"] == "JSONB"


def _rows(db_engine: sa.Engine, table: str) -> int:
    with db_engine.connect() as connection:
        return int(connection.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one())


def test_sync_prints_exact_counts_as_json(
    engine: EngineHttp, cli_env: dict[str, str], db_engine: sa.Engine, index_name: str, table_name: str
) -> None:
    engine.create_index(index_name)
    load_events(engine.bulk, index_name, 2500)
    engine.refresh(index_name)
    env = {**cli_env, **engine_env(engine), "RTARF_SYNC_BATCH_SIZE": "1000"}
    try:
        first = run_cli("sync", env=env)
        assert first.returncode == 0, first.stderr
        result = json.loads(first.stdout)
        assert (result["status"], result["total_processed"], result["inserted"]) == ("success", 2500, 2500)
        assert result["pages"] == 3 and result["trigger"] == "cli" and result["engine"] == engine.kind
        assert "Sync completed successfully: 2500 events processed" in first.stderr
        assert _rows(db_engine, table_name) == 2500
        second = json.loads(run_cli("sync", env=env).stdout)
        assert (second["status"], second["inserted"], second["updated"]) == ("success", 0, 0)
        assert second["unchanged"] == second["total_processed"] > 0  # the overlap window, read again
    finally:
        engine.delete_index(index_name)


def test_status_lists_the_runs_from_postgresql(
    elasticsearch: EngineHttp, cli_env: dict[str, str], index_name: str, table_name: str
) -> None:
    env = {**cli_env, **engine_env(elasticsearch)}
    missing = run_cli("status", env=env)
    assert missing.returncode == 1 and "init-db" in missing.stderr  # says what to do next
    elasticsearch.create_index(index_name)
    load_events(elasticsearch.bulk, index_name, 40)
    elasticsearch.refresh(index_name)
    assert run_cli("sync", env=env).returncode == 0
    text = run_cli("status", env=env)
    assert text.returncode == 0, text.stderr
    assert f"target table {table_name}: 40 rows" in text.stdout
    assert f"cursor for {index_name}: 2025-11-14T00:00:39" in text.stdout
    state = json.loads(run_cli("status", "--json", env=env).stdout)
    assert state["rows"] == 40 and state["dead_letters"] == 0
    assert [(run["trigger"], run["status"], run["inserted"]) for run in state["runs"]] == [("cli", "success", 40)]


def test_sync_with_postgresql_down_fails_clearly_without_secrets(elasticsearch: EngineHttp) -> None:
    port = free_port()
    env = {
        "RTARF_DATABASE_URL": f"postgresql+psycopg://postgres:Canary-Pg-4471@127.0.0.1:{port}/rtarf",
        "RTARF_ES_USERNAME": "elastic",
        "RTARF_ES_PASSWORD": "Canary-Es-5582",
        **engine_env(elasticsearch),
        "RTARF_SYNC_MAX_RETRIES": "1",
        "RTARF_SYNC_RETRY_MAX_SECONDS": "0.1",
    }
    shown = run_cli("sync", env=env)
    assert shown.returncode == 1
    assert json.loads(shown.stdout)["status"] == "failed"
    assert f"cannot reach PostgreSQL at postgresql+psycopg://postgres:***@127.0.0.1:{port}/rtarf" in shown.stderr
    assert "start it or set RTARF_DATABASE_URL" in shown.stderr
    assert "cannot reach the search engine" not in shown.stderr  # only what is really down is named
    for canary in ("Canary-Pg-4471", "Canary-Es-5582"):
        assert canary not in shown.stdout + shown.stderr


def test_check_names_what_is_unreachable(elasticsearch: EngineHttp, database_url: str) -> None:
    up = run_cli("check", env={"RTARF_DATABASE_URL": database_url, **engine_env(elasticsearch)})
    assert up.returncode == 0, up.stderr
    assert up.stdout.count(": reachable") == 2
    down = run_cli(
        "check",
        env={
            "RTARF_DATABASE_URL": database_url,
            "RTARF_ES_URL": f"http://127.0.0.1:{free_port()}",
            "RTARF_SOURCE_ENGINE": "opensearch",
        },
    )
    assert down.returncode == 1
    assert "search engine at" in down.stdout and "UNREACHABLE" in down.stdout
    assert "start it or set RTARF_ES_URL" in down.stderr and "cannot reach PostgreSQL" not in down.stderr


@pytest.fixture
def served_app() -> Iterator[str]:
    """The app (scheduler not started) served over real HTTP on a free port."""
    settings = load_settings({"RTARF_SYNC_INTERVAL_SECONDS": "120"})
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


def test_status_url_prints_the_service_status(served_app: str) -> None:
    shown = run_cli("status", "--url", served_app)
    assert shown.returncode == 0, shown.stderr
    status: dict[str, Any] = json.loads(shown.stdout)
    assert status["interval_seconds"] == 120 and status["total_syncs"] == 0 and status["success_rate"] == "0.0%"
    gone = run_cli("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert gone.returncode == 1 and "cannot reach the service" in gone.stderr and "--url" in gone.stderr


def test_sync_skips_with_exit_3_while_another_process_holds_the_lease(
    elasticsearch: EngineHttp, cli_env: dict[str, str], db_engine: sa.Engine, table_name: str
) -> None:
    env = {**cli_env, **engine_env(elasticsearch)}
    assert run_cli("init-db", env=env).returncode == 0
    with db_engine.begin() as connection:
        connection.execute(
            sa.text(
                f"INSERT INTO {LEASE_TABLE} (name, owner, epoch, acquired_at, expires_at) "
                "VALUES (:name, 'replica-b:4242:cafe', 7, now(), now() + interval '1 minute')"
            ),
            {"name": table_name},
        )
    shown = run_cli("sync", env=env)
    assert shown.returncode == 3, shown.stdout + shown.stderr
    result = json.loads(shown.stdout)
    assert result["status"] == "skipped" and "replica-b:4242:cafe" in result["error"]
    assert "try again when that run ends" in shown.stderr
    assert _rows(db_engine, table_name) == 0
