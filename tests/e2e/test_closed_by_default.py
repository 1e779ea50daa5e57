"""Closed by default: without RTARF_API_TOKEN the service serves only on loopback.

Real gunicorn and `python wsgi.py` processes are started the ways an operator
would: RTARF_BIND, PORT, gunicorn's own `-b` and GUNICORN_CMD_ARGS. A reachable
address without a token stops start-up with exit status 2 and one line naming
the address and what chose it; RTARF_ALLOW_UNAUTHENTICATED=true lets it start
with a warning.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config import load_settings
from rtarf_sync.server.exposure import is_local, listen_refusal
from tests.infra.gunicorn_process import ROOT, GunicornProcess
from tests.infra.harness.process import free_port
from tests.infra.support import offline_settings

TOKEN = "closed-by-default-token"


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1:8000", True),
        ("127.8.9.10:1", True),
        ("[::1]:8000", True),
        ("localhost:8000", True),
        ("[::ffff:127.0.0.1]:8000", True),
        ("unix:/run/rtarf.sock", True),
        ("0.0.0.0:8000", False),
        ("[::]:8000", False),
        (":8000", False),
        ("10.1.2.3:8000", False),
        ("192.168.0.7:80", False),
        ("[fe80::1]:8000", False),
        ("no-such-host.invalid:8000", False),
    ],
)
def test_only_loopback_and_unix_sockets_are_local(address: str, local: bool) -> None:
    assert is_local(address) is local


def test_a_reachable_address_is_refused_only_without_a_token_and_without_the_opt_in() -> None:
    exposed = [("0.0.0.0:8000", "RTARF_BIND")]
    assert "0.0.0.0:8000 (from RTARF_BIND)" in (listen_refusal(load_settings({}), exposed) or "")
    assert listen_refusal(load_settings({"RTARF_API_TOKEN": TOKEN}), exposed) is None
    assert listen_refusal(load_settings({"RTARF_ALLOW_UNAUTHENTICATED": "true"}), exposed) is None
    assert listen_refusal(load_settings({}), [("127.0.0.1:8000", "the default")]) is None


def _environment(**extra: str) -> dict[str, str]:
    """A service whose runs fail fast (nothing real behind it): only start-up matters here."""
    settings = offline_settings()
    env = {
        "RTARF_DATABASE_URL": settings.database_url.reveal(),
        "RTARF_ES_URL": settings.es_urls[0],
        "RTARF_SOURCE_ENGINE": "elasticsearch",
        "RTARF_SYNC_MAX_RETRIES": "0",
        "RTARF_SYNC_INTERVAL_SECONDS": "3600",
        "RTARF_VERIFY_INTERVAL_SECONDS": "0",
    }
    env.update(extra)
    return env


def _gunicorn(tmp_path: Path, bind_args: bool = False, **extra: str) -> GunicornProcess:
    """A gunicorn process on its free port; with `bind_args` the port is given as `-b 0.0.0.0:PORT`."""
    process = GunicornProcess(tmp_path, _environment(**extra))
    if bind_args:
        process.argv[-1:-1] = ["-b", f"0.0.0.0:{process.port}"]
    return process


def _refused(argv: list[str], env: dict[str, str]) -> str:
    """Run a start-up that must stop; return its output after checking status 2 and one refusal line."""
    completed = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 2, output
    refusals = [line for line in output.splitlines() if line.startswith("rtarf-sync: configuration error: ")]
    assert len(refusals) == 1, output
    assert "Booting worker" not in output  # stopped before any worker could serve
    return refusals[0]


def test_gunicorn_refuses_a_command_line_bind_to_every_interface_without_a_token(tmp_path: Path) -> None:
    process = _gunicorn(tmp_path, bind_args=True)
    line = _refused(process.argv, process.env)
    assert f"0.0.0.0:{process.port}" in line and "-b/--bind" in line and "RTARF_API_TOKEN" in line
    assert "RTARF_ALLOW_UNAUTHENTICATED=true" in line


@pytest.mark.parametrize("variable", ["RTARF_BIND", "PORT", "GUNICORN_CMD_ARGS"])
def test_gunicorn_refuses_every_way_of_asking_for_a_reachable_address(tmp_path: Path, variable: str) -> None:
    process = _gunicorn(tmp_path)
    port = free_port()
    value = {"RTARF_BIND": f"0.0.0.0:{port}", "PORT": str(port), "GUNICORN_CMD_ARGS": f"-b 0.0.0.0:{port}"}
    if variable != "GUNICORN_CMD_ARGS":
        del process.env["RTARF_BIND"]
    process.env[variable] = value[variable]
    line = _refused(process.argv, process.env)
    assert f"0.0.0.0:{port}" in line and variable in line


def test_with_the_opt_in_gunicorn_serves_every_interface_and_warns(tmp_path: Path) -> None:
    process = _gunicorn(tmp_path, bind_args=True, RTARF_ALLOW_UNAUTHENTICATED="true")
    try:
        process.start()
        assert process.get("/healthz", timeout=10).status_code == 200
        assert f"Listening at: http://0.0.0.0:{process.port}" in process.log()
        warnings = [line for line in process.log().splitlines() if "RTARF_ALLOW_UNAUTHENTICATED=true" in line]
        assert len(warnings) == 1 and "WARNING" in warnings[0] and f"0.0.0.0:{process.port}" in warnings[0]
    finally:
        process.close()


def test_with_a_token_gunicorn_serves_every_interface_without_a_warning(tmp_path: Path) -> None:
    process = _gunicorn(tmp_path, bind_args=True, RTARF_API_TOKEN=TOKEN)
    try:
        process.start()
        assert "RTARF_ALLOW_UNAUTHENTICATED" not in process.log()
    finally:
        process.close()


def test_without_a_token_gunicorn_listens_on_loopback_by_default(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in GunicornProcess(tmp_path, _environment()).env.items()
        if key not in ("RTARF_BIND", "PORT", "GUNICORN_CMD_ARGS")
    }
    argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--print-config", "wsgi:app"]
    printed = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60).stdout
    assert "bind                               = ['127.0.0.1:8000']" in printed
    with_token = subprocess.run(
        argv, cwd=ROOT, env={**env, "RTARF_API_TOKEN": TOKEN}, capture_output=True, text=True, timeout=60
    ).stdout
    assert "= ['0.0.0.0:8000']" in with_token


def test_a_loopback_name_starts_without_a_token_or_a_warning(tmp_path: Path) -> None:
    process = _gunicorn(tmp_path)
    process.env["RTARF_BIND"] = f"localhost:{process.port}"
    try:
        process.start()
        assert "RTARF_ALLOW_UNAUTHENTICATED" not in process.log()
    finally:
        process.close()


def test_the_dev_server_refuses_a_reachable_address_without_a_token(tmp_path: Path) -> None:
    env = dict(GunicornProcess(tmp_path, _environment()).env)
    env["RTARF_BIND"] = f"0.0.0.0:{free_port()}"
    line = _refused([sys.executable, "wsgi.py"], env)
    assert env["RTARF_BIND"] in line and "RTARF_BIND" in line
