"""What the caller sent never comes back in an error answer, so no answer can confirm a guessed secret.

The Redactor masks every secret in every body. Were an error to echo a value
the caller sent, a guess equal to a password would come back as `***` and a
wrong guess verbatim: an oracle. So before the secrets are masked, every value
of the request (path values, query values, JSON scalars, and keys that are not
shaped like this API's field names) is replaced in an error body by ECHO,
whatever it is: right and wrong guesses get the same answer, and a route that
echoes a value by mistake leaks nothing. Keys shaped like field names (`mode`,
`from`, `limit`) stay, so a 400 can still name the field it refuses.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any, Iterator

from flask import Request

ECHO = "(value given)"
_MAX_VALUES = 2000  # a pathological body is cut short: the Redactor still runs after this
_WORD = re.compile(r"\w")
FIELD_NAME = re.compile(r"[a-z][a-z_]{0,19}")  # how this API names fields: no digits, short, lower case


def request_values(request: Request) -> set[str]:
    """Every string the caller chose: path values, query values, JSON scalars, and keys not shaped like names."""
    if request.url_rule is None:  # no route matched: every segment of the path is the caller's
        values = {segment for segment in request.path.split("/") if segment}
    else:
        values = {str(value) for value in (request.view_args or {}).values()}
    for key, items in request.args.lists():
        values.update(items)
        if not FIELD_NAME.fullmatch(key):
            values.add(key)
    # Only a body the route already read: one it never read cannot be echoed, and reading it here could wait
    # on a slow client or a body over the size limit.
    body = getattr(request, "_cached_data", None)
    if body:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser (the guards refused it)
            document = None
        values.update(_json_strings(document))
    return {value for value in values if value.strip()}


def _json_strings(document: Any) -> Iterator[str]:
    stack, seen = [document], 0
    while stack and seen < _MAX_VALUES:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            yield from (key for key in item if isinstance(key, str) and not FIELD_NAME.fullmatch(key))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            yield item
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            yield json.dumps(item)


def _forms(value: str) -> set[str]:
    """How a value can appear in a body: as sent, stripped, as Python's repr shows it; raw, JSON- or HTML-escaped."""
    shown = {value, value.strip(), repr(value)[1:-1]}
    return {form for text in shown for form in (text, json.dumps(text)[1:-1], html.escape(text)) if form}


def mask_echoes(text: str, values: set[str]) -> str:
    """`text` with every appearance of a request value, as a whole token, replaced by ECHO."""
    for form in sorted({form for value in values for form in _forms(value)}, key=len, reverse=True):
        start = r"(?<!\w)" if _WORD.match(form[0]) else ""
        end = r"(?!\w)" if _WORD.match(form[-1]) else ""
        text = re.sub(start + re.escape(form) + end, ECHO.replace("\\", r"\\"), text)
    return text
