"""Reading query parameters: a bad value answers 400 with the parameter's name in the body."""

from __future__ import annotations

from typing import Any, Sequence

from flask import Blueprint, Response, request
from werkzeug.exceptions import BadRequest, NotFound

from rtarf_sync.api.errors import error_response


MAX_ID = 2**63 - 1  # ids are bigint: a larger one cannot exist


class BadParameter(BadRequest):
    """A query parameter or body field has a value the route cannot use."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(description=f"{name}: {problem}")
        self.parameter = name


def _bad_parameter(error: BadParameter) -> tuple[Response, int]:
    return error_response(400, "Bad Request", error.description or "bad parameter", parameter=error.parameter)


def handle_bad_parameters(bp: Blueprint) -> None:
    """Answer BadParameter raised by the routes of `bp` with 400 naming the parameter."""
    bp.register_error_handler(BadParameter, _bad_parameter)


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
    return text or None


def path_id(text: str, what: str) -> int:
    """A numeric id from the URL path; anything else is a 404 like an unknown id."""
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_ID:
        raise NotFound(description=f"no {what} {text[:50]!r}")
    return int(text)


def json_object() -> dict[str, Any]:
    """The request's JSON body as an object; an absent or empty body is {}."""
    if not request.get_data(cache=True):
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadParameter("body", "must be a JSON object")
    return body
