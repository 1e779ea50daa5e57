"""Webhook endpoints as the service shows and stores them: masked URL and a key without credentials.

The outbox never stores a URL's user name, password or query string, nor the
secret. An endpoint is known by `endpoint_key`, a hash of its URL without
user info, and the real URL is looked up in the settings when a message is sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from config import Secret, WebhookSettings

MASK = "***"


def mask_endpoint(url: str) -> str:
    """The URL for logs, errors and the delivery log: user info and query string replaced by ***."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{MASK}@{host}" if "@" in parts.netloc else host
    return urlunsplit((parts.scheme, netloc, parts.path, MASK if parts.query else "", ""))


def endpoint_key(url: str) -> str:
    """A stable key for an endpoint: SHA-256 of the URL without user info (so no credential is derivable)."""
    parts = urlsplit(url)
    bare = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, ""))
    return hashlib.sha256(bare.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Endpoint:
    """One configured receiver: the secret URL, its key and its masked form."""

    url: Secret
    key: str
    masked: str


def configured_endpoints(settings: WebhookSettings) -> list[Endpoint]:
    """The endpoints of RTARF_WEBHOOK_URLS, in order, one per distinct key."""
    seen: dict[str, Endpoint] = {}
    for url in settings.urls:
        value = url.reveal()
        seen.setdefault(endpoint_key(value), Endpoint(url, endpoint_key(value), mask_endpoint(value)))
    return list(seen.values())
