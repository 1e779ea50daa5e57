"""Instants at the edges of time: refused with a 400 naming the field, or run to the end without a 5xx.

Years 1 and 9999 (with offsets that push them past datetime's range) in the
cursor, a range run and a verification answer 400 and change nothing; the
first and last accepted instants run through the whole arithmetic (overlap,
settle, buckets, the engine's date math, PostgreSQL) on a real sync.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rtarf_sync import create_app
from rtarf_sync.engine.runs.plan import EARLIEST, LATEST, parse_bound
from rtarf_sync.service.extension import scheduler_of
from tests.infra.harness.http import EngineHttp
from tests.infra.support import load_sample

OUT_OF_RANGE = [
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59.999999+00:00",
    "0999-12-31T23:59:59Z",
    "9000-01-01T00:00:00Z",
    "1000-01-01T00:00:00+01:00",
]
FIRST, LAST = "1000-01-01T00:00:00Z", "8999-12-31T23:59:59.999Z"


@pytest.fixture
def client(make_settings: Callable[..., Any], elasticsearch: EngineHttp, index_name: str) -> Iterator[FlaskClient]:
    """An app on the real PostgreSQL and the Elasticsearch protocol server, with a few events."""
    load_sample(elasticsearch, index_name, 20)
    app: Flask = create_app(make_settings(elasticsearch, index_name))
    try:
        yield app.test_client()
    finally:
        scheduler_of(app).shutdown(timeout=5)


def cursor_of(client: FlaskClient) -> Any:
    """The stored cursor as GET /scheduler/cursor shows it."""
    return client.get("/scheduler/cursor").get_json()["cursor"]


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_the_parser_refuses_years_the_run_arithmetic_cannot_hold(text: str) -> None:
    with pytest.raises(ValueError, match="outside the years 1000 to 8999"):
        parse_bound(text)


def test_the_parser_accepts_the_first_and_last_instants() -> None:
    assert parse_bound(FIRST) == EARLIEST
    assert parse_bound(LAST) < LATEST


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_a_cursor_out_of_range_answers_400_and_is_not_stored(client: FlaskClient, text: str) -> None:
    assert client.post("/scheduler/sync-now").status_code == 200
    before = cursor_of(client)
    response = client.put("/scheduler/cursor", json={"cursor": text, "force": True})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["message"].startswith("cursor:")
    assert cursor_of(client) == before
    assert client.post("/scheduler/sync-now").status_code == 200


@pytest.mark.parametrize("field", ["from", "to"])
@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_a_range_or_a_verification_out_of_range_answers_400_naming_the_field(
    client: FlaskClient, field: str, text: str
) -> None:
    window = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", field: text}
    ranged = client.post("/scheduler/sync-now", json={"mode": "range", **window})
    assert ranged.status_code == 400, ranged.get_data(as_text=True)
    assert ranged.get_json()["field"] == field
    verified = client.post("/scheduler/verify", json={**window, "bucket": "1d"})
    assert verified.status_code == 400, verified.get_data(as_text=True)
    assert verified.get_json()["message"].startswith(f"{field}:")
    runs = client.get("/scheduler/runs").get_json()["runs"]
    assert runs == []


def test_the_first_accepted_cursor_runs_cleanly_and_the_last_is_a_future_one(client: FlaskClient) -> None:
    response = client.put("/scheduler/cursor", json={"cursor": FIRST, "force": True})
    assert response.status_code == 200, response.get_data(as_text=True)
    run = client.post("/scheduler/sync-now")
    assert run.status_code == 200, run.get_data(as_text=True)
    assert run.get_json()["result"]["total_processed"] == 20
    future = client.put("/scheduler/cursor", json={"cursor": LAST, "force": True})
    assert future.status_code == 409, future.get_data(as_text=True)


def test_range_runs_and_verifications_at_both_edges_run_cleanly(client: FlaskClient) -> None:
    for start, end in (("1000-01-01T00:00:00Z", "1000-01-03T00:00:00Z"), ("8999-12-29T00:00:00Z", LAST)):
        ranged = client.post("/scheduler/sync-now", json={"mode": "range", "from": start, "to": end})
        assert ranged.status_code == 200, ranged.get_data(as_text=True)
        for bucket in ("1h", "1d"):
            verified = client.post(
                "/scheduler/verify", json={"from": start, "to": end, "bucket": bucket, "repair": True}
            )
            assert verified.status_code == 200, verified.get_data(as_text=True)
            assert verified.get_json()["in_step"] is True
