"""The features meet: a verification that finds drift sends verify.drift, and webhook deliveries are counted.

Real receiver (verifying with standardwebhooks), real OpenSearch and PostgreSQL, the app from the factory.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.service import extension
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import index_docs
from tests.infra.support import wait_for
from tests.infra.webhook_receiver import WebhookReceiver, body_of

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DAY = datetime(2026, 5, 4, tzinfo=timezone.utc)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver(SECRET).start()
    yield hook
    hook.stop()


@pytest.fixture
def app(
    make_settings: Callable[..., Settings], opensearch: EngineHttp, index_name: str, receiver: WebhookReceiver
) -> Iterator[Flask]:
    opensearch.create_index(index_name)
    index_docs(
        opensearch, index_name, {f"e{n}": {"@timestamp": (DAY + timedelta(minutes=n)).isoformat()} for n in range(10)}
    )
    opensearch.refresh(index_name)
    application = create_app(
        make_settings(
            opensearch,
            index_name,
            RTARF_SYNC_ENABLED="false",
            RTARF_WEBHOOK_URLS=receiver.url(),
            RTARF_WEBHOOK_SECRET=SECRET,
            RTARF_WEBHOOK_EVENTS="verify.drift",
            RTARF_VERIFY_INTERVAL_SECONDS="0",
        )
    )
    extension.start(application)  # the delivery thread only: the interval job is disabled
    yield application
    extension.shutdown(application, timeout=5)


def _deliveries(app: Flask, event_type: str, result: str) -> float:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "rtarf_sync_webhook_deliveries_total" and sample.labels == {
                "event_type": event_type,
                "result": result,
            }:
                return sample.value
    return 0.0


def test_drift_found_by_a_verification_is_sent_signed_and_counted(
    app: Flask, opensearch: EngineHttp, index_name: str, receiver: WebhookReceiver
) -> None:
    client = app.test_client()
    assert client.post("/scheduler/sync-now").status_code == 200
    window = {"from": DAY.isoformat(), "to": (DAY + timedelta(days=1)).isoformat(), "bucket": "1h"}
    in_step = client.post("/scheduler/verify", json=window).get_json()
    assert in_step["in_step"] is True and in_step["source_total"] == 10

    index_docs(opensearch, index_name, {"late": {"@timestamp": (DAY + timedelta(hours=5)).isoformat()}})
    opensearch.refresh(index_name)
    drift = client.post("/scheduler/verify", json=window).get_json()
    assert drift["in_step"] is False and drift["source_total"] == 11 and drift["target_total"] == 10

    wait_for(receiver.accepted, what="the verify.drift message")
    (message,) = receiver.accepted()  # the in-step verification sent nothing
    assert message.verified and message.tampered_rejected
    body = body_of(message)
    assert body["type"] == "verify.drift"
    assert body["data"]["verify"]["differing"] == drift["differing"]
    assert body["data"]["table"] == app.config["RTARF_SETTINGS"].table
    wait_for(lambda: _deliveries(app, "verify.drift", "delivered") == 1.0, what="the delivery counted in /metrics")
    panel = client.get("/scheduler/overview").get_json()["view"]["panels"]["webhooks"]
    assert panel["summary"] == "latest 1: 1 delivered", panel  # the status page reads the real delivery log
