"""The small parts of webhooks, without a network: signing, backoff, masking, bodies."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from rtarf_sync.engine.runs.result import FAILED, PARTIAL, SKIPPED, SUCCESS
from rtarf_sync.notify.delivery import RETRY_CAP_SECONDS, retry_delay, signed_headers
from config import load_settings
from rtarf_sync.notify.endpoints import configured_endpoints, endpoint_key, mask_endpoint
from rtarf_sync.notify.events import message_body, sync_event_types

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signed_headers_verify_with_standardwebhooks_and_an_altered_body_does_not() -> None:
    body = message_body("sync.failed", {"table": "t", "source_index": "i", "run": {"run_id": 1}})
    headers = signed_headers(SECRET, "msg_1", body)
    assert Webhook(SECRET).verify(body, headers)["type"] == "sync.failed"
    assert headers["webhook-id"] == "msg_1" and headers["webhook-signature"].startswith("v1,")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace('"run_id":1', '"run_id":2'), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVg==").verify(body, headers)


def test_the_body_has_the_documented_shape() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    body = json.loads(message_body("verify.drift", {"table": "t", "source_index": "i", "verify": {}}, moment))
    drift = {"differing": [], "differing_total": 0, "differing_truncated": False}
    assert body == {
        "type": "verify.drift",
        "timestamp": "2026-01-02T03:04:05+00:00",
        "data": {"table": "t", "source_index": "i", "verify": drift},
    }
    with pytest.raises(ValueError):
        message_body("sync.exploded", {})


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [retry_delay(attempt, 5.0, rng) for attempt in range(1, 12)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(RETRY_CAP_SECONDS, 5.0 * 3 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(retry_delay(3, 5.0, rng), 6) for _ in range(20)}) > 1  # jitter spreads replicas apart


def test_urls_are_masked_and_keys_hold_no_credentials() -> None:
    url = "https://ops:pw-sekrit@soc.example.org:8443/hooks/rtarf?token=tok-sekrit"
    assert mask_endpoint(url) == "https://soc.example.org:8443/…"
    assert mask_endpoint(url, "3f9a1c") == "https://soc.example.org:8443/…#3f9a1c"
    assert mask_endpoint("http://h/x", "3f9a1c") == "http://h/…#3f9a1c"
    assert mask_endpoint("http://h/", "3f9a1c") == mask_endpoint("http://h", "3f9a1c") == "http://h/"
    assert mask_endpoint(mask_endpoint(url, "3f9a1c"), "3f9a1c") == mask_endpoint(url, "3f9a1c")  # stable
    assert endpoint_key(url) == endpoint_key("https://other:creds@soc.example.org:8443/hooks/rtarf?token=tok-sekrit")
    assert endpoint_key(url) != endpoint_key("https://soc.example.org:8443/hooks/other")


def test_endpoints_that_differ_only_in_path_or_query_stay_distinguishable_without_showing_it() -> None:
    urls = [
        "https://chat.example.com/hooks/T0/B0/aaaa",
        "https://chat.example.com/hooks/T0/B0/bbbb",
        "https://chat.example.com/hooks/T0/B0/aaaa?thread=1",
        "https://chat.example.com/",
    ]
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    shown = [
        endpoint.masked
        for endpoint in configured_endpoints(
            load_settings({"RTARF_WEBHOOK_URLS": ",".join(urls), "RTARF_WEBHOOK_SECRET": secret}).webhooks
        )
    ]
    assert len(set(shown)) == 4
    assert all(item.startswith("https://chat.example.com/") and "hooks" not in item for item in shown)
    other = load_settings(
        {"RTARF_WEBHOOK_URLS": urls[0], "RTARF_WEBHOOK_SECRET": "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVg=="}
    ).webhooks
    assert configured_endpoints(other)[0].masked != shown[0]  # the tag is keyed: nothing to test guesses on


@pytest.mark.parametrize(
    ("status", "after_failure", "expected"),
    [
        (SUCCESS, False, ["sync.succeeded"]),
        (SUCCESS, True, ["sync.succeeded", "sync.recovered"]),
        (PARTIAL, True, ["sync.partial", "sync.recovered"]),
        (FAILED, True, ["sync.failed"]),
        (SKIPPED, True, []),
    ],
)
def test_which_events_a_run_raises(status: str, after_failure: bool, expected: list[str]) -> None:
    assert sync_event_types(status, after_failure) == expected
