"""RTARF_API_TOKEN: every POST and PUT needs the bearer token, GET stays open, bad headers get 401 JSON."""

from __future__ import annotations

from typing import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from rtarf_sync import create_app
from rtarf_sync.api.safety.auth import token_matches
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.service.scheduler import RtarfEventScheduler
from tests.infra.support import GatedJob, offline_settings, wait_for

TOKEN = "s3cret-Token_for.tests~42"
# Each runs for real elsewhere.
NEEDS_DATABASE = {"/scheduler/dead-letters/replay", "/scheduler/verify", "/scheduler/cursor"}


def _app(**env: str) -> Flask:
    settings = offline_settings(**env)
    return create_app(settings, scheduler=RtarfEventScheduler(settings=settings, job=GatedJob(gated=False)))


@pytest.fixture
def app() -> Iterator[Flask]:
    application = _app(RTARF_API_TOKEN=TOKEN, RTARF_SYNC_INTERVAL_SECONDS="3600")
    yield application
    scheduler_of(application).shutdown(timeout=5)


def _mutating_rules(app: Flask) -> list[tuple[str, str]]:
    return sorted(
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in ("POST", "PUT")
        if method in (rule.methods or set())
    )


def test_the_app_has_the_documented_mutating_routes(app: Flask) -> None:
    assert _mutating_rules(app) == [
        ("POST", "/scheduler/dead-letters/replay"),
        ("POST", "/scheduler/retention"),
        ("POST", "/scheduler/start"),
        ("POST", "/scheduler/stop"),
        ("POST", "/scheduler/sync-now"),
        ("POST", "/scheduler/trigger"),
        ("POST", "/scheduler/verify"),
        ("PUT", "/scheduler/cursor"),
    ]


def test_every_mutating_route_refuses_a_request_without_the_token(app: Flask) -> None:
    # Walks the url map, so a POST or PUT route added later without the check fails here.
    client = app.test_client()
    for method, rule in _mutating_rules(app):
        response = client.open(rule, method=method)
        assert response.status_code == 401, rule
        assert response.is_json, rule
        assert response.get_json()["error"] == "Unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_every_mutating_route_accepts_the_right_token(app: Flask) -> None:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for method, rule in _mutating_rules(app):
        if rule == "/scheduler/trigger":  # 202, or 409 while /scheduler/stop has paused automatic runs
            answer = client.post(rule, headers=headers)
            assert answer.status_code == 202 or "trigger refused" in answer.get_json()["message"], answer.get_json()
            continue
        # /scheduler/start runs the job at once: sync-now may meet that run (409) before it ends.
        answer = _answer_when_free(client, method, rule, headers)
        if rule in NEEDS_DATABASE:  # no database here: past the token check it fails on PostgreSQL
            assert answer.status_code == 503 and answer.is_json, (rule, answer.get_json())
        else:
            assert answer.status_code == 200, (rule, answer.get_json())


def _answer_when_free(client: FlaskClient, method: str, rule: str, headers: dict[str, str]) -> TestResponse:
    """The route's answer once it is no longer busy (409)."""
    answers = []
    body = {"cursor": None} if method == "PUT" else None
    wait_for(
        lambda: answers.append(client.open(rule, method=method, headers=headers, json=body))
        or answers[-1].status_code != 409,
        what=f"{rule} not to be busy",
    )
    return answers[-1]


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer ",
        "Bearer",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer short",
        "Bearer " + "x" * 10_000,
        f"Bearer {TOKEN[:-2]}é",
        "Bearer тест",
        f"Bearer {TOKEN} extra",
    ],
)
def test_wrong_tokens_get_401_never_500(app: Flask, header: str) -> None:
    response = app.test_client().post("/scheduler/sync-now", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.is_json


def test_a_non_ascii_header_byte_string_gets_401(app: Flask) -> None:
    environ = {"HTTP_AUTHORIZATION": "Bearer \xff\xfe".encode("latin-1").decode("latin-1")}
    response = app.test_client().post("/scheduler/stop", environ_overrides=environ)
    assert response.status_code == 401


def test_get_routes_stay_open(app: Flask) -> None:
    client = app.test_client()
    for path in ("/scheduler/status", "/scheduler/jobs", "/healthz", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_unknown_post_paths_are_refused_before_routing(app: Flask) -> None:
    response = app.test_client().post("/scheduler/anything")
    assert response.status_code == 401


def test_token_matches_is_exact() -> None:
    expected = TOKEN.encode()
    assert token_matches(f"Bearer {TOKEN}", expected)
    assert token_matches(f"bearer {TOKEN}", expected)  # the scheme is case-insensitive (RFC 7235)
    assert not token_matches(None, expected)
    assert not token_matches(f"Bearer {TOKEN.upper()}", expected)


def test_without_a_token_post_is_open_and_start_up_warns(caplog: pytest.LogCaptureFixture) -> None:
    app = _app()
    try:
        assert "RTARF_API_TOKEN is not set" in caplog.text
        assert app.test_client().post("/scheduler/stop").status_code == 200
    finally:
        scheduler_of(app).shutdown(timeout=5)


def test_with_a_token_start_up_does_not_warn(caplog: pytest.LogCaptureFixture, app: Flask) -> None:
    assert "RTARF_API_TOKEN is not set" not in caplog.text
