"""Two app instances on one database: the lease lets only one sync run at a time.

Each app has its own scheduler and its own process-local lock, exactly like
two gunicorn workers or two replicas, so only the PostgreSQL lease keeps them
apart. The test holds a lock on the target table so that A's run stays open
(holding the lease) for as long as the test needs.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.service.extension import scheduler_of
from tests.infra.harness.http import EngineHttp
from tests.infra.support import (
    count_rows,
    lease_holder,
    load_sample,
    prepare_tables,
    runs_of,
    target_locked,
    waiting_service_backends,
    wait_for,
)

EVENTS = 40


@pytest.fixture
def two_apps(
    opensearch: EngineHttp, index_name: str, make_settings: Callable[..., Settings]
) -> Iterator[tuple[Flask, Flask]]:
    """Apps A and B with identical settings: same index, same table, same database."""
    load_sample(opensearch, index_name, EVENTS)
    settings = make_settings(opensearch, index_name, RTARF_SYNC_BATCH_SIZE=5, RTARF_SYNC_INTERVAL_SECONDS=3600)
    prepare_tables(settings)
    first, second = create_app(settings), create_app(settings)
    yield first, second
    for app in (first, second):
        scheduler_of(app).shutdown(timeout=30)


def _post_in_thread(app: Flask, answers: dict[str, Any], key: str) -> threading.Thread:
    thread = threading.Thread(target=lambda: answers.update({key: app.test_client().post("/scheduler/sync-now")}))
    thread.start()
    return thread


def test_the_second_app_skips_while_the_first_holds_the_lease(
    two_apps: tuple[Flask, Flask], table_name: str, db_engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = two_apps
    answers: dict[str, Any] = {}
    with target_locked(db_engine, table_name):
        runner = _post_in_thread(first, answers, "a")
        holder = wait_for(lambda: lease_holder(db_engine, table_name), timeout=60, what="A to take the lease")
        other = _post_in_thread(second, answers, "b")
        # B either answers at once or queues behind A's lease row until A's page commits.
        wait_for(
            lambda: "b" in answers or waiting_service_backends(db_engine) >= 2, timeout=30, what="B to try the lease"
        )
    other.join(60)
    runner.join(60)

    response = answers["b"]
    assert response.status_code == 409
    body = response.get_json()
    assert body["result"]["status"] == "skipped"
    assert f"another sync holds the lease on {table_name} ({holder}" in body["message"]
    status = second.test_client().get("/scheduler/status").get_json()
    assert (status["skipped_syncs"], status["total_syncs"]) == (1, 0)
    assert status["last_skip_reason"].startswith("another sync holds the lease")
    assert any(
        record.getMessage().startswith("Sync skipped: another sync holds the lease") for record in caplog.records
    )

    assert answers["a"].status_code == 200
    assert answers["a"].get_json()["result"]["inserted"] == EVENTS
    assert count_rows(db_engine, table_name) == EVENTS
    assert [run["status"] for run in runs_of(db_engine, table_name)] == ["success"]
    # Once A released the lease, B can run: it finds everything already there.
    after = second.test_client().post("/scheduler/sync-now")
    assert after.status_code == 200
    assert after.get_json()["result"]["inserted"] == 0


def test_two_schedulers_started_together_never_overlap(
    two_apps: tuple[Flask, Flask], table_name: str, db_engine: sa.Engine
) -> None:
    first, second = two_apps
    with target_locked(db_engine, table_name):
        scheduler_of(first).start()
        wait_for(lambda: lease_holder(db_engine, table_name), timeout=60, what="A's first run to take the lease")
        scheduler_of(second).start()
        wait_for(
            lambda: scheduler_of(second).get_status()["skipped_syncs"] == 1 or waiting_service_backends(db_engine) >= 2,
            timeout=30,
            what="B's first run to try the lease",
        )

    def settled() -> bool:
        statuses = [scheduler_of(app).get_status() for app in (first, second)]
        return sum(s["total_syncs"] + s["skipped_syncs"] for s in statuses) == 2

    wait_for(settled, timeout=60, what="both first runs to end")
    a, b = (scheduler_of(app).get_status() for app in (first, second))
    assert (a["total_syncs"], a["skipped_syncs"], a["last_sync_status"]) == (1, 0, "success")
    assert (b["total_syncs"], b["skipped_syncs"]) == (0, 1)
    assert count_rows(db_engine, table_name) == EVENTS
    assert len(runs_of(db_engine, table_name)) == 1
