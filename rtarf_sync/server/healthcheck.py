"""The container's health check: GET /healthz where the server really listens, exit 0 on 200.

    python -m rtarf_sync.server.healthcheck

The address is gunicorn's own `-b`/`--bind` when the container's command gives
one, else the bind `load_settings` derives (RTARF_BIND, PORT, the default), as
gunicorn.conf.py does. A wildcard host is asked on loopback; `unix:` binds on the socket.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
from pathlib import Path
from typing import Mapping, Sequence

TIMEOUT_SECONDS = 4.0  # under the Dockerfile's --timeout=5s


def command_line_bind(argv: Sequence[str]) -> str | None:
    """The first `-b ADDRESS`, `-bADDRESS`, `--bind ADDRESS` or `--bind=ADDRESS` of a gunicorn command line."""
    for number, arg in enumerate(argv):
        if arg in ("-b", "--bind") and number + 1 < len(argv):
            return argv[number + 1]
        if arg.startswith("--bind="):
            return arg.split("=", 1)[1]
        if arg.startswith("-b") and len(arg) > 2 and not arg.startswith("--"):
            return arg[2:]
    return None


def server_bind(environ: Mapping[str, str], server_argv: Sequence[str]) -> str:
    """Where the server listens: its command line's bind, else the configured one."""
    from config import load_settings

    return command_line_bind(server_argv) or load_settings(environ).bind


def _server_argv() -> list[str]:
    # In the container gunicorn is PID 1 (exec-form CMD); elsewhere there is nothing to read.
    try:
        raw = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return []
    argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    return argv if any("gunicorn" in part for part in argv[:3]) else []


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def connection_for(bind: str, timeout: float = TIMEOUT_SECONDS) -> http.client.HTTPConnection:
    """A connection to `bind`; wildcard hosts (0.0.0.0, ::, none) become the matching loopback."""
    if bind.startswith("unix:"):
        return _UnixConnection(bind[len("unix:") :], timeout)
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def healthz_status(bind: str, timeout: float = TIMEOUT_SECONDS) -> int:
    """The status of GET /healthz at `bind`."""
    connection = connection_for(bind, timeout)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status
    finally:
        connection.close()


def main() -> int:
    """Exit 0 when /healthz answers 200 where the server listens, else 1 with the reason on stderr."""
    try:
        bind = server_bind(os.environ, _server_argv())
        status = healthz_status(bind)
    except Exception as error:  # noqa: BLE001 - any failure is "unhealthy"; the reason goes to docker inspect
        print(f"unhealthy: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: GET /healthz at {bind} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
