"""Webhook endpoints as the service shows and stores them: masked URL and a key without credentials.

A shown URL keeps scheme, host and port only (`https://hooks.example.com/…#3f9a1c`):
chat webhooks carry their secret in the path. The tag after `#` tells apart
endpoints that differ only in path or query; it is keyed with the webhook
secret, so it says nothing of the path to anyone without that secret. The
outbox never stores a URL's user name, password, path or query string, nor the
secret. An endpoint is known by `endpoint_key`, a hash of its URL without user
info, and the real URL is looked up in the settings when a message is sent.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from config import Secret, WebhookSettings

HIDDEN = "…"


def endpoint_tag(key: str, secret: Secret | None) -> str:
    """Six hex digits that tell endpoints apart: an HMAC of the endpoint key under the webhook secret."""
    signing_key = secret.reveal().encode() if secret is not None else b""
    return hmac.new(signing_key, key.encode(), hashlib.sha256).hexdigest()[:6]


def mask_endpoint(url: str, tag: str | None = None) -> str:
    """The one shown form of a webhook URL: scheme, host and port, then `…#tag` if it has a path or query."""
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/"
    if parts.path in ("", "/") and not parts.query:
        return shown
    return f"{shown}{HIDDEN}#{tag}" if tag else f"{shown}{HIDDEN}"


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
        key = endpoint_key(value)
        seen.setdefault(key, Endpoint(url, key, mask_endpoint(value, endpoint_tag(key, settings.secret))))
    return list(seen.values())


def shown_url(stored: str, key: str, settings: WebhookSettings) -> str:
    """The shown form of a URL stored by the outbox (older rows kept the path: masked again here)."""
    return mask_endpoint(stored, endpoint_tag(key, settings.secret))
