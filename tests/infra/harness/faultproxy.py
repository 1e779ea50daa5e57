"""An HTTP(S) proxy in front of a real engine that injects faults on request and records every request.

    proxy = FaultProxy(opensearch.url).start()          # or FaultProxy(url, tls=certs)
    proxy.add(Fault("status", status=429, path="_search", nth=2))   # the 2nd search from now answers 429
    proxy.add(Fault("reset", path="_search"))           # the next search: half an answer, then a TCP reset
    proxy.add(Fault("stall", seconds=5, path="_search"))  # hold the next search past the client's timeout
    proxy.add(Fault("delay", seconds=5, path="_search"))  # hold it, then forward it: a slow engine

Faults apply to requests whose path ends with `path` (alternatives separated
by `|`), counted from when they are added: the `nth` such request and the `times - 1` after it. Error answers
carry the bodies the real engine (OpenSearch) sends for that status, or, for
502 and 504 (which only a gateway in front of an engine answers), a gateway's
HTML page. With `tls` the proxy terminates HTTPS with the given certificate;
`requests` keeps (method, path, headers, target, body) of every request, so a test can see
which Authorization header arrived. A `gate` (a callable given each request) stands for a
gateway that checks the caller, as Amazon's does SigV4: the reason it returns is answered 403.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
    "host",
}

# OpenSearch 2.x error answers, in the shape the node sends (type names from its exception classes).
ENGINE_ERRORS: dict[int, dict[str, Any]] = {
    429: {
        "error": {
            "root_cause": [
                {
                    "type": "rejected_execution_exception",
                    "reason": "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
                    "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, "
                    "max_coordinating_and_primary_bytes=0]",
                }
            ],
            "type": "rejected_execution_exception",
            "reason": "rejected execution of coordinating operation",
        },
        "status": 429,
    },
    503: {
        "error": {
            "root_cause": [],
            "type": "search_phase_execution_exception",
            "reason": "all shards failed",
            "phase": "query",
            "grouped": True,
            "failed_shards": [],
        },
        "status": 503,
    },
}
GATEWAY_PAGES = {
    502: "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    "<hr><center>nginx</center></body></html>\n",
    504: "<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 Gateway Time-out</h1>"
    "</center><hr><center>nginx</center></body></html>\n",
}


@dataclass
class Fault:
    """One fault: `kind` is status, reset, stall or delay; applied to the nth matching request and `times` in all."""

    kind: str
    status: int = 503
    seconds: float = 0.0
    path: str = ""
    nth: int = 1
    times: int = 1
    seen: int = 0
    applied: int = 0

    def take(self, path: str) -> bool:
        """Count a request; True when this fault applies to it."""
        if not path.endswith(tuple(self.path.split("|"))) or self.applied >= self.times:
            return False
        self.seen += 1
        if self.seen < self.nth:
            return False
        self.applied += 1
        return True


@dataclass(frozen=True)
class Seen:
    """One request as the proxy received it."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    fault: str | None
    target: str = ""  # the path with its query string, as sent
    body: bytes = b""
    refused: str | None = None  # why the gate refused it


Gate = Callable[[Seen], "str | None"]


class FaultProxy:
    """Forwards to `upstream`; injects the faults added with `add`."""

    def __init__(self, upstream: str, tls: ssl.SSLContext | None = None, gate: Gate | None = None) -> None:
        self.upstream = urlsplit(upstream)
        self.tls = tls
        self.gate = gate
        self.requests: list[Seen] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where clients connect."""
        assert self._server is not None
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "FaultProxy":
        """Listen on a free loopback port and serve in a thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.proxy = self
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled requests are released."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def add(self, fault: Fault) -> Fault:
        """Queue a fault; returns it so a test can read `applied`."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Forget pending faults and recorded requests."""
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    def decide(self, seen: Seen) -> Fault | Seen | None:
        """Record a request; return the fault that applies to it, or the request itself if the gate refused it."""
        refused = self.gate(seen) if self.gate is not None else None
        with self._lock:
            if refused is not None:
                seen = Seen(seen.method, seen.path, seen.headers, None, seen.target, seen.body, refused)
                self.requests.append(seen)
                return seen
            chosen = None
            for fault in self._faults:
                if fault.take(seen.path):
                    chosen = fault
                    break
            self.requests.append(
                Seen(seen.method, seen.path, seen.headers, chosen.kind if chosen else None, seen.target, seen.body)
            )
            return chosen


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up or failed the TLS handshake is part of the tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET  # noqa: N815 - the names http.server dispatches on

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        proxy = self.server.proxy
        body = self._body()
        path = self.path.partition("?")[0]
        headers = {k.lower(): v for k, v in self.headers.items()}
        fault = proxy.decide(Seen(self.command, path, headers, None, self.path, body))
        if isinstance(fault, Seen):
            self._refuse(fault.refused or "refused")
            return
        if fault is not None and fault.kind == "delay":
            proxy.stopping.wait(fault.seconds)  # then forwarded as usual: a slow engine, not a dead one
        if fault is not None and fault.kind == "stall":
            proxy.stopping.wait(fault.seconds)
            self._reset()
            return
        if fault is not None and fault.kind == "status":
            self._error(fault.status)
            return
        status, headers, data = self._forward(body)
        if fault is not None and fault.kind == "reset":
            self._send(status, headers, data, cut=True)
            return
        self._send(status, headers, data)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = self.server.proxy.upstream
        connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return response.status, kept, data
        finally:
            connection.close()

    def _refuse(self, reason: str) -> None:
        """The answer Amazon's gateway gives a request whose signature it does not accept."""
        self._send(403, [("Content-Type", "application/json")], json.dumps({"message": reason}).encode())

    def _error(self, status: int) -> None:
        if status in GATEWAY_PAGES:
            self._send(status, [("Content-Type", "text/html")], GATEWAY_PAGES[status].encode())
            return
        body = ENGINE_ERRORS.get(status) or {
            "error": {"root_cause": [], "type": "exception", "reason": f"injected {status}"},
            "status": status,
        }
        self._send(status, [("Content-Type", "application/json; charset=UTF-8")], json.dumps(body).encode())

    def _send(self, status: int, headers: list[tuple[str, str]], data: bytes, cut: bool = False) -> None:
        try:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if cut:
                self.wfile.write(data[: max(1, len(data) // 2)])
                self.wfile.flush()
                self._reset()
                return
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _reset(self) -> None:
        """Abort the connection with a TCP reset (SO_LINGER 0), as a crashed peer or middlebox does."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
