"""GET /metrics: prometheus_client output, one registry per app, state gauges read from PostgreSQL.

The scrape is parsed with prometheus_client.parser and compared with
/scheduler/status and the run history; a second app on the same database
stands for a restarted process.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.sample import make_event
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.service.metrics import metrics_of
from rtarf_sync.service.scheduler import RtarfEventScheduler
from rtarf_sync.service.state_cache import CACHE_SECONDS
from tests.infra.harness.http import EngineHttp
from tests.infra.harness.process import free_port
from tests.infra.oracle import index_docs
from tests.infra.support import GatedJob, offline_settings

DESIGN_SERIES = {
    "rtarf_sync_runs": "counter",
    "rtarf_sync_run_duration_seconds": "histogram",
    "rtarf_sync_events": "counter",
    "rtarf_sync_page_seconds": "histogram",
    "rtarf_sync_last_success_timestamp_seconds": "gauge",
    "rtarf_sync_last_run_timestamp_seconds": "gauge",
    "rtarf_sync_cursor_timestamp_seconds": "gauge",
    "rtarf_sync_dead_letters_unresolved": "gauge",
    "rtarf_sync_scheduler_running": "gauge",
    "rtarf_sync_in_progress": "gauge",
    "rtarf_sync_lease_held": "gauge",
    "rtarf_sync_verify_source_documents": "gauge",
    "rtarf_sync_verify_target_rows": "gauge",
    "rtarf_sync_verify_buckets_differing": "gauge",
    "rtarf_sync_verify_timestamp_seconds": "gauge",
    "rtarf_sync_webhook_deliveries": "counter",
}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(app: Flask) -> tuple[dict[str, str], Samples]:
    """Family types and every sample of one scrape, parsed by prometheus_client."""
    response = app.test_client().get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        scheduler_of(app).shutdown(timeout=20)


def test_two_apps_in_one_process_have_their_own_registries(apps: list[Flask]) -> None:
    for _ in range(2):
        settings = offline_settings()
        apps.append(create_app(settings, scheduler=RtarfEventScheduler(settings=settings, job=GatedJob(gated=False))))
    first, second = apps
    assert metrics_of(first).registry is not metrics_of(second).registry
    first.test_client().post("/scheduler/sync-now")
    metrics_of(second).webhook_delivered("sync.failed", "delivered")
    _, one = scrape(first)
    _, two = scrape(second)
    key = {"trigger": "manual", "mode": "incremental", "status": "success"}
    assert (value(one, "rtarf_sync_runs_total", **key), value(two, "rtarf_sync_runs_total", **key)) == (1.0, 0.0)
    assert value(one, "rtarf_sync_webhook_deliveries_total", event_type="sync.failed", result="delivered") is None
    assert value(two, "rtarf_sync_webhook_deliveries_total", event_type="sync.failed", result="delivered") == 1.0
    # The database is down here: state gauges have no sample rather than a made-up value.
    assert value(one, "rtarf_sync_cursor_timestamp_seconds") is None
    assert value(one, "rtarf_sync_scheduler_running") == 0.0
    with pytest.raises(ValueError):
        metrics_of(first).webhook_delivered("sync.failed", "maybe")


def _record_verification(db: sa.Engine, table: str, index: str) -> None:
    """A verification row as the verify job stores it."""
    with db.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO rtarf_sync_verifications (target_table, source_index, checked_at, range_from, range_to, "
                "bucket, source_total, target_total, buckets_differing, in_step, result) VALUES (:t, :i, "
                "'2026-01-01T00:00:00Z', '2025-12-25T00:00:00Z', '2026-01-01T00:00:00Z', '1h', 32, 30, 1, false, '{}')"
            ),
            {"t": table, "i": index},
        )


def test_metrics_agree_with_status_and_history_and_survive_a_restart(
    opensearch: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    apps: list[Flask],
) -> None:
    opensearch.create_index(index_name)
    docs: dict[str, dict[str, Any]] = {f"e-{n}": make_event(n) for n in range(30)}
    docs.update({"no-ts-1": {"message": "x"}, "no-ts-2": {"message": "y"}})
    index_docs(opensearch, index_name, docs)
    opensearch.refresh(index_name)
    settings = make_settings(opensearch, index_name, RTARF_SYNC_BATCH_SIZE=10)
    apps.append(create_app(settings))
    first = apps[0]
    client = first.test_client()
    result = client.post("/scheduler/sync-now").get_json()["result"]
    assert (result["status"], result["inserted"], result["failed"], result["pages"]) == ("partial", 30, 2, 4)
    run = client.get(f"/scheduler/runs/{result['run_id']}").get_json()
    status = client.get("/scheduler/status").get_json()

    types, samples = scrape(first)
    assert {name: types.get(name) for name in DESIGN_SERIES} == DESIGN_SERIES
    assert value(samples, "rtarf_sync_runs_total", trigger="manual", mode="incremental", status="partial") == 1.0
    assert value(samples, "rtarf_sync_events_total", outcome="inserted") == run["inserted"] == 30
    assert value(samples, "rtarf_sync_events_total", outcome="failed") == run["failed"] == 2
    assert value(samples, "rtarf_sync_run_duration_seconds_count", mode="incremental") == 1.0
    assert value(samples, "rtarf_sync_page_seconds_count", stage="write") == run["pages"] == 4
    assert value(samples, "rtarf_sync_page_seconds_count", stage="read") == 4.0
    assert value(samples, "rtarf_sync_page_seconds_bucket", stage="read", le="+Inf") == 4.0
    assert value(samples, "process_cpu_seconds_total") is not None
    assert any(name == "python_info" for name, _ in samples)
    assert any(name == "python_gc_collections_total" for name, _ in samples)

    def state_matches(samples: Samples) -> None:
        finished = run["finished_at"]
        assert value(samples, "rtarf_sync_last_success_timestamp_seconds") == _epoch(finished)
        assert value(samples, "rtarf_sync_last_run_timestamp_seconds") == _epoch(finished)
        assert value(samples, "rtarf_sync_cursor_timestamp_seconds") == _epoch(run["cursor"])
        assert value(samples, "rtarf_sync_dead_letters_unresolved") == status["dead_letters_unresolved"] == 2
        assert value(samples, "rtarf_sync_lease_held") == 0.0
        assert value(samples, "rtarf_sync_in_progress") == 0.0

    state_matches(samples)
    assert status["total_syncs"] == 1 and status["last_sync_status"] == "partial"
    assert status["lag_seconds"] == pytest.approx(_epoch(status["last_sync_time"]) - _epoch(run["cursor"]), abs=60)
    assert value(samples, "rtarf_sync_verify_timestamp_seconds") is None  # never verified yet

    # A restarted process: nothing counted in memory, the lasting state straight from PostgreSQL.
    _record_verification(db_engine, table_name, index_name)
    apps.append(create_app(settings))
    _, restarted = scrape(apps[1])
    state_matches(restarted)
    assert value(restarted, "rtarf_sync_runs_total", trigger="manual", mode="incremental", status="partial") == 0.0
    assert value(restarted, "rtarf_sync_events_total", outcome="inserted") == 0.0
    assert (
        value(restarted, "rtarf_sync_verify_source_documents"),
        value(restarted, "rtarf_sync_verify_target_rows"),
        value(restarted, "rtarf_sync_verify_buckets_differing"),
    ) == (32.0, 30.0, 1.0)
    assert value(restarted, "rtarf_sync_verify_timestamp_seconds") == _epoch("2026-01-01T00:00:00+00:00")


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_scrapes_read_postgresql_once_per_cache_period(
    make_settings: Callable[..., Settings], apps: list[Flask]
) -> None:
    settings = make_settings(RTARF_ES_URL=f"http://127.0.0.1:{free_port()}", RTARF_SOURCE_ENGINE="elasticsearch")
    apps.append(create_app(settings))
    app = apps[0]
    scheduler = scheduler_of(app)
    scheduler.service.ensure_tables()
    statements: list[str] = []
    sa.event.listen(
        scheduler.service.engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: statements.append(statement),
    )
    now = [100.0]
    scheduler.stored_state.clock = lambda: now[0]
    client = app.test_client()
    for _ in range(25):
        assert client.get("/metrics").status_code == 200
        assert client.get("/scheduler/status").get_json()["dead_letters_unresolved"] == 0
    assert len(statements) == 1
    now[0] += CACHE_SECONDS - 0.01
    client.get("/metrics")
    assert len(statements) == 1
    now[0] += 0.02
    for _ in range(10):
        client.get("/metrics")
    assert len(statements) == 2
