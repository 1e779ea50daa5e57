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
`redact()` before a message leaves the engine.
"""

from __future__ import annotations

from typing import Iterable


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
