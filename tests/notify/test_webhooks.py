"""Webhooks through the app: real receiver, real PostgreSQL and OpenSearch, real runs.

The receiver (tests/infra/webhook_receiver.py) verifies every message with the
standardwebhooks package, as a user's receiver would. Retry delays are made
small through RTARF_WEBHOOK_RETRY_SECONDS, never by waiting for real backoff.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.service import extension
from tests.infra.harness.http import EngineHttp
from tests.infra.harness.process import free_port
from tests.infra.support import load_sample, wait_for
from tests.infra.webhook_receiver import WebhookReceiver, always, body_of, fail_first, hang, redirect_to

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
AppFactory = Callable[..., Flask]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A receiver that verifies with the test secret."""
    hook = WebhookReceiver(SECRET).start()
    yield hook
    hook.stop()


@pytest.fixture
def make_app(make_settings: Callable[..., Settings], opensearch: EngineHttp, index_name: str) -> Iterator[AppFactory]:
    """Apps reading a small index, interval job off, webhook delivery started; shut down afterwards."""
    load_sample(opensearch, index_name, 20)
    apps: list[Flask] = []

    def build(urls: str, engine: EngineHttp | None = opensearch, **env: Any) -> Flask:
        environ = {
            "RTARF_SYNC_ENABLED": "false",
            "RTARF_WEBHOOK_URLS": urls,
            "RTARF_WEBHOOK_SECRET": SECRET,
            "RTARF_WEBHOOK_RETRY_SECONDS": "0.05",
            "RTARF_SYNC_MAX_RETRIES": "0",
            **env,
        }
        app = create_app(make_settings(engine, index_name, **environ))
        extension.start(app)  # starts the delivery thread only: the interval job is disabled
        apps.append(app)
        return app

    yield build
    for app in apps:
        extension.shutdown(app, timeout=5)


def deliveries(client: FlaskClient) -> list[dict[str, Any]]:
    """The delivery log, newest first."""
    return client.get("/scheduler/webhooks").get_json()["deliveries"]


def test_messages_are_signed_stored_first_retried_with_one_id_then_delivered(
    make_app: AppFactory, receiver: WebhookReceiver
) -> None:
    receiver.respond = fail_first(3)
    client = make_app(receiver.url(), RTARF_WEBHOOK_EVENTS="*").test_client()

    run = client.post("/scheduler/sync-now").get_json()["result"]

    wait_for(receiver.accepted, what="the message accepted after three failures")
    requests = receiver.requests
    assert [r.status for r in requests] == [500, 500, 500, 200]
    assert all(r.verified and r.tampered_rejected for r in requests)
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1  # the stored body, byte for byte, on every retry
    message = body_of(requests[0])
    assert message["type"] == "sync.succeeded" and message["timestamp"]
    assert message["data"]["table"] and message["data"]["source_index"]
    assert message["data"]["run"]["run_id"] == run["run_id"]
    assert message["data"]["run"]["status"] == "success" and message["data"]["run"]["inserted"] == 20
    log = wait_for(lambda: [d for d in deliveries(client) if d["status"] == "delivered"], what="the log")
    assert log[0]["attempts"] == 4 and log[0]["last_status_code"] == 200
    assert log[0]["message_id"] == requests[0].headers["webhook-id"]
    assert log[0]["delivered_at"] and re.fullmatch(
        rf"http://127\.0\.0\.1:{receiver.port}/…#[0-9a-f]{{6}}", log[0]["url"]
    )


