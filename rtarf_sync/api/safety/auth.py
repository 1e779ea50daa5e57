"""Bearer-token check for every mutating request (POST, PUT, DELETE, ...) when RTARF_API_TOKEN is set.

It is one `before_request` hook on the whole app rather than a decorator per
route, so a POST or PUT route added later (PUT /scheduler/cursor) cannot
forget it; GET, HEAD and OPTIONS stay open for monitoring, except the reads
listed in GUARDED_READS, which return event data (a dead letter's raw document).
"""

from __future__ import annotations

import hmac
import logging

from flask import Flask, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from config import Secret

logger = logging.getLogger(__name__)

OPEN_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GUARDED_READS = frozenset({"dead_letters.dead_letter"})  # endpoints that need the token for GET too
_CHALLENGE = WWWAuthenticate("bearer", {"realm": "rtarf-sync"})


def token_matches(header: str | None, expected: bytes) -> bool:
    """True when `header` is `Bearer <token>` with exactly the expected token (constant time)."""
    if not header:
        return False
    scheme, _, supplied = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    try:
        supplied_bytes = supplied.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(supplied_bytes, expected)


def init_app(app: Flask, token: Secret | None) -> None:
    """Require the bearer token on every non-GET request of `app`, or warn that the API is open."""
    if token is None:
        logger.warning("RTARF_API_TOKEN is not set: POST and PUT /scheduler/* can be called without a token")
        return
    expected = token.reveal().encode("ascii")

    @app.before_request
    def require_token() -> None:
        if request.method in OPEN_METHODS and request.endpoint not in GUARDED_READS:
            return None
        if not token_matches(request.headers.get("Authorization"), expected):
            raise Unauthorized(
                description="a valid 'Authorization: Bearer <token>' header is required", www_authenticate=_CHALLENGE
            )
        return None
