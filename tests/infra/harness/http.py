"""A tiny JSON-over-HTTP client for test set-up against either engine.

Tests load data and refresh indices through this, so set-up never depends on
the code under test.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

_NDJSON = "application/x-ndjson"


class EngineHttp:
    """Plain REST calls to an Elasticsearch-protocol engine at `url`."""

    def __init__(self, url: str, kind: str) -> None:
        self.url = url.rstrip("/")
        self.kind = kind

    def call(self, method: str, path: str, body: Any = None, *, ok_missing: bool = False) -> dict[str, Any]:
        """Send one request and decode the JSON answer; raise on HTTP errors."""
        data, content_type = None, "application/json"
        if isinstance(body, str):
            data, content_type = body.encode(), _NDJSON
        elif body is not None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:  # loopback only
                text = response.read()
        except urllib.error.HTTPError as error:
            if ok_missing and error.code == 404:
                return {}
            raise RuntimeError(f"{method} {path} -> {error.code}: {error.read()[:500]!r}") from None
        return json.loads(text) if text else {}

    def bulk(self, payload: str) -> dict[str, Any]:
        """POST an NDJSON body to `_bulk`."""
        return self.call("POST", "/_bulk", payload)

    def create_index(
        self, index: str, cursor_field: str = "@timestamp", shards: int = 1, cursor_type: str = "date"
    ) -> None:
        """Create an index with a date (or `cursor_type`) mapping for the cursor field and no automatic refresh."""
        properties: dict[str, Any] = {}
        node = properties
        parts = cursor_field.split(".")
        for part in parts[:-1]:
            node[part] = {"properties": {}}
            node = node[part]["properties"]
        node[parts[-1]] = {"type": cursor_type}
        self.call(
            "PUT",
            f"/{index}",
            {
                "settings": {"number_of_shards": shards, "number_of_replicas": 0, "refresh_interval": "-1"},
                "mappings": {"properties": properties},
            },
        )

    def refresh(self, index: str) -> None:
        """Make every write so far searchable."""
        self.call("POST", f"/{index}/_refresh")

    def delete_index(self, index: str) -> None:
        """Delete an index if it exists."""
        self.call("DELETE", f"/{index}", ok_missing=True)

    def count(self, index: str) -> int:
        """Number of searchable documents."""
        return int(self.call("GET", f"/{index}/_count")["count"])
