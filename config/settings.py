"""What the settings are: frozen dataclasses, grouped, and the few values the rest of the service names.

`Settings` is built by `load_settings` (environment.py) and nowhere else; `Secret` keeps a secret
value out of every repr, string and log line.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any

_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_URL_USERINFO = re.compile(r"(://)[^/@]*@")
WEBHOOK_EVENTS = (
    "sync.succeeded",
    "sync.partial",
    "sync.failed",
    "sync.recovered",
    "verify.drift",
    "retention.dropped",
)
DEFAULT_WEBHOOK_EVENTS = ("sync.failed", "sync.partial", "sync.recovered", "verify.drift")
# Every table the service keeps for itself (state, lease, runs, dead letters, outbox, schema versions,
# a run's work tables) is named with this prefix: RTARF_TABLE may not take one of those names.
STATE_TABLE_PREFIX = "rtarf_sync_"
LOOPBACK_BIND = "127.0.0.1:8000"


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names it."""


class Secret:
    """A string that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value, for the one place that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def mask_url(url: str) -> str:
    """Return `url` with any password replaced by asterisks."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def mask_userinfo(url: str) -> str:
    """Return `url` with any user name and password replaced by asterisks."""
    return _URL_USERINFO.sub(r"\1***@", url)


# The column types a pipeline may declare (see docs/pipelines.md).
COLUMN_TYPES = (
    "text",
    "smallint",
    "integer",
    "bigint",
    "double precision",
    "boolean",
    "timestamptz",
    "inet",
    "jsonb",
    "text[]",
)
COLUMN_ON_ERROR = ("dead_letter", "null")
PARTITION_KINDS = ("day", "month")
DEFAULT_PIPELINE = "default"


@dataclass(frozen=True)
class ColumnSpec:
    """One typed column beside `source`: filled from `path` of each document, converted to `type`."""

    name: str
    path: str
    type: str
    index: bool = False
    on_error: str = "dead_letter"  # dead_letter: set the document aside; null: store NULL


@dataclass(frozen=True)
class ReconcileSettings:
    """How `full` and `range` runs read and reconcile deletes."""

    delete_mode: str = "soft"
    delete_vanished_indices: bool = False
    delete_max_fraction: float = 0.2
    slices: int = 1
    delete_min_count: int = 100  # deletions up to this many pass the valve whatever the fraction


@dataclass(frozen=True)
class VerifySettings:
    """The scheduled verification job `rtarf_verify`."""

    interval_seconds: int = 3600
    lookback_hours: int = 168
    repair: bool = True
    max_repairs: int = 24  # buckets one verification repairs; the rest wait for the next one


@dataclass(frozen=True)
class WebhookSettings:
    """Signed webhook notifications (Standard Webhooks)."""

    urls: tuple[Secret, ...] = ()
    secret: Secret | None = None
    events: tuple[str, ...] = DEFAULT_WEBHOOK_EVENTS
    timeout_seconds: float = 10.0
    max_attempts: int = 8
    retry_seconds: float = 5.0
    retention_days: int = 7


@dataclass(frozen=True)
class Settings:
    """Validated settings; build with `load_settings`, never from os.environ directly."""

    sync_enabled: bool = True
    sync_interval_seconds: int = 300
    es_urls: tuple[str, ...] = ("http://localhost:9200",)
    es_index: str = "rtarf-events*"
    es_username: str | None = None
    es_password: Secret | None = None
    es_api_key: Secret | None = None
    es_ca_certs: str | None = None
    es_verify_certs: bool = True
    es_request_timeout_seconds: float = 30.0
    # How the engine connection authenticates (basic, api_key, sigv4 or none; auto: whichever credential is set),
    # and the region and service SigV4 signs for.
    es_auth: str = "auto"
    aws_region: str | None = None
    aws_service: str = "es"
    es_cloud_id: str | None = None  # already decoded into es_urls; kept to say where the URL came from
    es_client_cert: str | None = None  # mTLS: the client's certificate and key, PEM files
    es_client_key: str | None = None
    es_proxy: Secret | None = None  # an HTTP(S) proxy every engine request goes through
    source_engine: str = "auto"
    read_mode: str = "auto"
    cursor_field: str = "@timestamp"
    batch_size: int = 1000
    overlap_seconds: int = 60
    settle_seconds: int = 5
    pit_keep_alive: str = "5m"
    max_document_bytes: int = 10 * 1024 * 1024
    max_retries: int = 5
    retry_max_seconds: float = 30.0
    lease_ttl_seconds: int = 60
    misfire_grace_seconds: int = 60
    database_url: Secret = field(default_factory=lambda: Secret("postgresql+psycopg://postgres@localhost:5432/rtarf"))
    table: str = "rtarf_events"
    api_token: Secret | None = None
    log_level: str = "INFO"
    log_format: str = "text"  # text: the original pipe-delimited lines; json: one object a line
    bind: str = LOOPBACK_BIND
    bind_source: str = field(default="the default", compare=False)  # what chose `bind`, for messages
    allow_unauthenticated: bool = False
    graceful_timeout_seconds: int = 30
    run_history_days: int = 30
    trigger_debounce_seconds: float = 1.0
    cors_origins: tuple[str, ...] = ()
    # The exporters OTEL_TRACES_EXPORTER names (otlp when only OTEL_EXPORTER_OTLP_ENDPOINT is set); none: off.
    trace_exporters: tuple[str, ...] = ()
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    # Per pipeline: its name, an engine filter (query DSL), the _source fields kept, typed columns.
    pipeline: str = DEFAULT_PIPELINE
    query: dict[str, Any] | None = field(default=None, hash=False)
    source_includes: tuple[str, ...] = ()
    source_excludes: tuple[str, ...] = ()
    columns: tuple[ColumnSpec, ...] = ()
    # Per pipeline: range partitions of the target on event_timestamp, and what retention may drop.
    partition: str | None = None  # None (one plain table), "day" or "month"
    retention_days: int | None = None  # None: keep everything
    legal_hold: tuple[tuple[datetime.date, datetime.date], ...] = ()  # [from, to) ranges never dropped
    verify: VerifySettings = field(default_factory=VerifySettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    @property
    def tracing_enabled(self) -> bool:
        """Whether OpenTelemetry traces are exported (an OTEL_ variable asked for it)."""
        return bool(self.trace_exporters)

    @property
    def database_url_masked(self) -> str:
        """The database URL with its password hidden, fit for logs."""
        return mask_url(self.database_url.reveal())
