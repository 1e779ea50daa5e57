"""The documented examples, run as written against a real gunicorn, real PostgreSQL and OpenSearch.

Two sets are checked: the calls of the original README that users already
script against (`curl -X POST http://localhost:8000/scheduler/sync-now`,
`curl http://localhost:8000/scheduler/status`, `requests.get/post`), and
every `curl ... localhost:8000` line and Python block of README.md and the
docs/ pages, read from the files so the documents cannot drift from the service.
The only change made to any example is the port: gunicorn is bound to a
free port and `localhost:8000` is replaced with `localhost:<port>`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.harness.http import EngineHttp
from tests.infra.support import count_rows, load_sample, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 30
TOKEN = "readme-example-token"

ORIGINAL_CURL = ["curl -X POST http://localhost:8000/scheduler/sync-now", "curl http://localhost:8000/scheduler/status"]
ORIGINAL_PYTHON = """\
import requests

response = requests.post("http://localhost:8000/scheduler/sync-now")
print(response.json()["message"])
status = requests.get("http://localhost:8000/scheduler/status").json()
print(status["total_syncs"], status["success_rate"])
"""

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def readme_blocks(language: str) -> list[str]:
    """The fenced code blocks in `language` of README.md and the docs pages, in reading order."""
    return [
        block
        for path in DOCUMENTS
        for block in re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.S | re.M)
    ]


def readme_curl_lines() -> list[str]:
    """Every curl command of the documentation that calls the service, without trailing comments."""
    lines = [line for block in readme_blocks("sh") for line in block.splitlines()]
    return [line.split("  #")[0].strip() for line in lines if line.startswith("curl ") and "localhost:8000" in line]


@pytest.fixture
def environment(opensearch: EngineHttp, index_name: str, table_name: str, database_url: str) -> dict[str, str]:
    """Settings of the service (and of the documented standalone scheduler example)."""
    load_sample(opensearch, index_name, EVENTS)
    return {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_ES_URL": opensearch.url,
        "RTARF_ES_INDEX": index_name,
        "RTARF_TABLE": table_name,
        "RTARF_SYNC_SETTLE_SECONDS": "0",
        "RTARF_SYNC_ENABLED": "false",
    }


@pytest.fixture
def server(tmp_path: Path, environment: dict[str, str]) -> Iterator[GunicornProcess]:
    """gunicorn with the interval job disabled, so every run is one an example asked for."""
    process = GunicornProcess(tmp_path, environment)
    try:
        yield process.start()
    finally:
        process.close()


@pytest.fixture
def token_server(tmp_path: Path, environment: dict[str, str]) -> Iterator[GunicornProcess]:
    """The same with RTARF_API_TOKEN set, as the documented POST examples assume."""
    process = GunicornProcess(tmp_path, {**environment, "RTARF_API_TOKEN": TOKEN})
    try:
        yield process.start()
    finally:
        process.close()


def _run(command: str, port: int, shell: bool = True) -> str:
    env = {**os.environ, "RTARF_API_TOKEN": TOKEN}
    completed = subprocess.run(
        command.replace("localhost:8000", f"localhost:{port}"),
        shell=shell,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        executable="/bin/bash",
    )
    assert completed.returncode == 0, (command, completed.stderr)
    return completed.stdout


def test_the_original_curl_calls(server: GunicornProcess, table_name: str, db_engine: sa.Engine) -> None:
    synced = json.loads(_run(ORIGINAL_CURL[0], server.port))
    assert synced["message"] == "Manual sync completed"
    assert (synced["result"]["status"], synced["result"]["inserted"]) == ("success", EVENTS)
    assert count_rows(db_engine, table_name) == EVENTS
    status = json.loads(_run(ORIGINAL_CURL[1], server.port))
    assert (status["total_syncs"], status["success_rate"], status["last_sync_status"]) == (1, "100.0%", "success")


def test_the_original_requests_calls(server: GunicornProcess, table_name: str, db_engine: sa.Engine) -> None:
    output = _run(f"{sys.executable} -c '{ORIGINAL_PYTHON}'", server.port)
    assert output.splitlines() == ["Manual sync completed", "1 100.0%"]
    assert count_rows(db_engine, table_name) == EVENTS


def test_every_curl_line_of_the_readme(token_server: GunicornProcess, table_name: str, db_engine: sa.Engine) -> None:
    lines = readme_curl_lines()
    assert any("/scheduler/sync-now" in line for line in lines)  # the docs still show the routes
    for line in lines:
        output = _run(line, token_server.port)
        if line.endswith("/metrics"):
            assert "rtarf_sync_runs_total" in output
            continue
        if line.endswith("localhost:8000/"):  # the status page, for people
            assert "<h1>RTARF Event Sync</h1>" in output
            continue
        body = json.loads(output)
        if "-X POST" in line and "Authorization" not in line:
            assert body["error"] == "Unauthorized", line
        elif line.endswith("/nope"):
            assert body["error"] == "Not Found"
        elif line.endswith("/trigger"):
            # 202 once an earlier line started the interval job, 409 while it is paused or disabled.
            assert body.get("message") == "Sync requested" or "trigger refused" in body["message"], body
            wait_for(lambda: _trigger_idle(token_server), what="the triggered run to end before the next line")
        elif "-X POST" not in line and line.endswith("/sync-now"):
            assert body["error"] == "Method Not Allowed"
        elif line.endswith("/sync-now"):
            assert body["message"] == "Manual sync completed", body
        else:
            assert "error" not in body, (line, body)
    assert count_rows(db_engine, table_name) == EVENTS


def _trigger_idle(server: GunicornProcess) -> bool:
    status = server.get("/scheduler/status").json()
    return not (status["trigger"]["pending"] or status["trigger"]["running"] or status["sync_in_progress"])


def test_the_readme_python_blocks(
    token_server: GunicornProcess, environment: dict[str, str], table_name: str, db_engine: sa.Engine
) -> None:
    blocks = readme_blocks("python")
    client = next(block for block in blocks if "import requests" in block)
    output = _run(f"{sys.executable} - <<'EOF'\n{client}EOF", token_server.port)
    assert "running=False syncs=0 success=0.0%" in output
    assert f"success {EVENTS} processed, {EVENTS} inserted, 0 updated" in output

    standalone = next(block for block in blocks if "RtarfEventScheduler(interval_seconds=10)" in block)
    own_table = f"{table_name}_standalone"
    completed = subprocess.run(
        [sys.executable, "-c", standalone],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **environment, "RTARF_TABLE": own_table},
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split()[0] == "True"  # is_running right after start()
    # stop() pauses the schedule; the first run, already started, finishes before the process exits.
    assert count_rows(db_engine, own_table) == EVENTS
