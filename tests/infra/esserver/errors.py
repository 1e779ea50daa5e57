"""Elasticsearch-shaped errors.

Every failure the server reports is an `EsError`; the HTTP layer turns it into
the JSON body Elasticsearch itself would send (`{"error": {...}, "status": n}`),
so clients raise the same exception classes they raise against a real node.
"""

from __future__ import annotations

from typing import Any


class EsError(Exception):
    """An error answered with an Elasticsearch error body."""

    def __init__(
        self,
        status: int,
        error_type: str,
        reason: str,
        *,
        root_cause: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {error_type}: {reason}")
        self.status = status
        self.error_type = error_type
        self.reason = reason
        self.extra = extra
        self.root_cause = root_cause

    def body(self) -> dict[str, Any]:
        """Return the JSON body Elasticsearch sends for this error."""
        error: dict[str, Any] = {"type": self.error_type, "reason": self.reason, **self.extra}
        cause = self.root_cause if self.root_cause is not None else [dict(error)]
        return {"error": {"root_cause": cause, **error}, "status": self.status}


class PlainError(EsError):
    """An error whose `error` is a bare string, as for unknown routes."""

    def body(self) -> dict[str, Any]:
        """Return `{"error": "<text>", "status": n}`."""
        return {"error": self.reason, "status": self.status}


def index_not_found(name: str) -> EsError:
    """Return the 404 Elasticsearch sends for a missing index."""
    error = EsError(404, "index_not_found_exception", f"no such index [{name}]")
    # Dotted keys cannot be keyword arguments.
    error.extra = {"resource.type": "index_or_alias", "resource.id": name, "index_uuid": "_na_", "index": name}
    return error


def parsing_error(reason: str) -> EsError:
    """Return a 400 `parsing_exception` (bad query or request shape)."""
    return EsError(400, "parsing_exception", reason, line=1, col=1)


def illegal_argument(reason: str) -> EsError:
    """Return a 400 `illegal_argument_exception`."""
    return EsError(400, "illegal_argument_exception", reason)


def validation_failed(*problems: str) -> EsError:
    """Return a 400 `action_request_validation_exception` listing problems."""
    listed = "".join(f"{n}: {p};" for n, p in enumerate(problems, start=1))
    return EsError(400, "action_request_validation_exception", f"Validation Failed: {listed}")


def x_content_parse(reason: str) -> EsError:
    """Return a 400 `x_content_parse_exception` for a body that is not JSON."""
    return EsError(400, "x_content_parse_exception", reason)


def shard_phase_failure(status: int, cause: dict[str, Any], index: str | None) -> EsError:
    """Return the `search_phase_execution_exception` wrapping a shard failure."""
    failed = {"shard": 0 if index else -1, "index": index, "reason": cause}
    return EsError(
        status,
        "search_phase_execution_exception",
        "all shards failed",
        root_cause=[cause],
        phase="query",
        grouped=True,
        failed_shards=[failed],
        caused_by=cause,
    )


def context_missing(context_number: int) -> EsError:
    """Return the 404 for an unknown or expired PIT or scroll."""
    cause = {
        "type": "search_context_missing_exception",
        "reason": f"No search context found for id [{context_number}]",
    }
    return shard_phase_failure(404, cause, None)


def query_shard_failure(reason: str, index: str, error_type: str = "query_shard_exception") -> EsError:
    """Return a 400 search failure caused by a bad request on the shard."""
    cause = {"type": error_type, "reason": reason, "index_uuid": "_na_", "index": index}
    return shard_phase_failure(400, cause, index)


def version_conflict(index: str, doc_id: str, reason: str) -> EsError:
    """Return a 409 `version_conflict_engine_exception`."""
    return EsError(
        409,
        "version_conflict_engine_exception",
        f"[{doc_id}]: version conflict, {reason}",
        index_uuid="_na_",
        shard="0",
        index=index,
    )


def document_parsing(index: str, doc_id: str, field: str, field_type: str, value: Any) -> EsError:
    """Return a 400 for a value its mapped field cannot hold."""
    return EsError(
        400,
        "document_parsing_exception",
        f"[1:1] failed to parse field [{field}] of type [{field_type}] in document "
        f"with id '{doc_id}'. Preview of field's value: '{value}'",
        index=index,
    )
