"""The development servers: `python wsgi.py` and `flask run --debug` (the Werkzeug reloader).

Under the reloader two processes import wsgi.py: the watcher and the serving
child. The scheduler must start once, in the child only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.infra.harness.process import free_port, spawn, stop
from tests.infra.support import offline_settings, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _environment(port: int) -> dict[str, str]:
    settings = offline_settings()  # the runs fail fast; only the scheduler's start-up matters here
    env = {key: value for key, value in os.environ.items() if not key.startswith("RTARF_")}
    env.update(
        {
            "RTARF_DATABASE_URL": settings.database_url.reveal(),
            "RTARF_ES_URL": settings.es_urls[0],
            "RTARF_SOURCE_ENGINE": "elasticsearch",
            "RTARF_SYNC_MAX_RETRIES": "0",
            "RTARF_SYNC_INTERVAL_SECONDS": "3600",
            "RTARF_BIND": f"127.0.0.1:{port}",
        }
    )
    return env


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Started servers; each one's whole process group is killed at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        stop(process, signal.SIGKILL, timeout=10)


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_python_wsgi_py_starts_the_scheduler_once_and_stops_it_on_ctrl_c(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, log = free_port(), tmp_path / "wsgi.log"
    process = spawn([sys.executable, "wsgi.py"], log, env=_environment(port), cwd=ROOT)
    processes.append(process)
    wait_for(lambda: _healthy(port), timeout=60, what="python wsgi.py")
    status = requests.get(f"http://127.0.0.1:{port}/scheduler/status", timeout=10).json()
    assert status["is_running"] is True
    assert status["pid"] == process.pid
    process.send_signal(signal.SIGINT)
    assert process.wait(30) in (0, 1, -signal.SIGINT)
    text = log.read_text()
    assert text.count("RTARF Event Scheduler started (interval: 3600s)") == 1
    assert "RTARF Event Scheduler shut down" in text


def test_the_flask_reloader_starts_the_scheduler_only_in_the_serving_child(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, log = free_port(), tmp_path / "flask.log"
    argv = [
        sys.executable,
        "-m",
        "flask",
        "--app",
        "wsgi",
        "run",
        "--debug",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    process = spawn(argv, log, env=_environment(port), cwd=ROOT)
    processes.append(process)
    wait_for(lambda: _healthy(port), timeout=90, what="flask run --debug")
    status = requests.get(f"http://127.0.0.1:{port}/scheduler/status", timeout=10).json()
    assert status["is_running"] is True
    assert status["pid"] != process.pid  # the watcher does not serve and runs no scheduler
    wait_for(lambda: "Debugger is active" in log.read_text(), timeout=30, what="the reloader's child")
    text = log.read_text()
    # One scheduler per serving child: the watcher starts none. (A source file changed by someone
    # else while the test runs makes the reloader replace its child, which then starts its own.)
    assert text.count("RTARF Event Scheduler started") == text.count("Restarting with stat") >= 1
