"""What a webhook message says: its type, and its body as docs/design.md fixes it.

    {"type": "sync.failed", "timestamp": ISO,
     "data": {"table": ..., "source_index": ..., "pipeline": ..., "run": run object}}

`verify.drift` carries `"verify": result` instead of `"run"`, its `differing`
list cut to the first MAX_DRIFT_BUCKETS with `differing_total` and
`differing_truncated` saying what was left out (a receiver must not get a body
of thousands of buckets). The body is serialised once, when the message is
stored, so every retry sends (and signs) the same bytes.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from config import WEBHOOK_EVENTS
from rtarf_sync.engine.runs.result import FAILED, PARTIAL, SUCCESS, SyncResult, utc_iso

SYNC_SUCCEEDED, SYNC_PARTIAL, SYNC_FAILED = "sync.succeeded", "sync.partial", "sync.failed"
SYNC_RECOVERED, VERIFY_DRIFT = "sync.recovered", "verify.drift"
EVENT_TYPES = WEBHOOK_EVENTS
_BY_STATUS = {SUCCESS: SYNC_SUCCEEDED, PARTIAL: SYNC_PARTIAL, FAILED: SYNC_FAILED}
MAX_DRIFT_BUCKETS = 100


def sync_event_types(status: str, after_failure: bool) -> list[str]:
    """The events one finished run raises: its outcome, plus sync.recovered after a failure."""
    outcome = _BY_STATUS.get(status)
    if outcome is None:
        return []  # a skipped run did nothing anyone needs to hear about
    if status in (SUCCESS, PARTIAL) and after_failure:
        return [outcome, SYNC_RECOVERED]
    return [outcome]


def run_from_result(result: SyncResult) -> dict[str, Any]:
    """A run object for a run the history table could not record (the database was down)."""
    return {
        "run_id": result.run_id,
        "trigger": result.trigger,
        "mode": result.mode,
        "status": result.status,
        "owner": None,
        "started_at": utc_iso(result.started_at),
        "finished_at": utc_iso(result.finished_at),
        "duration_seconds": round(result.duration_seconds, 3),
        "pages": result.pages,
        "total_processed": result.total_processed,
        "inserted": result.inserted,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "failed": result.failed,
        "known_bad": result.known_bad,
        "deleted": result.deleted,
        "cursor": result.cursor,
        "error": result.error,
    }


def message_body(event_type: str, data: dict[str, Any], timestamp: datetime | None = None) -> str:
    """The exact JSON text sent (and signed) for one message."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    moment = timestamp or datetime.now(timezone.utc)
    if event_type == VERIFY_DRIFT and isinstance(data.get("verify"), dict):
        data = {**data, "verify": capped_drift(data["verify"])}
    return json.dumps(
        {"type": event_type, "timestamp": utc_iso(moment), "data": data}, separators=(",", ":"), default=str
    )


def capped_drift(verify: dict[str, Any]) -> dict[str, Any]:
    """A verification result with at most MAX_DRIFT_BUCKETS differing buckets, saying how many there were."""
    differing = list(verify.get("differing") or [])
    return {
        **verify,
        "differing": differing[:MAX_DRIFT_BUCKETS],
        "differing_total": len(differing),
        "differing_truncated": len(differing) > MAX_DRIFT_BUCKETS,
    }
