"""Query parameters and path ids that once gave, or could give, a 5xx: each answers 4xx naming the parameter.

Against the real PostgreSQL, since the NUL character was refused by it (a 500)
rather than by the route.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rtarf_sync import create_app
from rtarf_sync.service.extension import scheduler_of
from tests.infra.harness.http import EngineHttp

HOSTILE = ["%00", "a%00b", "9" * 5000, "-1", "0", "1e3", "%C2%B2", "%D9%A3", "%FF", "true%00", " ", "nan"]


@pytest.fixture
def client(make_settings: Callable[..., Any], elasticsearch: EngineHttp) -> Iterator[FlaskClient]:
    """An app on the real PostgreSQL, its tables made by one run."""
    app: Flask = create_app(make_settings(elasticsearch, "rtarf-events-none"))
    client = app.test_client()
    try:
        yield client
    finally:
        scheduler_of(app).shutdown(timeout=5)


def test_a_nul_in_the_reason_filter_answers_400_naming_it(client: FlaskClient) -> None:
    response = client.get("/scheduler/dead-letters?reason=not%00a+date")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["parameter"] == "reason"


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    "route, names",
    [
        ("/scheduler/runs", ("limit", "before", "status", "trigger", "mode")),
        ("/scheduler/dead-letters", ("limit", "before", "resolved", "reason")),
        ("/", ("refresh",)),
    ],
)
def test_no_query_value_gives_a_5xx(client: FlaskClient, route: str, names: tuple[str, ...], value: str) -> None:
    for name in names:
        response = client.get(f"{route}?{name}={value}")
        assert response.status_code in (200, 400), f"{name}={value[:20]}: {response.get_data(as_text=True)[:300]}"
        if response.status_code == 400:
            assert response.get_json()["parameter"] == name


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("route", ["/scheduler/runs/", "/scheduler/dead-letters/"])
def test_no_path_id_gives_a_5xx(client: FlaskClient, route: str, value: str) -> None:
    response = client.get(route + value)
    assert response.status_code == 404, response.get_data(as_text=True)
