"""A forwarding HTTP proxy that records every request it carried, as a corporate proxy would.

    proxy = ForwardProxy(credentials=("squid", "password")).start()
    ... RTARF_ES_PROXY=proxy.url_with(credentials) ...
    proxy.carried   # [("GET", "http://127.0.0.1:9200/_search"), ("CONNECT", "127.0.0.1:9243"), ...]

Plain HTTP arrives as absolute-URI requests and is forwarded; HTTPS arrives as CONNECT
and is tunnelled byte for byte. With `credentials`, a request without the right
Proxy-Authorization is answered 407 and recorded in `refused`.
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, urlsplit

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
}


class ForwardProxy:
    """An HTTP proxy on a free loopback port."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.carried: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, credentials: tuple[str, str] | None = None) -> str:
        """The proxy's URL, with `credentials` (percent-encoded) as its user info when given."""
        assert self._server is not None
        userinfo = f"{quote(credentials[0], safe='')}:{quote(credentials[1], safe='')}@" if credentials else ""
        return f"http://{userinfo}127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "ForwardProxy":
        """Listen and serve in a thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.proxy = self
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def admit(self, method: str, target: str, authorization: str | None) -> bool:
        """Record the request as carried, or as refused when its Proxy-Authorization is not the expected one."""
        expected = None
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
        with self._lock:
            if expected is not None and authorization != expected:
                self.refused.append((method, target))
                return False
            self.carried.append((method, target))
            return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: ForwardProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-tunnel is no test failure


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _admitted(self) -> bool:
        if self.server.proxy.admit(self.command, self.path, self.headers.get("Proxy-Authorization")):
            return True
        page = b"<html><body><h1>407 Proxy Authentication Required</h1></body></html>\n"  # as squid answers
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="test proxy"')
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)
        return False

    def do_CONNECT(self) -> None:
        if not self._admitted():
            return
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=60)
        self.send_response(200, "Connection established")
        self.end_headers()
        self._tunnel(upstream)
        self.close_connection = True

    def _tunnel(self, upstream: socket.socket) -> None:
        sockets = [self.connection, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 60)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is self.connection else self.connection).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()

    def do_GET(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self._admitted():
            return
        target = urlsplit(self.path)
        connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port or 80, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            path = target.path + (f"?{target.query}" if target.query else "")
            connection.request(self.command, path or "/", body=body or None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            connection.close()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET  # noqa: N815 - the names http.server dispatches on
