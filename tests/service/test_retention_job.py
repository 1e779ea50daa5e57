"""Retention in the service: its own job, POST /scheduler/retention, the metric and the `retention.dropped` webhook."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.engine.runs.records import RunHistory
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.engine.target.tables import build_tables, create_tables
from rtarf_sync.notify import Notifier
from rtarf_sync.service import extension
from rtarf_sync.service.scheduler import pipeline_job_id
from tests.engine.runs.test_retention import _days_ago, retention_settings, stored_days
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import index_docs, rows
from tests.infra.support import wait_for
from tests.infra.webhook_receiver import WebhookReceiver, body_of

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A receiver that verifies with the test secret."""
    hook = WebhookReceiver(SECRET).start()
    yield hook
    hook.stop()


def test_post_retention_drops_counts_and_announces(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
    receiver: WebhookReceiver,
) -> None:
    engine.create_index(index_name)
    index_docs(
        engine, index_name, {f"a{age}": {"@timestamp": f"{_days_ago(age).date()}T06:00:00Z"} for age in (10, 9, 1)}
    )
    engine.refresh(index_name)
    settings: Settings = retention_settings(
        make_settings,
        engine,
        index_name,
        RTARF_SYNC_ENABLED="false",
        RTARF_WEBHOOK_URLS=receiver.url(),
        RTARF_WEBHOOK_SECRET=SECRET,
        RTARF_WEBHOOK_EVENTS="retention.dropped",
        RTARF_SYNC_OVERLAP_SECONDS=86400 * 3650,
    )
    # Loaded before retention applied: the old events are in the table when retention is asked.
    loader = create_app(dataclasses.replace(settings, retention_days=None))
    assert loader.test_client().post("/scheduler/sync-now").status_code == 200
    extension.shutdown(loader, timeout=5)
    assert stored_days(db_engine, table_name) == {10: 1, 9: 1, 1: 1}

    app: Flask = create_app(settings)
    extension.start(app)  # the delivery thread only: the interval job is disabled
    try:
        client = app.test_client()
        jobs = {job["id"] for job in client.get("/scheduler/jobs").get_json()["jobs"]}
        assert "rtarf_retention" in jobs and pipeline_job_id("rtarf_retention", "alerts") == "rtarf_retention.alerts"

        answer = client.post("/scheduler/retention")
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        assert body == {
            "dropped": [{"from": _days_ago(10).isoformat(), "to": _days_ago(9).isoformat(), "rows": 1}],
            "kept_for_hold": [{"from": _days_ago(9).isoformat(), "to": _days_ago(8).isoformat()}],
        }
        assert stored_days(db_engine, table_name) == {9: 1, 1: 1}
        metrics = client.get("/metrics").get_data(as_text=True)
        assert "rtarf_sync_retention_dropped_partitions_total 1.0" in metrics
        assert "rtarf_sync_retention_dropped_rows_total 1.0" in metrics
        runs = client.get("/scheduler/runs?mode=retention").get_json()
        assert [(run["mode"], run["deleted"]) for run in runs["runs"]] == [("retention", 1)]

        accepted = wait_for(receiver.accepted, what="the retention.dropped message")
        message = body_of(accepted[0])
        assert message["type"] == "retention.dropped"
        assert message["data"]["retention"]["dropped"] == body["dropped"]
    finally:
        extension.shutdown(app, timeout=5)


def test_the_retention_job_runs_when_the_scheduler_starts(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
) -> None:
    engine.create_index(index_name)
    index_docs(engine, index_name, {f"a{age}": {"@timestamp": f"{_days_ago(age).date()}T06:00:00Z"} for age in (10, 1)})
    engine.refresh(index_name)
    settings = retention_settings(make_settings, engine, index_name, RTARF_SYNC_OVERLAP_SECONDS=86400 * 3650)
    loader = create_app(dataclasses.replace(settings, retention_days=None))
    assert loader.test_client().post("/scheduler/sync-now").status_code == 200
    extension.shutdown(loader, timeout=5)

    app = create_app(settings, start_scheduler=True)  # the sync job, then the retention job, at once
    try:
        wait_for(lambda: stored_days(db_engine, table_name) == {1: 1}, what="the start-up retention pass")
    finally:
        extension.shutdown(app, timeout=5)


def test_a_retention_run_between_a_failed_and_a_good_sync_does_not_hide_the_recovery(
    db_engine: sa.Engine, table_name: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        RTARF_WEBHOOK_URLS="http://127.0.0.1:9/hook", RTARF_WEBHOOK_SECRET=SECRET, RTARF_WEBHOOK_EVENTS="*"
    )
    tables = build_tables(table_name)
    create_tables(db_engine, tables)
    history = RunHistory(db_engine, tables, settings.es_index)

    def finished(status: str, mode: str) -> SyncResult:
        result = SyncResult(status=status, mode=mode, trigger="scheduled", started_at=datetime.now(timezone.utc))
        result.run_id = history.start("scheduled", "owner", datetime.now(timezone.utc), mode)
        history.finish(result)
        return result

    finished("failed", "incremental")
    finished("success", "retention")
    good = finished("success", "incremental")
    notifier = Notifier(settings, lambda: db_engine, history.get)
    notifier.on_result(good)
    notifier.close()  # stores what is queued
    stored = rows(db_engine, "SELECT event_type FROM rtarf_sync_webhook_messages WHERE target_table = :t", t=table_name)
    assert sorted(row.event_type for row in stored) == ["sync.recovered", "sync.succeeded"]
