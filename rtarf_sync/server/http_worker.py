"""gunicorn's gthread worker, except that no thread ever waits for a client to send (docs/operations-probes.md).

The stock worker hands a connection to a thread as soon as it is readable and the
thread then blocks, without a deadline, until a whole request has arrived: four
slow or idle-after-a-late-body clients hold all four threads. Here the worker's
own event loop gathers each request (head and body, non-blocking) and hands it
to a thread only once it is complete; a request that is not complete within
REQUEST_READ_SECONDS is dropped. `/healthz` and `/livez` get their own threads,
so a queue of slow requests never delays them.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import selectors
import threading
import time
from collections import deque
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

REQUEST_READ_SECONDS = 10.0  # a request's head and body must arrive within this, from its first byte or accept
SOCKET_TIMEOUT_SECONDS = 10.0  # a thread's reads and writes on a connection (bodies gathered in threads, answers)
HEAD_LIMIT = 64 * 1024  # gunicorn refuses larger heads anyway (limit_request_line and fields)
BODY_LIMIT = 1024 * 1024  # bodies up to this are gathered before the app runs; larger ones are the app's to refuse
PROBE_PATHS = frozenset({b"/healthz", b"/livez"})
PROBE_THREADS = 2
CHUNK = 64 * 1024
ACCEPT_BATCH = 128  # connections accepted per wake-up: a burst leaves the backlog fast, probes wait less

WAIT, READY, READY_CLOSE = "wait", "ready", "ready-close"
_EXPECT_CONTINUE = b"\r\nexpect:100-continue\r\n"


def request_state(buffer: bytes) -> str:
    """WAIT while the first request in `buffer` is incomplete; READY_CLOSE when its connection must close after it."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return WAIT if len(buffer) <= HEAD_LIMIT else READY_CLOSE  # gunicorn answers 400 to the oversized head
    length, chunked = 0, False
    for line in buffer[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return READY_CLOSE  # gunicorn answers 400
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    body = buffer[end + 4 :]
    if chunked:
        # The end of a chunked body is only known to the parser; a body that looks complete goes to a
        # thread, whose reads are bounded by SOCKET_TIMEOUT_SECONDS, and the connection closes after it.
        return READY_CLOSE if b"0\r\n\r\n" in body or len(body) > BODY_LIMIT else WAIT
    if length > BODY_LIMIT:
        return READY_CLOSE  # the app refuses it (413) without reading; the rest must not be parsed as a request
    if len(body) < length:
        return WAIT
    return READY if len(body) == length else READY_CLOSE  # bytes past the request: not kept for later


def expects_continue(buffer: bytes) -> bool:
    """True when the complete head in `buffer` asks `Expect: 100-continue` (curl does for large bodies)."""
    end = buffer.find(b"\r\n\r\n")
    return end >= 0 and _EXPECT_CONTINUE in buffer[: end + 2].lower().replace(b" ", b"")


def without_expect(buffer: bytes) -> bytes:
    """`buffer` without its Expect header, once the worker itself has sent `100 Continue`."""
    end = buffer.find(b"\r\n\r\n")
    lines = buffer[:end].split(b"\r\n")
    kept = [line for line in lines if not line.lower().startswith(b"expect:")]
    return b"\r\n".join(kept) + buffer[end:]


def is_probe(buffer: bytes) -> bool:
    """True for a GET or HEAD of /healthz or /livez, which run on the probe threads."""
    line = buffer[: buffer.find(b"\r\n")].split(b" ")
    return len(line) == 3 and line[0] in (b"GET", b"HEAD") and line[1].split(b"?")[0] in PROBE_PATHS


class GuardedThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """gthread with requests gathered by the event loop, a read deadline and a lane for the liveness probes."""

    def init_process(self) -> None:
        """Add the probe threads and the queue of connections still sending."""
        self.probe_pool = futures.ThreadPoolExecutor(max_workers=PROBE_THREADS)
        self._reading: deque[tuple[float, TConn]] = deque()  # (deadline, conn), deadlines in order
        self._ready: deque[TConn] = deque()  # complete requests waiting for a thread
        self._slots = threading.Lock()
        self._in_flight = 0
        # Never more connections than descriptors: past the limit accept() fails and the loop spins.
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and self.cfg.worker_connections > soft - 64:
            self.worker_connections = max(self.cfg.threads + 1, soft - 64)
            self.max_keepalived = self.worker_connections - self.cfg.threads
        super().init_process()

    def accept(self, server: Any, listener: Any) -> None:
        """Accept every waiting connection (gthread takes one per wake-up); each must send its request in time."""
        if self.cfg.is_ssl:
            super().accept(server, listener)
            return
        for _ in range(ACCEPT_BATCH):
            if self.nr_conns >= self.worker_connections:
                return
            try:
                sock, client = listener.accept()
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK, errno.EMFILE, errno.ENFILE):
                    raise
                return  # nothing waiting, or out of descriptors: the connection waits in the backlog
            conn = TConn(self.cfg, sock, client, server)
            self.nr_conns += 1
            with self._lock:
                self._start_reading(conn)
                self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))

    def _start_reading(self, conn: TConn) -> None:
        conn.rtarf_buffer = b""
        conn.rtarf_deadline = time.monotonic() + REQUEST_READ_SECONDS
        self._reading.append((conn.rtarf_deadline, conn))

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        """Read what arrived without blocking; hand the request to a thread once it is complete."""
        if self.cfg.is_ssl:  # the bytes are TLS records, readable only after the handshake in a thread
            super().on_client_socket_readable(conn, client)
            return
        with self._lock:
            if conn.initialized and getattr(conn, "rtarf_deadline", None) is None:
                try:
                    self._keep.remove(conn)  # a kept-alive connection starts its next request
                except ValueError:
                    return  # closed by murder_keepalived meanwhile
                self._start_reading(conn)
        try:
            data = conn.sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        conn.rtarf_buffer += data
        state = request_state(conn.rtarf_buffer)
        if state == WAIT:
            self._send_continue(conn)
            return
        with self._lock:
            self.poller.unregister(client)
        self._dispatch(conn, close_after=state == READY_CLOSE)

    def _send_continue(self, conn: TConn) -> None:
        # The client waits for it before sending the body that this loop waits for.
        if getattr(conn, "rtarf_continued", False) or not expects_continue(conn.rtarf_buffer):
            return
        conn.rtarf_continued = True
        with contextlib.suppress(OSError):  # the client is gone; the next read says so
            conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")  # 25 bytes into an empty send buffer

    def _dispatch(self, conn: TConn, close_after: bool) -> None:
        buffer, conn.rtarf_buffer, conn.rtarf_deadline = conn.rtarf_buffer, b"", None
        if getattr(conn, "rtarf_continued", False):
            buffer, conn.rtarf_continued = without_expect(buffer), False  # not a second 100 from gunicorn
        conn.init()
        conn.sock.settimeout(SOCKET_TIMEOUT_SECONDS)
        conn.parser.unreader.unread(buffer)
        conn.rtarf_close_after = close_after
        if is_probe(buffer):
            self._wrap_future(self.probe_pool.submit(self.handle, conn), conn)
            return
        with self._slots:
            self._ready.append(conn)
        self._submit_ready()

    def _submit_ready(self) -> None:
        # At most `threads` requests in the pool, the rest wait here: gthread's loop scans every future
        # in flight on each wake-up, which under a burst of a thousand made the probes wait.
        while True:
            with self._slots:
                if not self._ready or self._in_flight >= self.cfg.threads:
                    return
                conn = self._ready.popleft()
                self._in_flight += 1
            try:
                future = self.tpool.submit(self.handle, conn)
            except RuntimeError:  # shutting down: the request was never started
                with self._slots:
                    self._in_flight -= 1
                self.nr_conns -= 1
                conn.close()
                continue
            future.add_done_callback(self._slot_freed)
            self._wrap_future(future, conn)

    def _slot_freed(self, _: Any) -> None:
        with self._slots:
            self._in_flight -= 1
        self._submit_ready()

    def _drop(self, conn: TConn) -> None:
        with self._lock:
            with contextlib.suppress(KeyError, ValueError, OSError):  # already gone
                self.poller.unregister(conn.sock)
            conn.rtarf_deadline = None
        self.nr_conns -= 1
        conn.close()

    def murder_keepalived(self) -> None:
        """Close idle kept-alive connections (gthread) and connections whose request is late."""
        super().murder_keepalived()
        now = time.monotonic()
        while self._reading and self._reading[0][0] <= now:
            deadline, conn = self._reading.popleft()
            if getattr(conn, "rtarf_deadline", None) == deadline:
                self._drop(conn)

    def handle_request(self, req: Any, conn: TConn) -> bool:
        """Answer `Connection: close` where the connection cannot be reused safely."""
        if getattr(conn, "rtarf_close_after", False):
            req.must_close = True
        return bool(super().handle_request(req, conn))

    def run(self) -> None:
        """Run gthread's loop, then stop the probe threads too."""
        try:
            super().run()
        finally:
            self.probe_pool.shutdown(wait=False)
