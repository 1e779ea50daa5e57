"""gunicorn as a child process for the end-to-end tests: start, wait until it answers, SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from tests.infra.harness.process import free_port, spawn, stop
from tests.infra.support import wait_for

ROOT = Path(__file__).resolve().parents[2]


class GunicornProcess:
    """`python -m gunicorn -c gunicorn.conf.py wsgi:app` on a free port of 127.0.0.1."""

    def __init__(self, log_dir: Path, env: dict[str, str], *extra_args: str) -> None:
        self.port = free_port()
        self.log_path = log_dir / "gunicorn.log"
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("RTARF_")}
        self.env.update(env)
        self.env["RTARF_BIND"] = f"127.0.0.1:{self.port}"
        self.argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *extra_args, "wsgi:app"]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, workers: int = 1) -> GunicornProcess:
        """Start gunicorn and return once every worker has booted and /healthz answers."""
        self.process = spawn(self.argv, self.log_path, env=self.env, cwd=ROOT)
        wait_for(self._answers, timeout=60, what=f"gunicorn on {self.url}; log:\n{self.log()}")
        wait_for(lambda: self.log().count("Booting worker") >= workers, timeout=30, what="the workers")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False  # not up yet, or a busy machine: ask again until the deadline

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET a path of the server."""
        return requests.get(f"{self.url}{path}", timeout=kwargs.pop("timeout", 120), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST to a path of the server."""
        return requests.post(f"{self.url}{path}", timeout=kwargs.pop("timeout", 120), **kwargs)

    @property
    def master_pid(self) -> int:
        """Process id of the gunicorn master."""
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        """Send a signal to the master."""
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the master to exit and return its status."""
        assert self.process is not None
        return self.process.wait(timeout)

    def wait_after_sigterm(self, timeout: float) -> int | None:
        """SIGTERM the master and return its exit status, or None if it outlived `timeout`."""
        return self.terminate(timeout)[0]

    def worker_pids(self) -> list[int]:
        """Process ids of the workers (the master's children)."""
        assert self.process is not None
        return [child.pid for child in psutil.Process(self.process.pid).children()]

    def log(self) -> str:
        """Everything gunicorn, the app and the scheduler wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float) -> tuple[int | None, float]:
        """Send SIGTERM to the master; return its exit status (None if still alive) and the seconds it took."""
        assert self.process is not None
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - began

    def close(self) -> None:
        """Make sure nothing is left running: the master and any worker (they share a process group)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        stop(self.process, signal.SIGKILL, timeout=10)
