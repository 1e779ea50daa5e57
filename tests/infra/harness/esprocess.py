"""The Elasticsearch protocol server in a process of its own, controlled over HTTP.

In the pytest process the server's threads would compete for the GIL with the
code under test (the sync's reader thread, the lease keeper, the retries),
which slows both and shifts timings on a loaded machine. Here it runs as
`python -m tests.infra.esserver --port 0`; `faults` and `request_log` have the same
names as on the in-process server and travel over the server's control
channel (`/_rtarf_test/...`, never logged, never faulted).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any, Callable

from tests.infra.esserver.server import CONTROL_CALLS, CONTROL_PREFIX

ROOT = Path(__file__).resolve().parents[3]


class RemoteFaults:
    """The server's fault calls (`fail_next`, `delay_next`, ...), each one HTTP request."""

    def __init__(self, url: str) -> None:
        self._url = url

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in CONTROL_CALLS:
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return _post(f"{self._url}{CONTROL_PREFIX}faults/{name}", {"args": list(args), "kwargs": kwargs})["result"]

        return call


def _post(url: str, body: Any) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # loopback only
        return json.loads(response.read())


class EsServerProcess:
    """`python -m tests.infra.esserver` on a free port, started and stopped by the test session."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 30) -> "EsServerProcess":
        """Start the process and wait for the URL it prints."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.infra.esserver", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        line: list[str] = []
        stdout = self.process.stdout
        assert stdout is not None  # piped above
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0].startswith("http://"):
            self.stop()
            raise RuntimeError(f"the protocol server did not start within {timeout}s: {line!r}")
        self.url = line[0].strip()
        return self

    @property
    def faults(self) -> RemoteFaults:
        """Fault injection controls, over HTTP."""
        return RemoteFaults(self.url)

    @property
    def request_log(self) -> list[tuple[str, str]]:
        """(method, path) of every request the server saw, in order."""
        with urllib.request.urlopen(f"{self.url}{CONTROL_PREFIX}request_log", timeout=30) as response:
            return [(method, path) for method, path in json.loads(response.read())["log"]]

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None
