"""The Dockerfile's HEALTHCHECK command, run against a real gunicorn listening somewhere other than :8000."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from rtarf_sync.server.healthcheck import command_line_bind
from tests.infra.gunicorn_process import ROOT, GunicornProcess
from tests.infra.harness.http import EngineHttp
from tests.infra.harness.process import free_port, spawn
from tests.infra.support import wait_for

pytestmark = pytest.mark.e2e


def dockerfile_healthcheck() -> list[str]:
    """The HEALTHCHECK CMD of the Dockerfile, with this interpreter for `python`."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.MULTILINE)
    assert found, "no HEALTHCHECK ... CMD [...] in the Dockerfile"
    argv = json.loads(found.group(1))
    return [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]


def run_healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the container's health check in `env`, from the image's working directory (the repository root)."""
    return subprocess.run(dockerfile_healthcheck(), env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)


@pytest.fixture
def service_env(opensearch: EngineHttp, database_url: str) -> dict[str, str]:
    """The variables of a service on an empty index (the health check needs none of its data)."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_ES_URL": opensearch.url,
        "RTARF_ES_INDEX": f"rtarf-health-{suffix}",
        "RTARF_TABLE": f"health_{suffix}",
        "RTARF_SOURCE_ENGINE": "opensearch",
        "RTARF_SYNC_INTERVAL_SECONDS": "3600",
    }


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[GunicornProcess]]:
    """gunicorn processes started by a test, killed at its end."""
    started: list[GunicornProcess] = []
    yield started
    for server in started:
        server.close()


def test_the_health_check_follows_port_to_a_non_default_port(
    service_env: dict[str, str], servers: list[GunicornProcess], tmp_path: Path
) -> None:
    server = GunicornProcess(tmp_path, service_env)
    del server.env["RTARF_BIND"]
    server.env["PORT"] = str(server.port)  # PORT means 0.0.0.0: a reachable address needs the token
    server.env["RTARF_API_TOKEN"] = "health-check-token-0123456789"
    servers.append(server.start())
    assert run_healthcheck(server.env).returncode == 0
    stopped = dict(server.env, PORT=str(free_port()))  # nothing listens there
    answer = run_healthcheck(stopped)
    assert answer.returncode == 1 and "unhealthy" in answer.stderr


def test_the_health_check_asks_a_unix_socket_bind_on_its_socket(
    service_env: dict[str, str], servers: list[GunicornProcess], tmp_path: Path
) -> None:
    # The old check took everything after the last ':' of RTARF_BIND as a TCP port on 127.0.0.1.
    server = GunicornProcess(tmp_path, service_env)
    socket_path = Path(tempfile.mkdtemp(prefix="rtarf-")) / "s.sock"  # unix socket paths are short
    server.env["RTARF_BIND"] = f"unix:{socket_path}"
    server.process = spawn(server.argv, server.log_path, env=server.env, cwd=ROOT)
    servers.append(server)
    wait_for(
        lambda: "Booting worker" in server.log() and socket_path.exists(), timeout=60, what=f"gunicorn on {socket_path}"
    )
    wait_for(lambda: run_healthcheck(server.env).returncode == 0, timeout=60, what="a healthy answer on the socket")


def test_gunicorns_own_bind_on_its_command_line_wins() -> None:
    assert (
        command_line_bind(["python", "gunicorn", "-c", "gunicorn.conf.py", "-b", "[::1]:9001", "wsgi:app"])
        == "[::1]:9001"
    )
    assert command_line_bind(["gunicorn", "--bind=unix:/run/rtarf.sock", "wsgi:app"]) == "unix:/run/rtarf.sock"
    assert command_line_bind(["gunicorn", "-b127.0.0.1:9002"]) == "127.0.0.1:9002"
    assert command_line_bind(["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]) is None
