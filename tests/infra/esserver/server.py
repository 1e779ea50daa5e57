"""The HTTP side: a threading HTTP/1.1 server, product headers, faults.

Every answer carries `X-Elastic-Product: Elasticsearch`, which the 8.x client
requires before it trusts a server, and the compatibility media type when the
client asked for it.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from tests.infra.esserver import routes
from tests.infra.esserver.api import Backend, Request
from tests.infra.esserver.errors import EsError
from tests.infra.esserver.faults import Faults, injected_error
from tests.infra.esserver.search import partial_failure
from tests.infra.esserver.store import Store

CONTROL_PREFIX = "/_rtarf_test/"
# The fault calls a test may make over HTTP when the server runs in a process of its own.
CONTROL_CALLS = (
    "fail_next",
    "delay_next",
    "drop_next",
    "shard_failure_next",
    "timed_out_next",
    "expire_pits",
    "expire_pits_at_search",
    "only_paths",
    "reset",
)
COMPAT_JSON = "application/vnd.elasticsearch+json;compatible-with=8"
PLAIN_JSON = "application/json"


class App:
    """Everything one server instance knows: data, contexts, faults, log."""

    def __init__(self, refresh_interval: float | None) -> None:
        self.backend = Backend(Store(refresh_interval))
        self.faults = Faults(self.backend.contexts.expire_pits)
        self.request_log: list[tuple[str, str]] = []
        self._log_lock = threading.Lock()

    def log(self, method: str, path: str) -> None:
        """Record one request."""
        with self._log_lock:
            self.request_log.append((method, path))

    def reset(self) -> None:
        """Delete all indices, PITs, scrolls and faults, and clear the log."""
        with self.backend.store.lock:
            self.backend.store.reset()
        self.backend.contexts.reset()
        self.faults.reset()
        with self._log_lock:
            self.request_log.clear()

    def answer(self, request: Request, path: str) -> tuple[int, Any] | None:
        """Return (status, body) for a request, or None when its connection must be dropped."""
        endpoint: routes.Endpoint | None = None
        parts: dict[str, Any] = {}
        routing_error: EsError | None = None
        try:
            endpoint, parts = routes.find(request.method, path, request.target)
        except EsError as exc:
            routing_error = exc
        decision = self.faults.take(path, endpoint in routes.SEARCH_ENDPOINTS)
        if decision.delay:
            time.sleep(decision.delay)
        if decision.drop:
            return None
        if decision.status is not None:
            return decision.status, injected_error(decision.status).body()
        if routing_error is not None:
            return routing_error.status, routing_error.body()
        if decision.shard_failure:
            return 200, partial_failure(_quiet_json(request), "injected shard failure")
        assert endpoint is not None  # found, or routing_error was answered above
        if decision.expire:
            self.faults.expire_pits()
        status, body = _call(endpoint, self.backend, request, parts)
        if decision.timed_out and status == 200 and isinstance(body, dict):
            # What a search that hit its timeout answers: success, the flag, and only the hits found so far.
            hits = body.get("hits", {}).get("hits", [])
            body = {**body, "timed_out": True, "hits": {**body["hits"], "hits": hits[: len(hits) // 2]}}
        return status, body


def control(app: App, method: str, path: str, payload: bytes) -> tuple[int, Any]:
    """Answer the control channel: POST /_rtarf_test/faults/<call> {"args": [...]}, GET /_rtarf_test/request_log."""
    name = path[len(CONTROL_PREFIX) :]
    if method == "GET" and name == "request_log":
        return 200, {"log": [list(entry) for entry in list(app.request_log)]}
    call = name.removeprefix("faults/")
    if method == "POST" and name.startswith("faults/") and call in CONTROL_CALLS:
        body = json.loads(payload or b"{}")
        return 200, {"result": getattr(app.faults, call)(*body.get("args", []), **body.get("kwargs", {}))}
    return 404, {"error": f"no control call {method} {path}"}


def _quiet_json(request: Request) -> Any:
    try:
        return request.json()
    except EsError:
        return None


def _call(endpoint: routes.Endpoint, backend: Backend, request: Request, parts: dict[str, Any]) -> tuple[int, Any]:
    try:
        return endpoint(backend, request, **parts)
    except EsError as exc:
        return exc.status, exc.body()
    except Exception as exc:  # noqa: BLE001 - a bug here must still answer like a server would
        traceback.print_exc(file=sys.stderr)
        return 500, EsError(500, "exception", f"{type(exc).__name__}: {exc}").body()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    # http.server dispatches on do_<METHOD>; every method goes through routing.
    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet; `request_log` is the record."""

    def _read_payload(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            payload = b"".join(chunks)
        else:
            payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            payload = gzip.decompress(payload)
        return payload

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        app = self.server.app
        if path.startswith(CONTROL_PREFIX):
            # The test's own channel: never logged, never faulted.
            self._send(*control(app, self.command, path, self._read_payload()))
            return
        app.log(self.command, path)
        request = Request(self.command, self.path, dict(parse_qsl(query, keep_blank_values=True)), self._read_payload())
        answer = app.answer(request, path)
        if answer is None:
            self._drop()
        else:
            self._send(*answer)

    def _drop(self) -> None:
        # Close without a byte of response: the client sees a connection error.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, status: int, body: Any) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        compatible = "compatible-with" in self.headers.get("Accept", "")
        try:
            self.send_response(status)
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Type", COMPAT_JSON if compatible else PLAIN_JSON)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout test): nothing left to tell it.
            self.close_connection = True


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.clients: set[socket.socket] = set()
        self.clients_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.clients_lock:
            self.clients.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.clients_lock:
            self.clients.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_clients(self) -> None:
        """Cut every open keep-alive connection, so nothing is served after stop."""
        with self.clients_lock:
            clients = list(self.clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)


class EsProtocolServer:
    """An in-process HTTP server that speaks enough Elasticsearch 8 for the sync service."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, refresh_interval: float | None = None) -> None:
        self._app = App(refresh_interval)
        self._http = _HttpServer((host, port), self._app)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:54321."""
        host, port = self._http.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    @property
    def faults(self) -> Faults:
        """Fault injection controls."""
        return self._app.faults

    @property
    def request_log(self) -> list[tuple[str, str]]:
        """(method, path without query string) of every request seen, in order."""
        return self._app.request_log

    def start(self) -> EsProtocolServer:
        """Serve in a background daemon thread; return self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, name="esserver", daemon=True
            )
            self._thread.start()
        return self

    def reset(self) -> None:
        """Delete all indices, PITs, scrolls and faults, and clear the request log."""
        self._app.reset()

    def stop(self) -> None:
        """Stop serving and close every connection."""
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join()
            self._thread = None
        self._http.server_close()
        self._http.close_clients()

    def __enter__(self) -> EsProtocolServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
