"""One exception tree, split by what the caller should do.

    RtarfSyncError
    ├── TransientError        retry the same call after a backoff
    │                         (HTTP 429/5xx, timeouts, dropped connections, shard
    │                         failures, lost PostgreSQL connections, deadlocks,
    │                         serialization failures)
    ├── DocumentRejected      set the document aside in the dead-letter table
    └── RunAborted            stop the run; the next run resumes from the stored cursor
        ├── SourceError       the engine refused the request for good
        │   └── PitUnsupported   the engine has no point in time: read with scroll
        ├── ContextExpired    the point in time or scroll expired mid-run
        ├── LeaseLost         another owner holds the lease now (fencing)
        └── RunInterrupted    shutdown was requested

Messages never contain secrets: the settings' secrets are scrubbed by
`redact()` before a message leaves the engine. Database errors are sorted here
too (`transient_database_error`, `is_data_error`).
"""

from __future__ import annotations

from typing import Iterable

import sqlalchemy as sa

# Serialization failure, deadlock, commit outcome unknown, lock timeout, statement timeout or
# cancel, server shutdown or restart, lost connection, too many connections, out of memory or
# disk. Everything else answered with an SQLSTATE (bad data, bad SQL, authorization,
# program limits) fails the same way again.
_TRANSIENT_SQLSTATES = {
    "40001",
    "40P01",
    "40003",
    "55P03",
    "57014",
    "57P01",
    "57P02",
    "57P03",
    "08000",
    "08001",
    "08003",
    "08004",
    "08006",
    "53100",
    "53200",
    "53300",
}


class RtarfSyncError(Exception):
    """Base of every error the sync engine raises on purpose."""


class TransientError(RtarfSyncError):
    """A failure that may pass: retry with backoff."""


class DocumentRejected(RtarfSyncError):
    """One document cannot be stored; the rest of its page still can."""


class RunAborted(RtarfSyncError):
    """The run cannot go on; committed pages stay, the next run resumes."""


class SourceError(RunAborted):
    """The search engine refused a request in a way retrying cannot fix."""


class PitUnsupported(SourceError):
    """The engine has no point-in-time API; fall back to scroll."""


class TooManyBuckets(SourceError):
    """An aggregation asked for more buckets than the engine answers (its search.max_buckets)."""


class ContextExpired(RunAborted):
    """The point in time or scroll context expired or is unknown."""


class LeaseLost(RunAborted):
    """Another owner took the lease; this owner must not commit."""


class RunInterrupted(RunAborted):
    """A graceful shutdown asked the run to stop between pages."""


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every non-empty secret value in `text` with asterisks."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def is_transient(error: sa.exc.DBAPIError) -> bool:
    """Lost connections, deadlocks and serialization failures pass; bad data does not."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is None:
        # No server answer to classify: connecting failed or the connection broke.
        return isinstance(error, sa.exc.OperationalError) or error.connection_invalidated
    return sqlstate in _TRANSIENT_SQLSTATES


def is_data_error(error: sa.exc.DBAPIError) -> bool:
    """A value or a constraint refused a row (SQLSTATE classes 22 and 23): that row can be set aside."""
    return str(getattr(error.orig, "sqlstate", "") or "")[:2] in ("22", "23")


def first_line(error: BaseException) -> str:
    """The first line of a (database) error's message, at most 300 characters, for logs and results."""
    text = str(getattr(error, "orig", None) or error)
    return text.strip().splitlines()[0][:300] if text.strip() else type(error).__name__


def transient_database_error(error: sa.exc.DBAPIError) -> TransientError | None:
    """The TransientError a database failure becomes when it may pass (retry it), else None."""
    return TransientError(f"PostgreSQL: {first_line(error)}") if is_transient(error) else None
