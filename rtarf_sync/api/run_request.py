"""The optional JSON body of `POST /scheduler/sync-now`: which run to start.

    {}                                                   an incremental run, as without a body
    {"mode": "full", "force": false}                     every document, deletes reconciled
    {"mode": "range", "from": ISO, "to": ISO}            [from, to) by the cursor field

A bad body raises BadRunRequest naming the field; the route answers 400 and
runs nothing. Times need a time zone (`Z` or `+07:00`), see plan.parse_bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rtarf_sync.engine.runs.plan import INCREMENTAL, MODES, RANGE, parse_bound

FIELDS = ("mode", "from", "to", "force")


class BadRunRequest(ValueError):
    """The body cannot describe a run; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RunRequest:
    """What SyncService.run is asked to do."""

    mode: str = INCREMENTAL
    start: datetime | None = None
    end: datetime | None = None
    force: bool = False

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `scheduler.sync_now` and `SyncService.run`."""
        return {"mode": self.mode, "start": self.start, "end": self.end, "force": self.force}


def parse_time(field: str, value: Any) -> datetime:
    """An ISO-8601 instant with a time zone, or BadRunRequest naming `field`."""
    if not isinstance(value, str):
        raise BadRunRequest(field, f"{field} must be an ISO-8601 string, got {type(value).__name__}")
    try:
        return parse_bound(value)
    except ValueError as error:
        raise BadRunRequest(field, f"{field}: {error}") from None


def parse_run_request(body: Any) -> RunRequest:
    """Read the body (None for no body); raise BadRunRequest naming the bad field."""
    if body is None:
        return RunRequest()
    if not isinstance(body, dict):
        raise BadRunRequest("body", "the body must be a JSON object")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRunRequest(unknown[0], f"unknown field {unknown[0]!r}; expected {', '.join(FIELDS)}")
    mode = body.get("mode", INCREMENTAL)
    if mode not in MODES:
        raise BadRunRequest("mode", f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise BadRunRequest("force", f"force must be true or false, got {force!r}")
    if mode != RANGE:
        for field in ("from", "to"):
            if body.get(field) is not None:
                raise BadRunRequest(field, f'{field} is only taken by a range run ("mode": "range")')
        return RunRequest(mode, force=force)
    for field in ("from", "to"):
        if body.get(field) is None:
            raise BadRunRequest(field, f"a range run needs {field}")
    start, end = parse_time("from", body["from"]), parse_time("to", body["to"])
    if start >= end:
        raise BadRunRequest("from", f"from ({body['from']}) must be before to ({body['to']})")
    return RunRequest(mode, start, end, force)
