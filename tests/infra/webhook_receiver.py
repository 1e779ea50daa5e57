"""A real HTTP webhook receiver for the tests: verifies every message with standardwebhooks.

receiver = WebhookReceiver(SECRET).start()
receiver.respond = fail_first(3)        # or gone(), redirect_to(url), hang(event)
...
receiver.accepted()                     # verified messages answered 2xx, oldest first
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.infra.harness.process import free_port

# An answer: status code and extra headers; may block (a hanging receiver).
Responder = Callable[["Received"], "tuple[int, dict[str, str]]"]


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool = False
    payload: dict[str, Any] | None = None
    tampered_rejected: bool = False
    status: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def always(status: int = 200) -> Responder:
    """Answer every request with `status`."""
    return lambda received: (status, {})


def fail_first(times: int, status: int = 500) -> Responder:
    """Fail the first `times` requests with `status`, then accept."""
    seen = {"n": 0}
    lock = threading.Lock()

    def respond(received: Received) -> tuple[int, dict[str, str]]:
        with lock:
            seen["n"] += 1
            return (status, {}) if seen["n"] <= times else (200, {})

    return respond


def redirect_to(location: str) -> Responder:
    """Answer 307 pointing elsewhere."""
    return lambda received: (307, {"Location": location})


def hang(release: threading.Event) -> Responder:
    """Hold every request until `release` is set, then accept."""

    def respond(received: Received) -> tuple[int, dict[str, str]]:
        release.wait(60)
        return 200, {}

    return respond


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up on a hanging answer is what some tests want


class WebhookReceiver:
    """A threaded HTTP server on 127.0.0.1 that records and verifies what it receives."""

    def __init__(self, secret: str, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.respond: Responder = always(200)
        self.requests: list[Received] = []
        self.arrived = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook", userinfo: str = "") -> str:
        """A URL of this receiver."""
        return f"http://{userinfo}127.0.0.1:{self.port}{path}"

    def start(self) -> WebhookReceiver:
        """Listen in a background thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http.server API
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received = receiver.check(self.path, dict(self.headers.items()), body)
                status, headers = receiver.respond(received)
                received.status = status
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"no")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def check(self, path: str, headers: dict[str, str], body: bytes) -> Received:
        """Verify the signature as any receiver would, and that an altered body is rejected."""
        received = Received(path, {k.lower(): v for k, v in headers.items()}, body)
        hook = Webhook(self.secret)
        try:
            received.payload = hook.verify(body, received.headers)
            received.verified = True
        except WebhookVerificationError:
            received.verified = False
        try:
            hook.verify(body.replace(b'"data"', b'"data" '), received.headers)
        except WebhookVerificationError:
            received.tampered_rejected = True
        with self.arrived:
            self.requests.append(received)
            self.arrived.notify_all()
        return received

    def accepted(self) -> list[Received]:
        """Requests answered 2xx, oldest first."""
        with self.arrived:
            return [r for r in self.requests if 200 <= r.status < 300]

    def ids(self, accepted_only: bool = True) -> list[str]:
        """webhook-id of each (accepted) request, in arrival order."""
        with self.arrived:
            chosen = [r for r in self.requests if not accepted_only or 200 <= r.status < 300]
        return [r.headers["webhook-id"] for r in chosen]

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def body_of(received: Received) -> dict[str, Any]:
    """The JSON body of a request."""
    return json.loads(received.body)