def test_recovered_follows_a_failure_even_across_a_restart(
    make_app: AppFactory, receiver: WebhookReceiver, opensearch: EngineHttp
) -> None:
    dead_engine = EngineHttp(f"http://127.0.0.1:{free_port()}", "opensearch")
    failing = make_app(receiver.url(), engine=dead_engine, RTARF_WEBHOOK_EVENTS="*").test_client()
    assert failing.post("/scheduler/sync-now").status_code >= 500
    wait_for(lambda: len(receiver.accepted()) == 1, what="sync.failed")
    extension.shutdown(failing.application)  # a restart: the next app knows only the run history

    healthy = make_app(receiver.url(), RTARF_WEBHOOK_EVENTS="*").test_client()
    assert healthy.post("/scheduler/sync-now").status_code == 200
    assert healthy.post("/scheduler/sync-now").status_code == 200

    wait_for(lambda: len(receiver.accepted()) == 4, what="four messages")
    types = [body_of(r)["type"] for r in receiver.accepted()]
    assert sorted(types[1:3]) == ["sync.recovered", "sync.succeeded"]
    assert [types[0], types[3]] == ["sync.failed", "sync.succeeded"]
    failed = body_of(receiver.accepted()[0])["data"]["run"]
    assert failed["status"] == "failed" and failed["error"]


def test_default_events_skip_plain_successes(
    make_app: AppFactory, receiver: WebhookReceiver, db_engine: sa.Engine, table_name: str
) -> None:
    client = make_app(receiver.url()).test_client()  # default: failed, partial, recovered, drift
    assert client.post("/scheduler/sync-now").status_code == 200
    scheduler = extension.scheduler_of(client.application)
    wait_for(lambda: scheduler.stats.snapshot()["total_syncs"] == 1)
    client.application.extensions["rtarf_notifier"].close()  # stores anything still queued
    with db_engine.connect() as connection:
        stored = connection.execute(
            sa.text("SELECT count(*) FROM rtarf_sync_webhook_messages WHERE target_table = :t"), {"t": table_name}
        ).scalar()
    assert stored == 0 and receiver.requests == []


