"""The request guards of api/safety/guards.py through the app factory: origins, CORS, body type, size and depth.

Each refused request is shown to change nothing: the interval job stays
paused (POST /scheduler/start) and the job never runs (POST /scheduler/sync-now).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
from flask import Flask

from config import ConfigError
from rtarf_sync import create_app
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.service.scheduler import RtarfEventScheduler
from tests.infra.support import GatedJob, offline_settings

DASHBOARD = "https://dash.example.com:8443"
AppFactory = Callable[..., tuple[Flask, GatedJob]]


@pytest.fixture
def make_app() -> Iterator[AppFactory]:
    """Apps with a paused interval job (hourly) and a job that counts its calls."""
    apps: list[Flask] = []

    def build(**env: Any) -> tuple[Flask, GatedJob]:
        settings = offline_settings(RTARF_SYNC_INTERVAL_SECONDS=3600, **env)
        job = GatedJob(gated=False)
        app = create_app(settings, scheduler=RtarfEventScheduler(settings=settings, job=job))
        apps.append(app)
        return app, job

    yield build
    for app in apps:
        scheduler_of(app).shutdown(timeout=5)


def running(app: Flask) -> bool:
    """Whether the interval job is scheduled (POST /scheduler/start turns it on)."""
    return bool(app.test_client().get("/scheduler/status").get_json()["is_running"])


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        "http://localhost:8000",
        "https://localhost",
        "http://localhost/path",
        "http://dash.example.com:8443",
    ],
)
def test_a_write_from_a_foreign_origin_is_refused_and_changes_nothing(make_app: AppFactory, origin: str) -> None:
    app, job = make_app(RTARF_CORS_ORIGINS=DASHBOARD)
    client = app.test_client()  # the service's own origin is http://localhost
    for path in ("/scheduler/start", "/scheduler/sync-now"):
        response = client.post(path, headers={"Origin": origin}, json={})
        assert response.status_code == 403, response.get_data(as_text=True)
        assert response.get_json()["error"] == "Forbidden"
        assert "RTARF_CORS_ORIGINS" in response.get_json()["message"]
        assert "Access-Control-Allow-Origin" not in response.headers
    assert running(app) is False
    assert job.call_count() == 0


def test_reads_from_any_origin_answer_but_only_listed_ones_get_cors_headers(make_app: AppFactory) -> None:
    app, _ = make_app(RTARF_CORS_ORIGINS=DASHBOARD)
    client = app.test_client()
    foreign = client.get("/scheduler/status", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 200
    assert "Access-Control-Allow-Origin" not in foreign.headers
    listed = client.get("/scheduler/status", headers={"Origin": DASHBOARD})
    assert listed.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert "Origin" in listed.headers["Vary"]


@pytest.mark.parametrize("origin", ["http://localhost", "http://LOCALHOST:80"])
def test_the_services_own_origin_and_requests_without_origin_pass(make_app: AppFactory, origin: str) -> None:
    app, _ = make_app()
    client = app.test_client()
    assert client.post("/scheduler/sync-now", headers={"Origin": origin}, json={}).status_code == 200
    assert client.post("/scheduler/start").status_code == 200  # curl, scripts: no Origin at all
    assert running(app) is True


def test_a_listed_origin_gets_a_preflight_and_cors_headers_for_a_token_and_a_json_body(make_app: AppFactory) -> None:
    app, _ = make_app(RTARF_CORS_ORIGINS=f"https://other.example, {DASHBOARD}")
    client = app.test_client()
    preflight = client.options(
        "/scheduler/start",
        headers={
            "Origin": DASHBOARD,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert {"POST", "PUT"} <= {m.strip() for m in preflight.headers["Access-Control-Allow-Methods"].split(",")}
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    response = client.post("/scheduler/start", headers={"Origin": DASHBOARD, "Authorization": "Bearer x"}, json={})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert "Origin" in response.headers["Vary"]
    assert running(app) is True


def test_a_preflight_from_a_foreign_origin_gets_no_cors_headers(make_app: AppFactory) -> None:
    app, _ = make_app(RTARF_CORS_ORIGINS=DASHBOARD)
    preflight = app.test_client().options(
        "/scheduler/start", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


@pytest.mark.parametrize(
    "value",
    [
        "*",
        "https://dash.example.com/",
        "dash.example.com",
        "https://a.example,",
        "ftp://dash.example.com",
        "https://dash.example.com/path",
    ],
)
def test_cors_origins_must_be_exact_origins(value: str) -> None:
    with pytest.raises(ConfigError, match="RTARF_CORS_ORIGINS"):
        offline_settings(RTARF_CORS_ORIGINS=value)


def test_cors_origins_are_read_as_a_list() -> None:
    settings = offline_settings(RTARF_CORS_ORIGINS=" https://A.example ,http://[::1]:9000")
    assert settings.cors_origins == ("https://a.example", "http://[::1]:9000")
    assert offline_settings().cors_origins == ()


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
)
def test_a_body_that_is_not_json_answers_415_and_changes_nothing(
    make_app: AppFactory, content_type: str | None
) -> None:
    app, job = make_app()
    client = app.test_client()
    headers = {"Content-Type": content_type} if content_type else {}
    for path in ("/scheduler/start", "/scheduler/sync-now"):
        response = client.post(path, data=b'{"mode": "full"}', headers=headers)
        assert response.status_code == 415, response.get_data(as_text=True)
        assert response.get_json()["error"] == "Unsupported Media Type"
    assert running(app) is False
    assert job.call_count() == 0


def test_no_body_at_all_needs_no_content_type(make_app: AppFactory) -> None:
    app, job = make_app()
    client = app.test_client()
    assert client.post("/scheduler/sync-now", headers={"Content-Type": "text/plain"}).status_code == 200
    assert client.post("/scheduler/start").status_code == 200
    assert job.call_count() >= 1


def test_a_body_over_one_mebibyte_answers_413_before_it_is_read(make_app: AppFactory) -> None:
    app, job = make_app()
    client = app.test_client()
    big = b'{"ids": [' + b"1," * (1024 * 1024 // 2) + b"1]}"
    response = client.post("/scheduler/start", data=big, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"] == "Request Entity Too Large"
    # Only the header counts: a Content-Length over the limit is refused with no body bytes sent at all.
    claimed = client.post(
        "/scheduler/sync-now",
        content_type="application/json",
        environ_overrides={"wsgi.input": _Unreadable(), "CONTENT_LENGTH": str(1024 * 1024 + 1)},
    )
    assert claimed.status_code == 413
    assert running(app) is False
    assert job.call_count() == 0


class _Unreadable:
    """A request body that fails the test if anything reads it."""

    def read(self, *args: Any) -> bytes:
        raise AssertionError("the body was read")

    readline = readlines = read


def test_a_body_of_exactly_one_mebibyte_is_read(make_app: AppFactory) -> None:
    app, _ = make_app()
    body = b"{}" + b" " * (1024 * 1024 - 2)
    response = app.test_client().post("/scheduler/start", data=body, content_type="application/json")
    assert response.status_code == 200


@pytest.mark.parametrize("depth, status", [(31, 200), (32, 200), (33, 400), (100_000, 400)])
def test_json_nested_deeper_than_32_levels_answers_400(make_app: AppFactory, depth: int, status: int) -> None:
    app, _ = make_app()
    # {"ids": [...]} is one level; the list inside takes the rest.
    body = '{"ids": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
    response = app.test_client().post("/scheduler/start", data=body, content_type="application/json")
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 400:
        assert "32 levels" in response.get_json()["message"]
        assert running(app) is False


@pytest.mark.parametrize("body", ['{"mode": ', "nope", '{"a": 1}{', "\xff"])
def test_invalid_json_answers_400_naming_the_body(make_app: AppFactory, body: str) -> None:
    app, job = make_app()
    response = app.test_client().post(
        "/scheduler/sync-now", data=body.encode("latin-1"), content_type="application/json"
    )
    assert response.status_code == 400
    assert response.get_json()["message"].startswith("body:")
    assert job.call_count() == 0


def test_a_token_check_comes_first(make_app: AppFactory) -> None:
    app, _ = make_app(RTARF_API_TOKEN="a-token-of-enough-length")
    response = app.test_client().post(
        "/scheduler/start", data="x", content_type="text/plain", headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 401
