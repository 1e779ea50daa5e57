"""The original README's curl and Python `requests` examples, run against a real gunicorn.

The examples are kept verbatim; the only change is the port: the test binds
gunicorn to a free port and replaces `localhost:8000` with `localhost:<port>`,
so the suite never collides with a service already on 8000.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from tests.gunicorn_process import GunicornProcess
from tests.harness.http import EngineHttp
from tests.support import count_rows, load_sample

pytestmark = pytest.mark.e2e

EVENTS = 30

README_CURL = {
    "sync-now": "curl -X POST http://localhost:8000/scheduler/sync-now",
    "status": "curl http://localhost:8000/scheduler/status",
    "stop": "curl -X POST http://localhost:8000/scheduler/stop",
    "start": "curl -X POST http://localhost:8000/scheduler/start",
}

README_PYTHON = """\
import requests

# Trigger a manual sync
response = requests.post("http://localhost:8000/scheduler/sync-now")
print(response.json())

# Check the scheduler status
status = requests.get("http://localhost:8000/scheduler/status").json()
print(f"Running: {status['is_running']}, success rate: {status['success_rate']}")
"""


@pytest.fixture
def server(tmp_path: Path, opensearch: EngineHttp, index_name: str, table_name: str,
           database_url: str) -> Iterator[GunicornProcess]:
    """gunicorn with the interval job disabled, so every run in these tests is one the examples asked for."""
    load_sample(opensearch, index_name, EVENTS)
    env = {"RTARF_DATABASE_URL": database_url, "RTARF_ES_URL": opensearch.url, "RTARF_ES_INDEX": index_name,
           "RTARF_TABLE": table_name, "RTARF_SYNC_SETTLE_SECONDS": "0", "RTARF_SYNC_ENABLED": "false"}
    process = GunicornProcess(tmp_path, env)
    try:
        yield process.start()
    finally:
        process.close()


def _on_port(text: str, port: int) -> str:
    return text.replace("localhost:8000", f"localhost:{port}")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_examples(server: GunicornProcess, table_name: str, db_engine: sa.Engine) -> None:
    def curl(name: str) -> dict[str, object]:
        argv = shlex.split(_on_port(README_CURL[name], server.port))
        completed = subprocess.run([*argv, "--silent", "--show-error"], capture_output=True, text=True, timeout=120)
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout)  # type: ignore[no-any-return]

    synced = curl("sync-now")
    assert synced["message"] == "Manual sync completed"
    assert synced["result"]["status"] == "success"  # type: ignore[index]
    assert synced["result"]["inserted"] == EVENTS  # type: ignore[index]
    assert count_rows(db_engine, table_name) == EVENTS
    status = curl("status")
    assert (status["total_syncs"], status["success_rate"], status["last_sync_status"]) == (1, "100.0%", "success")
    assert status["is_running"] is False  # RTARF_SYNC_ENABLED=false
    assert curl("start")["scheduler_status"]["is_running"] is True  # type: ignore[index]
    assert curl("stop")["scheduler_status"]["is_running"] is False  # type: ignore[index]


def test_the_python_requests_example(server: GunicornProcess, table_name: str, db_engine: sa.Engine) -> None:
    completed = subprocess.run([sys.executable, "-c", _on_port(README_PYTHON, server.port)],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    first, second = completed.stdout.splitlines()
    assert "'message': 'Manual sync completed'" in first
    assert f"'inserted': {EVENTS}" in first
    assert second == "Running: False, success rate: 100.0%"
    assert count_rows(db_engine, table_name) == EVENTS
