"""What a request must be before any route sees it: from an allowed origin, with a small, sane JSON body.

One set of `before_request` hooks for the whole app, so a write route added
later cannot forget them. Reads (GET, HEAD, OPTIONS) pass untouched; every
other method must come from the service's own origin or one listed in
RTARF_CORS_ORIGINS (403), and its body, if any, must be `application/json`
(415), at most MAX_BODY_BYTES (413), valid JSON (400) and at most MAX_DEPTH
levels deep (400). Listed origins also get CORS headers (flask-cors).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, request
from flask_cors import CORS
from werkzeug.exceptions import BadRequest, Forbidden, RequestEntityTooLarge, UnsupportedMediaType

from config import Settings

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BODY_BYTES = 1024 * 1024
MAX_DEPTH = 32
CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "OPTIONS")
CORS_HEADERS = ("Authorization", "Content-Type")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def canonical_origin(scheme: str, netloc: str) -> str:
    """`scheme://host[:port]` in lower case, without the scheme's default port (as browsers send it)."""
    scheme, netloc = scheme.lower(), netloc.lower()
    host, colon, port = netloc.rpartition(":")
    if colon and not port.endswith("]") and port == _DEFAULT_PORTS.get(scheme):
        netloc = host
    return f"{scheme}://{netloc}"


def _header_origin(value: str) -> str | None:
    """The canonical form of an `Origin` header, or None when it is no http(s) origin (`null`, a path)."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.netloc or parts.path or parts.query:
        return None
    return canonical_origin(parts.scheme, parts.netloc)


def json_depth(value: Any, limit: int) -> int:
    """How deeply `value` nests arrays and objects, counting stops once past `limit` (no recursion)."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        level.extend((child, depth + 1) for child in children)
    return deepest


def _check_origin(allowed: frozenset[str]) -> None:
    """403 for a write sent by a page of another origin: any web page can make a browser POST here."""
    header = request.headers.get("Origin")
    if header is None:
        return  # not a browser, or a same-origin GET-like request: nothing to protect against
    origin = _header_origin(header)
    if origin is not None and (origin in allowed or origin == canonical_origin(request.scheme, request.host)):
        return
    raise Forbidden(
        description=f"requests from origin {header[:100]!r} are not allowed; list it in RTARF_CORS_ORIGINS to allow it"
    )


def _check_body() -> None:
    """413, 415 or 400 for a body a route must never parse; an absent or empty body passes."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        # Refused from the header alone: nothing of the body is read.
        raise RequestEntityTooLarge(description=f"the body may be at most {MAX_BODY_BYTES} bytes")
    data = request.get_data(cache=True)  # a chunked body is cut off at MAX_CONTENT_LENGTH (413)
    if not data.strip():
        return
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(description="the body must be JSON sent as 'Content-Type: application/json'")
    try:
        body = request.get_json()  # cached: the route's own get_json gets this value
    except BadRequest:
        raise BadRequest(description="body: not valid JSON") from None
    except RecursionError:  # past the parser's own limit, far above ours
        raise _too_deep() from None
    if json_depth(body, MAX_DEPTH) > MAX_DEPTH:
        raise _too_deep()


def _too_deep() -> BadRequest:
    return BadRequest(description=f"body: JSON nested more than {MAX_DEPTH} levels deep")


def init_app(app: Flask, settings: Settings) -> None:
    """Register the origin and body checks on `app`, and CORS headers for RTARF_CORS_ORIGINS."""
    allowed = frozenset(_header_origin(origin) or origin for origin in settings.cors_origins)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    if allowed:
        # Compiled exact patterns: flask-cors reads a plain string with "[" or "?" in it as a regex.
        CORS(
            app,
            origins=[re.compile(re.escape(origin) + r"\Z", re.IGNORECASE) for origin in sorted(allowed)],
            methods=list(CORS_METHODS),
            allow_headers=list(CORS_HEADERS),
            vary_header=True,
            max_age=600,
        )

    @app.before_request
    def guard_writes() -> None:
        if request.method in READ_METHODS:
            return None
        _check_origin(allowed)
        _check_body()
        return None
