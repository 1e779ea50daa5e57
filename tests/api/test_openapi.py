"""GET /openapi.json describes every route, and Schemathesis drives every operation from it.

The app is built by the factory on the real PostgreSQL and the Elasticsearch
protocol server (a small index), so runs, verifications and cursor changes
really happen. Each generated request must get a documented status and never
a 5xx, and a request answered 4xx must leave the service's state (cursor,
runs, verifications, dead letters, target rows, the interval job) as it was.
The number of requests sent is printed at the end of the module.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest
import schemathesis
import sqlalchemy as sa
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from config import load_settings
from rtarf_sync import create_app
from rtarf_sync.api.openapi import build_spec
from rtarf_sync.service.extension import scheduler_of
from tests.infra.esserver import EsProtocolServer
from tests.infra.harness.http import EngineHttp
from tests.infra.harness.process import say
from tests.infra.support import load_sample, wait_for

EXAMPLES_PER_OPERATION = 20  # with the negative cases about 750 requests: some 30 s on a busy 2-core machine
SENT: list[tuple[str, str, int]] = []


@pytest.fixture(scope="module")
def fuzz_table() -> str:
    """This module's target table."""
    return f"fuzz_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def fuzz_app(database_url: str, es_server: EsProtocolServer, fuzz_table: str) -> Iterator[Flask]:
    """The app on real PostgreSQL and the protocol server; interval and verify jobs off until /start."""
    engine = EngineHttp(es_server.url, "elasticsearch")
    index = f"rtarf-events-fuzz-{uuid.uuid4().hex[:8]}"
    load_sample(engine, index, 30)
    app = create_app(
        load_settings(
            {
                "RTARF_DATABASE_URL": database_url,
                "RTARF_TABLE": fuzz_table,
                "RTARF_ES_URL": engine.url,
                "RTARF_SOURCE_ENGINE": "elasticsearch",
                "RTARF_ES_INDEX": index,
                "RTARF_SYNC_SETTLE_SECONDS": "0",
                "RTARF_SYNC_MAX_RETRIES": "0",
                "RTARF_SYNC_INTERVAL_SECONDS": "86400",
                "RTARF_VERIFY_INTERVAL_SECONDS": "0",
                "RTARF_TRIGGER_DEBOUNCE_SECONDS": "0",
            }
        )
    )
    try:
        yield app
    finally:
        scheduler_of(app).shutdown(timeout=10)
        say(
            f"Schemathesis sent {len(SENT)} requests over {len({(m, p) for m, p, _ in SENT})} method and path pairs; "
            f"statuses: {sorted({s for _, _, s in SENT})}"
        )
        engine.delete_index(index)


# The document the app serves (the last test checks they are the same). Loaded at import rather than
# from a fixture: Schemathesis' lazy fixture loading does not work with pytest 9.
schema = schemathesis.openapi.from_dict(build_spec())


def _idle(app: Flask) -> bool:
    """No run in progress or pending: a background run cannot change the state under a comparison."""
    status = scheduler_of(app).get_status()
    trigger = status.get("trigger") or {}
    return not status["sync_in_progress"] and not trigger.get("pending") and not trigger.get("running")


def state(app: Flask, db_engine: sa.Engine, table: str) -> dict[str, Any]:
    """What a rejected request must not change."""
    scheduler = scheduler_of(app)
    wait_for(lambda: _idle(app), timeout=60, what="the service to be idle")
    tables = scheduler.service.tables
    scheduler.service.ensure_tables()
    with db_engine.connect() as connection:

        def rows(t: sa.Table, *order: Any) -> list[Any]:
            mine = t.c.target_table == table
            return [tuple(row) for row in connection.execute(sa.select(t).where(mine).order_by(*order))]

        return {
            "cursor": rows(tables.cursor, tables.cursor.c.source_index),
            "runs": rows(tables.runs, tables.runs.c.id),
            "verifications": rows(tables.verifications, tables.verifications.c.id),
            "dead_letters": rows(tables.dead_letters, tables.dead_letters.c.id),
            "target": connection.execute(sa.text(f"SELECT count(*), count(deleted_at) FROM {table}")).one(),
            "running": scheduler.get_status()["is_running"],
        }


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_every_operation_answers_as_documented_without_5xx(
    case: Any, fuzz_app: Flask, db_engine: sa.Engine, fuzz_table: str
) -> None:
    before = state(fuzz_app, db_engine, fuzz_table)
    response = case.call(app=fuzz_app)
    SENT.append((case.method, case.operation.path, response.status_code))
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
    if 400 <= response.status_code < 500:
        assert state(fuzz_app, db_engine, fuzz_table) == before, (
            f"{case.method} {case.path} answered {response.status_code} but changed the state"
        )


def test_every_route_of_the_app_is_in_the_document(fuzz_app: Flask) -> None:
    document = fuzz_app.test_client().get("/openapi.json").get_json()
    assert document == build_spec()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for rule in fuzz_app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        assert path in paths, f"{path} is not described"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], f"{method} {path} is not described"
    assert "/livez" in paths
