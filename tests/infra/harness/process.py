"""Child processes that die with their parent, free ports, log tails."""

from __future__ import annotations

import ctypes
import os
import pwd
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

_PR_SET_PDEATHSIG = 1


class EngineStartError(RuntimeError):
    """An engine could not be installed or started; the message says why."""


def _to_stderr(line: str) -> None:
    print(line, file=sys.__stderr__, flush=True)


_printer: Callable[[str], None] = _to_stderr


def set_printer(printer: Callable[[str], None]) -> None:
    """Send progress lines elsewhere (the test run sends them past its output capture)."""
    global _printer
    _printer = printer


def say(message: str) -> None:
    """Print a progress line a person can follow."""
    _printer(f"[harness] {message}")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port_in(low: int, high: int) -> int:
    """Return a free TCP port on 127.0.0.1 between `low` and `high` inclusive.

    The search starts at a random port of the range: test runs starting side by side
    would otherwise all pick the lowest free port, and collide when their nodes bind it.
    """
    first = random.randint(low, high)
    for port in list(range(first, high + 1)) + list(range(low, first)):
        if port_answers(port):
            continue  # a dual-stack listener may not block an IPv4 bind, but it answers
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise EngineStartError(f"no free port between {low} and {high}")


def log_tail(path: Path, lines: int = 40) -> str:
    """Return the last lines of a log file, or a note that it is missing."""
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _child_setup(user: str | None) -> Callable[[], None]:
    """Build a pre-exec hook: drop to `user`, then die when the parent dies."""
    account = pwd.getpwnam(user) if user else None

    def setup() -> None:
        os.setpgrp()
        if account is not None:
            os.setgid(account.pw_gid)
            os.initgroups(account.pw_name, account.pw_gid)
            os.setuid(account.pw_uid)
        # Set after setuid: the kernel clears the death signal on a change of user.
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return setup


def spawn(
    argv: Sequence[str],
    log: Path,
    *,
    user: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    keep_stdin: bool = False,
) -> subprocess.Popen[bytes]:
    """Start `argv` with output to `log`; it is terminated if this process dies.

    With `keep_stdin` the child gets a pipe that stays open until it is stopped
    (the OpenSearch runner shuts down when its standard input ends).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    stdin = subprocess.PIPE if keep_stdin else subprocess.DEVNULL
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=stdin,
            env=env,
            cwd=cwd,
            preexec_fn=_child_setup(user),
        )


def run_as(argv: Sequence[str], *, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short command (optionally as another user) and capture its output."""
    return subprocess.run(
        list(argv), capture_output=True, text=True, preexec_fn=_child_setup(user), stdin=subprocess.DEVNULL
    )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop a child politely, then firmly."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