def test_410_disables_the_endpoint_logs_it_and_shows_it(
    make_app: AppFactory, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.respond = always(410)
    caplog.set_level(logging.INFO, logger="rtarf_sync.webhooks")
    client = make_app(receiver.url(), RTARF_WEBHOOK_EVENTS="*").test_client()

    client.post("/scheduler/sync-now")
    wait_for(lambda: client.get("/scheduler/webhooks").get_json()["endpoints"][0]["disabled"], what="disabled")
    client.post("/scheduler/sync-now")

    log = wait_for(
        lambda: [d for d in deliveries(client) if d["status"] == "abandoned"] if len(deliveries(client)) == 2 else None,
        what="two abandoned messages",
    )
    assert len(log) == 2 and log[1]["last_status_code"] == 410
    assert log[0]["attempts"] == 0 and "disabled" in log[0]["last_error"]
    assert len(receiver.requests) == 1
    assert "answered 410 Gone: disabled" in caplog.text


def test_redirects_are_not_followed_and_no_credential_is_ever_shown(
    make_app: AppFactory, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = WebhookReceiver(SECRET).start()
    receiver.respond = redirect_to(elsewhere.url())
    caplog.set_level(logging.DEBUG)
    url = receiver.url("/hook?token=tok-sekrit-42", userinfo="ops:pw-sekrit-42@")
    client = make_app(url, RTARF_WEBHOOK_EVENTS="*", RTARF_WEBHOOK_MAX_ATTEMPTS="2").test_client()
    try:
        client.post("/scheduler/sync-now")
        log = wait_for(lambda: [d for d in deliveries(client) if d["status"] == "abandoned"], what="abandoned")
    finally:
        elsewhere.stop()
    assert elsewhere.requests == [] and len(receiver.requests) == 2
    assert log[0]["last_status_code"] == 307 and "redirect not followed" in log[0]["last_error"]
    assert receiver.requests[0].headers["authorization"] == "Basic b3BzOnB3LXNla3JpdC00Mg=="
    shown = client.get("/scheduler/webhooks").get_data(as_text=True)
    assert re.fullmatch(rf"http://127\.0\.0\.1:{receiver.port}/…#[0-9a-f]{{6}}", log[0]["url"])
    for secret in ("pw-sekrit-42", "tok-sekrit-42", SECRET, SECRET[6:]):
        assert secret not in shown and secret not in caplog.text


def test_a_hanging_receiver_is_cut_at_the_timeout_and_never_delays_a_sync(
    make_app: AppFactory, receiver: WebhookReceiver
) -> None:
    release = threading.Event()
    receiver.respond = hang(release)
    client = make_app(
        receiver.url(), RTARF_WEBHOOK_EVENTS="*", RTARF_WEBHOOK_TIMEOUT_SECONDS="0.5", RTARF_WEBHOOK_RETRY_SECONDS="30"
    ).test_client()
    try:
        assert client.post("/scheduler/sync-now").status_code == 200
        cut = wait_for(lambda: [d for d in deliveries(client) if d["last_error"]], what="the attempt cut off")
        assert cut[0]["last_error"] == "timed out after 0.5s" and cut[0]["status"] == "failed"
        assert not release.is_set() and len(receiver.requests) == 1  # still hanging, yet:
        assert client.post("/scheduler/sync-now").status_code == 200  # the next sync runs at once
    finally:
        release.set()


def test_an_endless_answer_is_read_only_up_to_the_cap(make_app: AppFactory) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    stopped = threading.Event()

    class Endless(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the http.server API
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(200)
            self.send_header("content-length", str(10**12))
            self.end_headers()
            try:
                while True:  # until the service hangs up
                    self.wfile.write(b"x" * 1024)
            except OSError:
                stopped.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = make_app(f"http://127.0.0.1:{server.server_port}/hook", RTARF_WEBHOOK_EVENTS="*").test_client()
        client.post("/scheduler/sync-now")
        delivered = wait_for(lambda: [d for d in deliveries(client) if d["status"] == "delivered"], what="delivered")
        assert delivered[0]["attempts"] == 1
        assert stopped.wait(30)  # the service closed the connection instead of reading on
    finally:
        server.shutdown()
        server.server_close()


def test_shown_urls_keep_scheme_host_and_port_and_still_tell_endpoints_apart(
    make_app: AppFactory, receiver: WebhookReceiver, db_engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first, second = receiver.url("/hooks/T01/B01/chat-path-sekrit-1"), receiver.url("/hooks/T01/B01/chat-path-sekrit-2")
    app = make_app(f"{first},{second}", RTARF_WEBHOOK_EVENTS="*")
    client = app.test_client()
    client.post("/scheduler/sync-now")
    wait_for(lambda: len([d for d in deliveries(client) if d["status"] == "delivered"]) == 2, what="both delivered")
    table = app.config["RTARF_SETTINGS"].table
    with db_engine.begin() as connection:  # a row stored by an older version kept the path: shown masked too
        connection.execute(
            sa.text(
                "UPDATE rtarf_sync_webhook_messages SET url_masked = :old WHERE target_table = :t AND id = "
                "(SELECT min(id) FROM rtarf_sync_webhook_messages WHERE target_table = :t)"
            ),
            {"old": f"http://127.0.0.1:{receiver.port}/hooks/T01/B01/chat-path-sekrit-1", "t": table},
        )
    listed = client.get("/scheduler/webhooks").get_json()
    page = client.get("/").get_data(as_text=True)
    shown = [endpoint["url"] for endpoint in listed["endpoints"]]
    pattern = rf"http://127\.0\.0\.1:{receiver.port}/…#[0-9a-f]{{6}}"
    assert all(re.fullmatch(pattern, url) for url in shown) and len(set(shown)) == 2
    assert {delivery["url"] for delivery in listed["deliveries"]} == set(shown)
    for text in (str(listed), page, caplog.text):
        assert "chat-path-sekrit" not in text and "/hooks/T01" not in text
    assert shown[0] in page or shown[0].replace("…", "&hellip;") in page
