"""Each secret, on its own, is masked wherever text leaves the process.

Every case puts one canary value into one setting and writes it bare (not
inside a URL, where the generic URL-password mask would hide it anyway), so
each case fails when that one secret is missing from the list of secrets.
Two paths are checked: the log filter's Redactor and the `redact()` the sync
applies to a run's error message.
"""

from __future__ import annotations

import logging

import pytest

from config import load_settings
from rtarf_sync.engine.errors import redact
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.logs import Redactor, RedactingFilter, secret_values

WEBHOOK_KEY = "Q2FuYXJ5V2ViaG9va0tleS0wMTIzNDU2Nzg5"  # base64 of "CanaryWebhookKey-0123456789"

# (setting, value, the canary that must never show)
CASES = {
    "database password": (
        {"RTARF_DATABASE_URL": "postgresql+psycopg://app:CanaryDbPw-71c@db:5432/rtarf"},
        "CanaryDbPw-71c",
    ),
    "database password, encoded": (
        {"RTARF_DATABASE_URL": "postgresql+psycopg://app:Can%40ry-Db%2F72@db/rtarf"},
        "Can@ry-Db/72",
    ),
    "engine password": ({"RTARF_ES_USERNAME": "elastic", "RTARF_ES_PASSWORD": "CanaryEsPw-73d"}, "CanaryEsPw-73d"),
    "engine API key": ({"RTARF_ES_API_KEY": "CanaryApiKey-74e=="}, "CanaryApiKey-74e=="),
    "API token": ({"RTARF_API_TOKEN": "CanaryToken-75f-0123"}, "CanaryToken-75f-0123"),
    "engine proxy password": ({"RTARF_ES_PROXY": "http://squid:CanaryProxyPw-78c@proxy:3128"}, "CanaryProxyPw-78c"),
    "engine proxy password, decoded": (
        {"RTARF_ES_PROXY": "http://squid:Can%40ry-Px%2F79@proxy:3128"},
        "Can@ry-Px/79",
    ),
    "webhook secret": (
        {"RTARF_WEBHOOK_URLS": "https://hooks.example/in", "RTARF_WEBHOOK_SECRET": f"whsec_{WEBHOOK_KEY}"},
        f"whsec_{WEBHOOK_KEY}",
    ),
    "webhook secret key alone": (
        {"RTARF_WEBHOOK_URLS": "https://hooks.example/in", "RTARF_WEBHOOK_SECRET": f"whsec_{WEBHOOK_KEY}"},
        WEBHOOK_KEY,
    ),
    "webhook URL password": (
        {
            "RTARF_WEBHOOK_URLS": "https://hookuser:CanaryHookPw-76a@hooks.example/in",
            "RTARF_WEBHOOK_SECRET": f"whsec_{WEBHOOK_KEY}",
        },
        "CanaryHookPw-76a",
    ),
    "webhook URL path": (
        {
            "RTARF_WEBHOOK_URLS": "https://chat.example/hooks/T0/CanaryHookPath-77b",
            "RTARF_WEBHOOK_SECRET": f"whsec_{WEBHOOK_KEY}",
        },
        "/hooks/T0/CanaryHookPath-77b",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_log_redactor_masks_each_secret_alone(case: str) -> None:
    environ, canary = CASES[case]
    redactor = Redactor(secret_values(load_settings(environ)))
    masked = redactor(f"the value was {canary} and again '{canary}'")
    assert canary not in masked
    assert masked == "the value was *** and again '***'"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_run_error_message_masks_each_secret_alone(case: str) -> None:
    environ, canary = CASES[case]
    service = SyncService(load_settings(environ))
    assert redact(f"engine said: bad credentials {canary}", service.secrets()) == "engine said: bad credentials ***"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_log_record_with_each_secret_as_an_argument_is_masked(case: str) -> None:
    environ, canary = CASES[case]
    record = logging.LogRecord("rtarf_sync.sync", logging.WARNING, __file__, 1, "call failed: %s", (canary,), None)
    RedactingFilter(Redactor(secret_values(load_settings(environ)))).filter(record)
    assert record.getMessage() == "call failed: ***"
