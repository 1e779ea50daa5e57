"""One deadline per webhook attempt: a receiver that drips its answer cannot hold the delivery thread.

A real local receiver answers its headers and then one byte every half
second (or drips the headers themselves); with RTARF_WEBHOOK_TIMEOUT_SECONDS
at 1 the attempt must end failed long before the drip would end. The join
timeouts are hang guards, not speed measurements.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa

from config import Settings
from rtarf_sync.notify.delivery import FAILED, Attempt, Sender
from rtarf_sync.notify.notifier import Notifier
from rtarf_sync.engine.runs.sync import SyncService
from tests.infra.support import wait_for

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DRIP_BYTES = 120  # one every 0.5 s: a full minute of dripping
GUARD_SECONDS = 20.0  # far above the 1 s deadline, far below the drip


class DripReceiver:
    """A TCP server that reads a request, then sends its answer one byte per half second."""

    def __init__(self, drip_headers: bool) -> None:
        self.drip_headers = drip_headers
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        self.stopped = threading.Event()
        self.dripping = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        """Where to send webhooks, with a path that must never be shown."""
        return f"http://127.0.0.1:{self.port}/hooks/T000/B000/drip-secret-path"

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)  # the request (small: headers and a short JSON body)
            self.requests += 1
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % DRIP_BYTES
            answer = head + b"x" * DRIP_BYTES
            if not self.drip_headers:
                connection.sendall(head)
                answer = answer[len(head) :]
            self.dripping.set()
            for byte in answer:
                if self.stopped.wait(0.5):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return  # the sender gave up: what the test wants

    def close(self) -> None:
        """Stop accepting and dripping."""
        self.stopped.set()
        self.listener.close()


@pytest.fixture(params=["body", "headers"])
def receiver(request: pytest.FixtureRequest) -> Iterator[DripReceiver]:
    """A receiver dripping its body (after prompt headers) or its headers."""
    server = DripReceiver(drip_headers=request.param == "headers")
    yield server
    server.close()


def _attempt_in_thread(sender: Sender, url: str) -> list[Attempt]:
    outcome: list[Attempt] = []
    worker = threading.Thread(
        target=lambda: outcome.append(sender.send(url, "msg_drip", '{"a":1}', SECRET)), daemon=True
    )
    worker.start()
    worker.join(GUARD_SECONDS)
    assert not worker.is_alive(), "the attempt is still held by the dripping receiver"
    return outcome


def test_a_dripping_receiver_is_cut_at_the_deadline(receiver: DripReceiver) -> None:
    (attempt,) = _attempt_in_thread(Sender(timeout=1.0), receiver.url)
    assert receiver.dripping.is_set()  # the receiver did start answering
    assert attempt.outcome == FAILED
    assert attempt.error == "timed out after 1s"
    assert "drip-secret-path" not in repr(attempt)


def test_a_delivery_to_a_dripping_receiver_is_recorded_failed_and_retried(
    receiver: DripReceiver, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    settings: Settings = make_settings(
        RTARF_WEBHOOK_URLS=receiver.url,
        RTARF_WEBHOOK_SECRET=SECRET,
        RTARF_WEBHOOK_TIMEOUT_SECONDS="1",
        RTARF_WEBHOOK_EVENTS="verify.drift",
        RTARF_WEBHOOK_RETRY_SECONDS="3600",
    )
    service = SyncService(settings)
    service.ensure_tables()
    notifier = Notifier(settings, lambda: service.engine, lambda run_id: None, prepare=service.ensure_tables)
    notifier.start()
    try:
        notifier.publish("verify.drift", {"verify": {"in_step": False, "differing": []}})
        row = wait_for(lambda: _settled(db_engine, settings.table), timeout=GUARD_SECONDS, what="a settled attempt")
    finally:
        notifier.close(timeout=GUARD_SECONDS)
        service.close()
    assert row.status == "failed" and row.last_error == "timed out after 1s" and row.attempts == 1
    assert "drip-secret-path" not in row.url_masked


def _settled(db_engine: sa.Engine, table: str) -> Any:
    with db_engine.connect() as connection:
        return connection.execute(
            sa.text(
                "SELECT status, last_error, attempts, url_masked FROM rtarf_sync_webhook_messages "
                "WHERE target_table = :t AND status <> 'pending'"
            ),
            {"t": table},
        ).first()
