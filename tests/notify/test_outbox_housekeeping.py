"""The outbox stays bounded: settled messages are pruned after RTARF_WEBHOOK_RETENTION_DAYS, drift bodies are capped.

Real PostgreSQL: messages are stored through the Outbox as the notifier
stores them, then aged by moving their timestamps back.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import sqlalchemy as sa

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.notify.events import MAX_DRIFT_BUCKETS
from rtarf_sync.notify.outbox import Outbox
from rtarf_sync.service import extension
from rtarf_sync.service.pruning import OutboxPruner
from tests.infra.harness.process import free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
URL = "http://127.0.0.1:9/hooks/never-called"


def _outbox(make_settings: Callable[..., Settings], **env: Any) -> tuple[Outbox, SyncService]:
    settings = make_settings(
        RTARF_WEBHOOK_URLS=URL, RTARF_WEBHOOK_SECRET=SECRET, RTARF_WEBHOOK_EVENTS="*", RTARF_SYNC_ENABLED="false", **env
    )
    service = SyncService(settings)
    service.ensure_tables()
    return Outbox(settings, lambda: service.engine), service


def _set(db_engine: sa.Engine, row_id: int, status: str, age_days: float) -> None:
    moment = datetime.now(timezone.utc) - timedelta(days=age_days)
    with db_engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE rtarf_sync_webhook_messages SET status = :status, created_at = :at, last_attempt_at = :at, "
                "delivered_at = CASE WHEN :status = 'delivered' THEN CAST(:at AS timestamptz) END WHERE id = :id"
            ),
            {"status": status, "at": moment, "id": row_id},
        )


def _left(db_engine: sa.Engine, table: str) -> set[int]:
    with db_engine.connect() as connection:
        return set(
            connection.execute(
                sa.text("SELECT id FROM rtarf_sync_webhook_messages WHERE target_table = :t"), {"t": table}
            ).scalars()
        )


def test_settled_messages_older_than_the_retention_are_pruned_and_waiting_ones_kept(
    make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    outbox, service = _outbox(make_settings, RTARF_WEBHOOK_RETENTION_DAYS="3")
    try:
        ids = [outbox.enqueue("sync.failed", {"run": {"run_id": n}})[0] for n in range(6)]
        cases = {
            ids[0]: ("delivered", 4),
            ids[1]: ("abandoned", 4),
            ids[2]: ("delivered", 2),
            ids[3]: ("failed", 40),
            ids[4]: ("pending", 40),
            ids[5]: ("abandoned", 2),
        }
        for row_id, (status, age) in cases.items():
            _set(db_engine, row_id, status, age)
        assert OutboxPruner(outbox, service.settings.webhooks.retention_days).prune() == 2
        assert _left(db_engine, service.settings.table) == set(ids[2:])  # still to send, or settled recently
    finally:
        service.close()


def test_the_app_prunes_the_outbox_after_a_run(make_settings: Callable[..., Settings], db_engine: sa.Engine) -> None:
    # The engine is a port with nothing behind it: the run fails at once, and is still a recorded run.
    outbox, service = _outbox(
        make_settings,
        RTARF_ES_URL=f"http://127.0.0.1:{free_port()}",
        RTARF_SOURCE_ENGINE="elasticsearch",
        RTARF_SYNC_MAX_RETRIES="0",
    )
    app = create_app(outbox.settings)
    try:
        (old,) = outbox.enqueue("sync.failed", {"run": {"run_id": 1}})
        _set(db_engine, old, "delivered", 8)  # default retention: 7 days
        (recent,) = outbox.enqueue("sync.failed", {"run": {"run_id": 2}})
        _set(db_engine, recent, "delivered", 6)
        assert app.test_client().post("/scheduler/sync-now").status_code >= 500
        assert old not in _left(db_engine, outbox.settings.table)
        assert recent in _left(db_engine, outbox.settings.table)
    finally:
        extension.shutdown(app)
        service.close()


def test_a_drift_body_lists_at_most_100_buckets_and_says_how_many_were_left_out(
    make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    outbox, service = _outbox(make_settings)
    buckets = [{"from": f"b{n}", "to": f"e{n}", "source": n, "target": 0} for n in range(250)]
    try:
        (big,) = outbox.enqueue("verify.drift", {"verify": {"in_step": False, "differing": buckets}})
        (small,) = outbox.enqueue("verify.drift", {"verify": {"in_step": False, "differing": buckets[:3]}})
        with db_engine.connect() as connection:
            bodies = dict(
                connection.execute(
                    sa.text("SELECT id, body FROM rtarf_sync_webhook_messages WHERE id IN (:a, :b)"),
                    {"a": big, "b": small},
                ).all()
            )
    finally:
        service.close()
    verify = json.loads(bodies[big])["data"]["verify"]
    assert verify["differing"] == buckets[:MAX_DRIFT_BUCKETS] and MAX_DRIFT_BUCKETS == 100
    assert verify["differing_total"] == 250 and verify["differing_truncated"] is True
    verify = json.loads(bodies[small])["data"]["verify"]
    assert len(verify["differing"]) == 3 and verify["differing_total"] == 3 and verify["differing_truncated"] is False
