"""What one sync run did, as returned by `SyncService.run()`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import sqlalchemy as sa

from rtarf_sync.engine.errors import RtarfSyncError, redact


def utc_iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC, or None: how every time leaves the service."""
    return None if moment is None else moment.astimezone(timezone.utc).isoformat()


SUCCESS = "success"
PARTIAL = "partial"
FAILED = "failed"
SKIPPED = "skipped"


@dataclass
class SyncResult:
    """Counts and outcome of one run; `to_dict()` is what the API and CLI print."""

    status: str = SUCCESS
    mode: str = "incremental"
    total_processed: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    known_bad: int = 0
    deleted: int = 0
    pages: int = 0
    duration_seconds: float = 0.0
    cursor: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    run_id: int | None = None
    trigger: str = "manual"
    engine: str | None = None
    read_mode: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    reopens: int = 0  # points in time reopened by the read (not printed: the warnings say it)

    @property
    def ok(self) -> bool:
        """True when the run finished (success or partial)."""
        return self.status in (SUCCESS, PARTIAL)

    def reopened(self, note: str) -> None:
        """Note a reopened point in time (a document may be read twice from then on)."""
        self.reopens += 1
        self.warnings.append(note)

    def add(self, inserted: int, updated: int, unchanged: int, failed: int, known_bad: int) -> None:
        """Fold one committed page's counts into the run's totals."""
        self.inserted += inserted
        self.updated += updated
        self.unchanged += unchanged
        self.failed += failed
        self.known_bad += known_bad
        self.total_processed += inserted + updated + unchanged + failed + known_bad
        self.pages += 1

    def fail(self, error: BaseException, secrets: Iterable[str | None]) -> None:
        """Mark the run failed by `error`, with a message that names what failed and holds no secret.

        Our own errors carry their message; a PostgreSQL error its first line; anything else (a
        bug) its type and text, and the caller logs its traceback.
        """
        if isinstance(error, RtarfSyncError):
            message = str(error)
        elif isinstance(error, sa.exc.DBAPIError):
            message = f"PostgreSQL: {str(error.orig or error).strip().splitlines()[0]}"
        else:
            message = f"{type(error).__name__}: {error}"
        self.status = FAILED
        self.error = redact(message, secrets)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view with ISO-8601 times."""
        data = asdict(self)
        del data["reopens"]
        for key in ("started_at", "finished_at"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        data["duration_seconds"] = round(self.duration_seconds, 3)
        return data
