"""What the record routes (runs, dead letters) share: reading query values and ids, and failing well.

A bad value answers 400 with the parameter's name in the body; PostgreSQL
unreachable answers 503 at once, as /readyz does, instead of an anonymous 500
after the sync's retries: monitoring must not hang on a GET.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

import sqlalchemy as sa
from flask import Blueprint, Response, request
from werkzeug.exceptions import BadRequest, NotFound

from rtarf_sync.api.errors import error_response
from rtarf_sync.engine.target.tables import is_missing_table
from rtarf_sync.service.extension import scheduler_of

T = TypeVar("T")


MAX_ID = 2**63 - 1  # ids are bigint: a larger one cannot exist


class BadParameter(BadRequest):
    """A query parameter or body field has a value the route cannot use."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(description=f"{name}: {problem}")
        self.parameter = name


def _bad_parameter(error: BadParameter) -> tuple[Response, int]:
    return error_response(400, "Bad Request", error.description or "bad parameter", parameter=error.parameter)


def _database_down(error: Exception) -> tuple[Response, int]:
    first = str(getattr(error, "orig", None) or error).strip().splitlines()
    return error_response(
        503, "Service Unavailable", f"PostgreSQL cannot be read: {first[0][:300] if first else type(error).__name__}"
    )


def handle_route_errors(bp: Blueprint) -> None:
    """On the routes of `bp`: BadParameter answers 400 naming the parameter, PostgreSQL down 503."""
    bp.register_error_handler(BadParameter, _bad_parameter)
    bp.register_error_handler(sa.exc.OperationalError, _database_down)  # lost or refused connections


def with_tables(read: Callable[[], T]) -> T:
    """Run a read; before the first run made the tables, make them (as a run would) and read again."""
    try:
        return read()
    except sa.exc.ProgrammingError as error:
        if not is_missing_table(error):
            raise
    scheduler_of().service.ensure_tables()
    return read()


def int_param(name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    """An integer query parameter from `low` to `high`, or `default` when absent or empty."""
    text = request.args.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        limits = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise BadParameter(name, f"must be an integer {limits}, not {text[:50]!r}")
    return value


def choice_param(name: str, choices: Sequence[str]) -> str | None:
    """A query parameter that must be one of `choices`; None when absent or empty."""
    text = request.args.get(name, "").strip()
    if not text:
        return None
    if text not in choices:
        raise BadParameter(name, f"must be one of {', '.join(choices)}, not {text[:50]!r}")
    return text


def text_param(name: str, max_length: int = 200) -> str | None:
    """A free-text query parameter, at most `max_length` characters; None when absent or empty."""
    text = request.args.get(name, "").strip()
    if len(text) > max_length:
        raise BadParameter(name, f"must be at most {max_length} characters")
    if "\x00" in text:  # PostgreSQL text cannot hold it: the query would fail with a 500
        raise BadParameter(name, "must not contain the NUL character")
    return text or None


def path_id(text: str, what: str) -> int:
    """A numeric id from the URL path; anything else is a 404 like an unknown id."""
    # The length first: int() refuses more than 4,300 digits with a ValueError (a 500).
    if len(text) > len(str(MAX_ID)) or not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_ID:
        raise NotFound(description=f"no {what} {text[:50]!r}")
    return int(text)


def json_object() -> dict[str, Any]:
    """The request's JSON body as an object; an absent or empty body is {}."""
    if not request.get_data(cache=True):
        return {}
    body = request.get_json(force=True, silent=True)  # api/safety/guards.py already refused other content types
    if not isinstance(body, dict):
        raise BadParameter("body", "must be a JSON object")
    return body
