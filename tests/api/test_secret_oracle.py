"""An error answer never tells a caller whether a guessed value is a secret.

The redactor masks every secret in every body; if a route echoed what the
caller sent, a guess equal to the engine password would come back as `***`
and a wrong guess verbatim, confirming the right one. Each request below is
sent once with the real secret and once with a wrong guess of the same
length: the two answers must be the same, byte for byte.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest
from flask.testing import FlaskClient

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.service import extension

SECRET = "Guess-Me-EsPassword-4242"
WRONG = "Guess-Me-EsPassword-4243"

# (method, path, JSON body) with {g} where the guess goes
REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/{g}", None),
    ("GET", "/scheduler/{g}", None),
    ("GET", "/scheduler/runs/{g}", None),
    ("GET", "/scheduler/dead-letters/{g}", None),
    ("GET", "/scheduler/runs?status={g}", None),
    ("GET", "/scheduler/runs?limit={g}", None),
    ("GET", "/scheduler/runs?before={g}", None),
    ("GET", "/scheduler/dead-letters?limit={g}", None),
    ("POST", "/scheduler/sync-now", {"mode": "{g}"}),
    ("POST", "/scheduler/sync-now", {"{g}": 1}),
    ("POST", "/scheduler/sync-now", {"force": "{g}"}),
    ("POST", "/scheduler/sync-now", {"mode": "range", "from": "{g}", "to": "2026-01-01T00:00:00Z"}),
    ("POST", "/scheduler/sync-now", {"mode": "range", "from": "2026-01-01T00:00:00Z", "to": "x {g} y"}),
    ("POST", "/scheduler/verify", {"bucket": "{g}"}),
    ("POST", "/scheduler/verify", {"from": "{g}"}),
    ("POST", "/scheduler/verify", {"repair": "{g}"}),
    ("POST", "/scheduler/verify", {"{g}": True}),
    ("PUT", "/scheduler/cursor", {"cursor": "{g}"}),
    ("POST", "/scheduler/dead-letters/replay", {"ids": ["{g}"]}),
    ("POST", "/scheduler/dead-letters/replay", {"{g}": []}),
]


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> FlaskClient:
    """An app whose engine password is SECRET; the interval job is off."""
    app = create_app(
        make_settings(
            RTARF_ES_USERNAME="elastic",
            RTARF_ES_PASSWORD=SECRET,
            RTARF_SYNC_ENABLED="false",
            RTARF_SYNC_MAX_RETRIES="0",
        )
    )
    yield app.test_client()
    extension.shutdown(app)


def _ask(client: FlaskClient, method: str, path: str, body: Any, guess: str) -> tuple[int, str]:
    filled = json.loads(json.dumps(body).replace("{g}", guess)) if body is not None else None
    response = client.open(path.replace("{g}", guess), method=method, json=filled)
    return response.status_code, response.get_data(as_text=True)


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS, ids=[f"{m} {p} {b}" for m, p, b in REQUESTS])
def test_the_answer_to_the_real_secret_and_to_a_wrong_guess_is_the_same(
    client: FlaskClient, method: str, path: str, body: Any
) -> None:
    right = _ask(client, method, path, body, SECRET)
    wrong = _ask(client, method, path, body, WRONG)
    assert right[0] >= 400
    assert right == wrong
    assert SECRET not in right[1] and WRONG not in wrong[1]
