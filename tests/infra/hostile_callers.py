"""Raw-socket callers that misbehave the way real ones do: late bodies, bytes after an answer, slow heads, idle.

Shared by tests/e2e/test_hostile_callers.py and benchmarks/callers.py. Every wait has a
deadline; every connection goes to 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import time

HOST = "127.0.0.1"


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the service on 127.0.0.1."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(method: str, path: str, body_length: int | None = None, token: str | None = None, extra: str = "") -> bytes:
    """An HTTP/1.1 request head (keep-alive), with a JSON Content-Type when a body follows."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
    if body_length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {body_length}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, bytes]:
    """Status and body of one response (Content-Length framed); raises TimeoutError when none comes."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            status = int(data.split(b" ", 2)[1])
            if status == 100:  # an interim answer: the real one follows
                data = data[end + 4 :]
                continue
            length = _content_length(data[:end])
            if len(data) >= end + 4 + length:
                return status, data[end + 4 : end + 4 + length]
        if time.monotonic() > deadline:
            raise TimeoutError("no complete response")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} bytes")
        data += chunk


def _content_length(head_bytes: bytes) -> int:
    for line in head_bytes.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def answered_before(sock: socket.socket, seconds: float) -> bool:
    """True when the server sent something within `seconds` (it should not, before the body came)."""
    sock.settimeout(seconds)
    try:
        data = sock.recv(65536, socket.MSG_PEEK)
    except TimeoutError:
        return False
    return bool(data) and not data.startswith(b"HTTP/1.1 100")


def late_body(
    port: int, method: str, path: str, body: bytes = b"{}", token: str | None = None, pause: float = 0.3
) -> tuple[socket.socket, int]:
    """Send a head, wait `pause` (an answer may come: the old worker gave one), then the body; keep it open."""
    sock = connect(port)
    sock.sendall(head(method, path, len(body), token))
    answered = answered_before(sock, pause)
    sock.sendall(body)
    status, _ = read_response(sock)
    if answered:
        sock.settimeout(0.2)  # the old worker: the body now sits on the connection, unread
    return sock, status


def slow_head(port: int, path: str = "/scheduler/status") -> tuple[socket.socket, bytes]:
    """A connection ready to drip `path`'s request head one byte at a time (slowloris); returns it and the bytes."""
    return connect(port), head("GET", path)


def drip(connections: list[tuple[socket.socket, bytes]], seconds: float, interval: float = 0.5) -> int:
    """Send one more byte on every connection each `interval`, for `seconds`; return the bytes sent."""
    sent, deadline = 0, time.monotonic() + seconds
    offsets = [0] * len(connections)
    while time.monotonic() < deadline:
        for number, (sock, data) in enumerate(connections):
            if offsets[number] < len(data) - 1:  # never the last byte: the request stays incomplete
                try:
                    sock.send(data[offsets[number] : offsets[number] + 1])
                    offsets[number] += 1
                    sent += 1
                except OSError:
                    pass  # the server dropped it: what a server should do at its deadline
        time.sleep(interval)
    return sent
