"""The durable webhook outbox in PostgreSQL: store, claim, settle, show.

Life of a row (one message for one endpoint):

    pending --claim--> (attempt) --2xx--> delivered
       ^                   |------410--> abandoned (and the endpoint is disabled)
       |                   `--other--> failed --(next_attempt_at due)--> claim again ...
       |                                   `--max attempts reached--> abandoned

A claim is a short transaction: it picks due rows with FOR UPDATE SKIP LOCKED,
counts the attempt and pushes `next_attempt_at` past the attempt's timeout, then
commits. So several replicas never send the same row at once, no transaction
stays open while a receiver thinks, and a sender that dies mid-attempt leaves a
row that another picks up once the claim runs out. Settling an attempt is fenced
by the attempt number, so a stale sender cannot overwrite a newer outcome.
Times come from PostgreSQL's clock, the one all replicas share.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.runs.result import utc_iso
from rtarf_sync.notify.endpoints import Endpoint, configured_endpoints, shown_url
from rtarf_sync.notify.events import message_body

MESSAGES_TABLE = "rtarf_sync_webhook_messages"
ENDPOINTS_TABLE = "rtarf_sync_webhook_endpoints"
DELIVERY_FIELDS = (
    "id",
    "message_id",
    "event_type",
    "url",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "created_at",
    "last_attempt_at",
    "next_attempt_at",
    "delivered_at",
)


@dataclass(frozen=True)
class Claimed:
    """One attempt this process may make: the row, its body and which attempt it is."""

    id: int
    message_id: str
    event_type: str
    endpoint_key: str
    url_masked: str
    body: str
    attempts: int


class Outbox:
    """Messages of one target table; `enqueue` is what other features call to send a webhook."""

    def __init__(self, settings: Settings, engine: Callable[[], sa.Engine]) -> None:
        self.settings = settings
        self.target = settings.table
        self._engine = engine  # the sync service's engine, built on first use

    @property
    def engine(self) -> sa.Engine:
        """The database engine (shared with the sync service)."""
        return self._engine()

    def wanted(self, event_type: str) -> bool:
        """True when RTARF_WEBHOOK_EVENTS asks for this event and an endpoint is configured."""
        hooks = self.settings.webhooks
        return bool(hooks.urls) and event_type in hooks.events

    def enqueue(self, event_type: str, data: dict[str, Any]) -> list[int]:
        """Store one message for every configured endpoint; return the row ids (none if not wanted).

        `data` is the message's "data" object without "table", "source_index" and "pipeline", which are added:
        `enqueue("verify.drift", {"verify": result})`. Rows for a disabled endpoint are stored as
        abandoned, so the delivery log shows what was not sent and why.
        """
        if not self.wanted(event_type):
            return []
        own = {"table": self.target, "source_index": self.settings.es_index, "pipeline": self.settings.pipeline}
        body = message_body(event_type, {**own, **data})
        message_id = f"msg_{uuid.uuid4().hex}"
        with self.engine.begin() as connection:
            disabled = self._disabled(connection)
            rows = [
                self._row(message_id, event_type, endpoint, body, disabled)
                for endpoint in configured_endpoints(self.settings.webhooks)
            ]
            return [
                int(
                    connection.execute(
                        sa.text(
                            f"INSERT INTO {MESSAGES_TABLE} (target_table, message_id, event_type, endpoint_key, "
                            "url_masked, body, status, last_error) "
                            "VALUES (:target_table, :message_id, :event_type, :endpoint_key, "
                            ":url_masked, :body, :status, :last_error) RETURNING id"
                        ),
                        row,
                    ).scalar_one()
                )
                for row in rows
            ]

    def _row(
        self, message_id: str, event_type: str, endpoint: Endpoint, body: str, disabled: dict[str, str]
    ) -> dict[str, Any]:
        reason = disabled.get(endpoint.key)
        return {
            "target_table": self.target,
            "message_id": message_id,
            "event_type": event_type,
            "endpoint_key": endpoint.key,
            "url_masked": endpoint.masked,
            "body": body,
            "status": "abandoned" if reason else "pending",
            "last_error": f"endpoint disabled: {reason}" if reason else None,
        }

    def claim(self, claim_seconds: float) -> Claimed | None:
        """Take the next due message for an attempt, or None; no other replica gets it meanwhile."""
        with self.engine.begin() as connection:
            row = (
                connection.execute(
                    sa.text(
                        f"UPDATE {MESSAGES_TABLE} m SET attempts = m.attempts + 1, last_attempt_at = now(), "
                        "next_attempt_at = now() + make_interval(secs => :claim) "
                        f"WHERE m.id = (SELECT id FROM {MESSAGES_TABLE} WHERE target_table = :target "
                        "AND status IN ('pending', 'failed') AND next_attempt_at <= now() "
                        "ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                        "RETURNING m.id, m.message_id, m.event_type, m.endpoint_key, m.url_masked, m.body, m.attempts"
                    ),
                    {"claim": claim_seconds, "target": self.target},
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return Claimed(
            **{**row, "url_masked": shown_url(row["url_masked"], row["endpoint_key"], self.settings.webhooks)}
        )

    def settle(
        self, claimed: Claimed, status: str, status_code: int | None, error: str | None, retry_in: float | None = None
    ) -> bool:
        """Record an attempt's outcome; False if another sender has since taken the row over."""
        next_at = "now() + make_interval(secs => :retry_in)" if retry_in is not None else "next_attempt_at"
        with self.engine.begin() as connection:
            return (
                connection.execute(
                    sa.text(
                        f"UPDATE {MESSAGES_TABLE} SET status = :status, last_status_code = :code, last_error = :error, "
                        f"next_attempt_at = {next_at}, "
                        "delivered_at = CASE WHEN :status = 'delivered' THEN now() ELSE delivered_at END "
                        "WHERE id = :id AND attempts = :attempts AND status IN ('pending', 'failed')"
                    ),
                    {
                        "status": status,
                        "code": status_code,
                        "error": error,
                        "retry_in": retry_in or 0,
                        "id": claimed.id,
                        "attempts": claimed.attempts,
                    },
                ).rowcount
                == 1
            )

    def disable(self, claimed: Claimed, reason: str) -> int:
        """Stop sending to an endpoint (it answered 410 Gone); abandon its waiting messages; return how many."""
        with self.engine.begin() as connection:
            connection.execute(
                sa.text(
                    f"INSERT INTO {ENDPOINTS_TABLE} (target_table, endpoint_key, url_masked, reason) "
                    "VALUES (:target, :key, :url, :reason) ON CONFLICT DO NOTHING"
                ),
                {"target": self.target, "key": claimed.endpoint_key, "url": claimed.url_masked, "reason": reason},
            )
            return connection.execute(
                sa.text(
                    f"UPDATE {MESSAGES_TABLE} SET status = 'abandoned', last_error = :error "
                    "WHERE target_table = :target AND endpoint_key = :key AND status IN ('pending', 'failed') "
                    "AND id <> :id"
                ),
                {
                    "error": f"endpoint disabled: {reason}",
                    "target": self.target,
                    "key": claimed.endpoint_key,
                    "id": claimed.id,
                },
            ).rowcount

    def disabled(self) -> dict[str, str]:
        """Disabled endpoints of this target: endpoint key -> reason."""
        with self.engine.connect() as connection:
            return self._disabled(connection)

    def _disabled(self, connection: sa.Connection) -> dict[str, str]:
        rows = connection.execute(
            sa.text(f"SELECT endpoint_key, reason FROM {ENDPOINTS_TABLE} WHERE target_table = :target"),
            {"target": self.target},
        )
        return {row.endpoint_key: row.reason for row in rows}

    def seconds_to_next(self) -> float | None:
        """Seconds until the earliest waiting message is due (0 if one is due), or None if none waits."""
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.text(
                    f"SELECT GREATEST(0, EXTRACT(EPOCH FROM min(next_attempt_at) - now())) FROM {MESSAGES_TABLE} "
                    "WHERE target_table = :target AND status IN ('pending', 'failed')"
                ),
                {"target": self.target},
            ).scalar()
        return None if value is None else float(value)

    def prune(self, days: int) -> int:
        """Delete this target's delivered and abandoned messages settled more than `days` ago; return how many."""
        with self.engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL lock_timeout = '2s'")  # housekeeping never holds up a claim
            return int(
                connection.execute(
                    sa.text(
                        f"DELETE FROM {MESSAGES_TABLE} WHERE target_table = :target "
                        "AND status IN ('delivered', 'abandoned') "
                        "AND COALESCE(delivered_at, last_attempt_at, created_at) < now() - make_interval(days => :days)"
                    ),
                    {"target": self.target, "days": days},
                ).rowcount
            )

    def deliveries(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest messages of this target, newest first, as GET /scheduler/webhooks shows them."""
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    sa.text(
                        f"SELECT * FROM {MESSAGES_TABLE} WHERE target_table = :target ORDER BY id DESC LIMIT :limit"
                    ),
                    {"target": self.target, "limit": limit},
                )
                .mappings()
                .all()
            )
        return [_delivery(row, self.settings) for row in rows]


def _delivery(row: Any, settings: Settings) -> dict[str, Any]:
    status_code = row["last_status_code"]
    return {
        "id": int(row["id"]),
        "message_id": row["message_id"],
        "event_type": row["event_type"],
        "url": shown_url(row["url_masked"], row["endpoint_key"], settings.webhooks),
        "status": row["status"],
        "attempts": int(row["attempts"]),
        "last_status_code": int(status_code) if status_code is not None else None,
        "last_error": row["last_error"],
        "created_at": utc_iso(row["created_at"]),
        "last_attempt_at": utc_iso(row["last_attempt_at"]),
        "next_attempt_at": utc_iso(row["next_attempt_at"]) if row["status"] in ("pending", "failed") else None,
        "delivered_at": utc_iso(row["delivered_at"]),
    }
