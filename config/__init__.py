"""Settings of RTARF Event Sync, read from the environment in one place.

`load_settings(environ)` is the only reader of environment variables. It
validates every value and fails fast with a `ConfigError` whose message is a
single line naming the variable and the bad value (secrets are masked).
"""

from __future__ import annotations

import base64
import datetime
import binascii
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar, cast

from elastic_transport.client_utils import parse_cloud_id
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

T = TypeVar("T")

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_FIELD_PATH = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9_@.\-]*$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_FORMATS = ("text", "json")
_ENGINES = ("auto", "elasticsearch", "opensearch")
_ES_AUTH = ("auto", "basic", "api_key", "sigv4", "none")
_AWS_SERVICES = ("es", "aoss")  # Amazon OpenSearch Service, and OpenSearch Serverless
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-[0-9]+$")
_READ_MODES = ("auto", "pit", "scroll")
_KEEP_ALIVE = re.compile(r"^[1-9][0-9]*[smh]$")
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_URL_USERINFO = re.compile(r"(://)[^/@]*@")
_DELETE_MODES = ("soft", "hard", "off")
WEBHOOK_EVENTS = (
    "sync.succeeded",
    "sync.partial",
    "sync.failed",
    "sync.recovered",
    "verify.drift",
    "retention.dropped",
)
_DEFAULT_WEBHOOK_EVENTS = ("sync.failed", "sync.partial", "sync.recovered", "verify.drift")
# Every table the service keeps for itself (state, lease, runs, dead letters, outbox, schema versions,
# a run's work tables) is named with this prefix: RTARF_TABLE may not take one of those names.
STATE_TABLE_PREFIX = "rtarf_sync_"
MIN_TOKEN_LENGTH = 16
# The secret variables, each of which may instead name a file holding its value (Docker/Kubernetes secrets).
SECRET_FILE_VARIABLES = {
    "RTARF_API_TOKEN": "RTARF_API_TOKEN_FILE",
    "RTARF_ES_PASSWORD": "RTARF_ES_PASSWORD_FILE",
    "RTARF_ES_API_KEY": "RTARF_ES_API_KEY_FILE",
    "RTARF_WEBHOOK_SECRET": "RTARF_WEBHOOK_SECRET_FILE",
    "RTARF_WEBHOOK_URLS": "RTARF_WEBHOOK_URLS_FILE",  # a chat webhook's URL is its secret
    "RTARF_DATABASE_URL": "RTARF_DATABASE_URL_FILE",
    "RTARF_ES_PROXY": "RTARF_ES_PROXY_FILE",  # a proxy URL may carry the proxy's password
}
LOOPBACK_BIND = "127.0.0.1:8000"
# Names the TOML file of pipelines; rtarf_sync/pipelines_file.py reads it with the rules below.
PIPELINES_FILE_VARIABLE = "RTARF_PIPELINES_FILE"


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
    events: tuple[str, ...] = _DEFAULT_WEBHOOK_EVENTS
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


def _raw(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _fail(name: str, value: str, expected: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is invalid: expected {expected}")


class Invalid(ValueError):
    """A value breaks its rule; `expected` says what the rule wants (the caller names the variable or key)."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


class Rule:
    """One setting's rule, checked the same way for an environment variable (text) and a pipelines-file key
    (a TOML value): `from_text` parses the variable's text, `from_value` takes a value already typed."""

    @property
    def expected(self) -> str:
        """What a valid value looks like, for messages."""
        return "a valid value"

    def from_text(self, text: str) -> Any:
        """The value of an environment variable's text; raises Invalid."""
        return self.from_value(text)

    def from_value(self, value: object) -> Any:
        """The value of a typed (TOML) value; raises Invalid, also for a value of the wrong type."""
        raise NotImplementedError


@dataclass(frozen=True)
class Integer(Rule):
    """A whole number in [low, high]."""

    low: int
    high: int

    @property
    def expected(self) -> str:
        return f"an integer from {self.low} to {self.high}"

    def from_text(self, text: str) -> int:
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise Invalid(self.expected)
        return self.from_value(int(text))

    def from_value(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise Invalid(self.expected)
        return value


@dataclass(frozen=True)
class Number(Rule):
    """A real number in [low, high]."""

    low: float
    high: float

    @property
    def expected(self) -> str:
        return f"a number from {self.low:g} to {self.high:g}"

    def from_text(self, text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise Invalid(self.expected) from None
        return self.from_value(number)

    def from_value(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            raise Invalid(self.expected)
        return float(value)


class Boolean(Rule):
    """Strict true or false."""

    @property
    def expected(self) -> str:
        return "true or false"

    def from_text(self, text: str) -> bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise Invalid(self.expected)

    def from_value(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise Invalid(self.expected)
        return value


@dataclass(frozen=True)
class Choice(Rule):
    """One of a few words."""

    choices: tuple[str, ...]
    normalize: Callable[[str], str] = str.lower

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(self.choices)

    def from_value(self, value: object) -> str:
        if not isinstance(value, str) or self.normalize(value) not in self.choices:
            raise Invalid(self.expected)
        return self.normalize(value)


@dataclass(frozen=True)
class Matching(Rule):
    """Text matching a pattern, at most `max_bytes` long."""

    pattern: re.Pattern[str]
    description: str
    max_bytes: int | None = None

    @property
    def expected(self) -> str:
        return self.description

    def from_value(self, value: object) -> str:
        if not isinstance(value, str) or not self.pattern.fullmatch(value):
            raise Invalid(self.expected)
        if self.max_bytes is not None and len(value.encode()) > self.max_bytes:
            raise Invalid(self.expected)
        return value


class IndexSetting(Rule):
    """An index, alias, pattern or comma list of them (RTARF_ES_INDEX, key `index`)."""

    @property
    def expected(self) -> str:
        return "an index, alias, pattern or comma-separated list of them"

    def from_value(self, value: object) -> str:
        if not isinstance(value, str):
            raise Invalid(self.expected)
        parts = [part.strip() for part in value.split(",")]
        if any(not part or re.search(r"[\s\"\\/?#<>|]", part) for part in parts):
            raise Invalid(self.expected)
        return ",".join(parts)


class TableName(Rule):
    """A target table: a plain identifier that is not one of the service's own (RTARF_TABLE, key `table`)."""

    @property
    def expected(self) -> str:
        return "a plain lowercase identifier ([a-z_][a-z0-9_]*) of at most 63 bytes"

    def from_value(self, value: object) -> str:
        table = Matching(_IDENTIFIER, self.expected, max_bytes=63).from_value(value)
        if table.startswith(STATE_TABLE_PREFIX):
            raise Invalid(
                f"a name that does not start with {STATE_TABLE_PREFIX} "
                "(the service's own state and work tables use that prefix)"
            )
        return table


class WebhookEvents(Rule):
    """`*` or a list of webhook event types (RTARF_WEBHOOK_EVENTS, key `webhook_events`)."""

    @property
    def expected(self) -> str:
        return "* or a comma-separated list of " + ", ".join(WEBHOOK_EVENTS)

    def from_text(self, text: str) -> tuple[str, ...]:
        return self.from_value(text if text == "*" else [part.strip() for part in text.split(",")])

    def from_value(self, value: object) -> tuple[str, ...]:
        if value == "*":
            return WEBHOOK_EVENTS
        if not isinstance(value, list) or not value or any(event not in WEBHOOK_EVENTS for event in value):
            raise Invalid(self.expected)
        return tuple(value)


# The rule of every per-pipeline setting, by its variable: load_settings reads the variable with it and
# a pipelines file's key (PIPELINE_KEYS) goes through the same rule, so the two can never disagree.
SETTING_RULES: dict[str, Rule] = {
    "RTARF_ES_INDEX": IndexSetting(),
    "RTARF_TABLE": TableName(),
    "RTARF_CURSOR_FIELD": Matching(_FIELD_PATH, "a field name such as @timestamp or event.ingested"),
    "RTARF_SYNC_ENABLED": Boolean(),
    "RTARF_SYNC_INTERVAL_SECONDS": Integer(1, 86400),
    "RTARF_SYNC_SETTLE_SECONDS": Integer(0, 3600),
    "RTARF_SYNC_OVERLAP_SECONDS": Integer(0, 3650 * 86400),
    "RTARF_SYNC_BATCH_SIZE": Integer(1, 10000),
    "RTARF_SYNC_SLICES": Integer(1, 16),
    "RTARF_SYNC_READ_MODE": Choice(_READ_MODES),
    "RTARF_DELETE_MODE": Choice(_DELETE_MODES),
    "RTARF_DELETE_MAX_FRACTION": Number(0.0, 1.0),
    "RTARF_DELETE_VANISHED_INDICES": Boolean(),
    "RTARF_VERIFY_INTERVAL_SECONDS": Integer(0, 7 * 86400),
    "RTARF_VERIFY_LOOKBACK_HOURS": Integer(1, 24 * 3660),
    "RTARF_VERIFY_REPAIR": Boolean(),
    "RTARF_TRIGGER_DEBOUNCE_SECONDS": Number(0.0, 60),
    "RTARF_WEBHOOK_EVENTS": WebhookEvents(),
}

# Pipelines-file key -> (its variable, where it lives in Settings: a field, or a group and its field).
PIPELINE_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "index": ("RTARF_ES_INDEX", ("es_index",)),
    "table": ("RTARF_TABLE", ("table",)),
    "cursor_field": ("RTARF_CURSOR_FIELD", ("cursor_field",)),
    "enabled": ("RTARF_SYNC_ENABLED", ("sync_enabled",)),
    "interval_seconds": ("RTARF_SYNC_INTERVAL_SECONDS", ("sync_interval_seconds",)),
    "settle_seconds": ("RTARF_SYNC_SETTLE_SECONDS", ("settle_seconds",)),
    "overlap_seconds": ("RTARF_SYNC_OVERLAP_SECONDS", ("overlap_seconds",)),
    "batch_size": ("RTARF_SYNC_BATCH_SIZE", ("batch_size",)),
    "slices": ("RTARF_SYNC_SLICES", ("reconcile", "slices")),
    "read_mode": ("RTARF_SYNC_READ_MODE", ("read_mode",)),
    "delete_mode": ("RTARF_DELETE_MODE", ("reconcile", "delete_mode")),
    "delete_max_fraction": ("RTARF_DELETE_MAX_FRACTION", ("reconcile", "delete_max_fraction")),
    "delete_vanished_indices": ("RTARF_DELETE_VANISHED_INDICES", ("reconcile", "delete_vanished_indices")),
    "verify_interval_seconds": ("RTARF_VERIFY_INTERVAL_SECONDS", ("verify", "interval_seconds")),
    "verify_lookback_hours": ("RTARF_VERIFY_LOOKBACK_HOURS", ("verify", "lookback_hours")),
    "verify_repair": ("RTARF_VERIFY_REPAIR", ("verify", "repair")),
    "trigger_debounce_seconds": ("RTARF_TRIGGER_DEBOUNCE_SECONDS", ("trigger_debounce_seconds",)),
    "webhook_events": ("RTARF_WEBHOOK_EVENTS", ("webhooks", "events")),
}


def _setting(environ: Mapping[str, str], name: str, default: T) -> T:
    """Variable `name` under its rule in SETTING_RULES, or `default` when unset."""
    return _env(environ, name, default, SETTING_RULES[name])


def _env(environ: Mapping[str, str], name: str, default: T, rule: Rule) -> T:
    """The value of variable `name` under `rule`, or `default` when unset."""
    value = _raw(environ, name)
    if value is None:
        return default
    try:
        return cast(T, rule.from_text(value))
    except Invalid as invalid:
        raise _fail(name, value, invalid.expected) from None


def _integer(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return _env(environ, name, default, Integer(low, high))


def _number(environ: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    return _env(environ, name, default, Number(low, high))


def _boolean(environ: Mapping[str, str], name: str, default: bool) -> bool:
    return _env(environ, name, default, Boolean())


def _choice(
    environ: Mapping[str, str],
    name: str,
    default: str,
    choices: tuple[str, ...],
    normalize: Callable[[str], str] = str.lower,
) -> str:
    return _env(environ, name, default, Choice(choices, normalize))


def _secret_text(environ: Mapping[str, str], name: str) -> str | None:
    """The value of secret variable `name`, or the content of the file `name`_FILE names; never both."""
    file_name = SECRET_FILE_VARIABLES[name]
    value, path = _raw(environ, name), _raw(environ, file_name)
    if path is None:
        return value
    if value is not None:
        raise ConfigError(f"{name} and {file_name} are both set: give one of them (values not shown)")
    try:
        with open(path, encoding="utf-8") as handle:
            content = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not readable UTF-8 text"
        raise ConfigError(f"{file_name}={path!r} is invalid: cannot read the file ({reason})") from None
    content = content.rstrip("\r\n")  # the newline an editor or `echo` adds is not part of the secret
    if not content:
        raise ConfigError(f"{file_name}={path!r} is invalid: the file is empty")
    return content


def _secret(environ: Mapping[str, str], name: str) -> Secret | None:
    value = _secret_text(environ, name)
    return None if value is None else Secret(value)


def _es_urls(environ: Mapping[str, str]) -> tuple[str, ...]:
    name = "RTARF_ES_URL"
    value = _raw(environ, name) or "http://localhost:9200"
    urls = tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())
    for url in urls:
        if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", url):
            raise _fail(name, mask_url(value), "comma-separated http:// or https:// URLs")
    if not urls:
        raise _fail(name, value, "at least one URL")
    return urls


def _cloud_urls(environ: Mapping[str, str]) -> tuple[str | None, tuple[str, ...] | None]:
    """RTARF_ES_CLOUD_ID and the HTTPS URL it stands for, decoded the way the Elasticsearch client does."""
    name = "RTARF_ES_CLOUD_ID"
    cloud_id = _raw(environ, name)
    if cloud_id is None:
        return None, None
    if _raw(environ, "RTARF_ES_URL") is not None:
        raise ConfigError(f"{name} and RTARF_ES_URL are both set: a cloud id names the URL, give one of them")
    try:
        address = parse_cloud_id(cloud_id).es_address
    except ValueError:
        address = None
    if address is None:
        raise _fail(name, cloud_id, "an Elastic Cloud id such as name:BASE64 (from the deployment's page)")
    return cloud_id, (f"https://{address[0]}:{address[1]}",)


def _readable_file(environ: Mapping[str, str], name: str) -> str | None:
    path = _raw(environ, name)
    if path is None:
        return None
    try:
        open(path, "rb").close()  # missing, a folder, or not readable by this user: each fails here
    except OSError as error:
        raise ConfigError(f"{name}={path!r} is invalid: cannot read the file ({error.strerror or error})") from None
    return path


def _client_certificate(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """RTARF_ES_CLIENT_CERT and RTARF_ES_CLIENT_KEY: both or neither, each a readable file."""
    cert = _readable_file(environ, "RTARF_ES_CLIENT_CERT")
    key = _readable_file(environ, "RTARF_ES_CLIENT_KEY")
    if (cert is None) != (key is None):
        raise ConfigError("RTARF_ES_CLIENT_CERT and RTARF_ES_CLIENT_KEY must be set together")
    return cert, key


def _proxy(environ: Mapping[str, str]) -> Secret | None:
    name = "RTARF_ES_PROXY"
    value = _secret_text(environ, name)
    if value is None:
        return None
    if not re.fullmatch(r"https?://([^\s/@]+@)?[^\s/@:]+(:[0-9]{1,5})?/?", value):
        shown = mask_userinfo(value) if "@" in value else value
        raise _fail(name, shown, "an http:// or https:// proxy URL such as http://user:password@proxy:3128")
    return Secret(value.rstrip("/"))


def _aws_region(environ: Mapping[str, str]) -> str:
    """The region SigV4 signs for: RTARF_AWS_REGION, else the AWS SDKs' own AWS_REGION or AWS_DEFAULT_REGION."""
    for name in ("RTARF_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"):
        value = _raw(environ, name)
        if value is not None:
            if not _AWS_REGION.fullmatch(value):
                raise _fail(name, value, "an AWS region such as eu-west-1")
            return value
    raise ConfigError("RTARF_ES_AUTH=sigv4 needs RTARF_AWS_REGION (or AWS_REGION), the region of the domain")


def _es_auth(environ: Mapping[str, str], given: dict[str, bool]) -> str:
    """RTARF_ES_AUTH, checked against the credentials set: an explicit scheme takes its own and no other."""
    auth = _choice(environ, "RTARF_ES_AUTH", "auto", _ES_AUTH)
    needed = {"basic": "RTARF_ES_USERNAME", "api_key": "RTARF_ES_API_KEY"}.get(auth)
    if needed is not None and not given[needed]:
        raise ConfigError(f"RTARF_ES_AUTH={auth} needs {needed}")
    if auth != "auto":
        extra = [variable for variable, present in given.items() if present and variable != needed]
        if extra:
            raise ConfigError(f"RTARF_ES_AUTH={auth} does not use {', '.join(extra)}: unset it (value not shown)")
    return auth


def _source_engine(environ: Mapping[str, str], auth: str, cloud_id: str | None) -> str:
    """RTARF_SOURCE_ENGINE; a cloud id means Elasticsearch and SigV4 means the OpenSearch client."""
    engine = _choice(environ, "RTARF_SOURCE_ENGINE", "auto", _ENGINES)
    if auth == "sigv4" and cloud_id is not None:
        raise ConfigError("RTARF_ES_CLOUD_ID names an Elastic Cloud deployment: RTARF_ES_AUTH=sigv4 cannot sign for it")
    if auth == "sigv4":
        if engine == "elasticsearch":
            raise ConfigError(
                "RTARF_ES_AUTH=sigv4 needs RTARF_SOURCE_ENGINE=opensearch or auto: the Elasticsearch client "
                "cannot sign requests (Amazon OpenSearch domains, Elasticsearch 7.10 ones too, take the OpenSearch one)"
            )
        return "opensearch"
    if cloud_id is not None:
        if engine == "opensearch":
            raise ConfigError(
                "RTARF_ES_CLOUD_ID names an Elastic Cloud deployment: RTARF_SOURCE_ENGINE=opensearch cannot use it"
            )
        return "elasticsearch"
    return engine


def _database_url(environ: Mapping[str, str]) -> Secret:
    name = "RTARF_DATABASE_URL"
    value = _secret_text(environ, name) or "postgresql+psycopg://postgres@localhost:5432/rtarf"
    expected = "a SQLAlchemy URL such as postgresql+psycopg://user:password@host:5432/db"
    try:
        url: URL = make_url(value)
        _ = url.port  # a non-numeric port only fails when read
    except (ArgumentError, ValueError):
        raise _fail(name, mask_url(value), expected) from None
    if url.get_backend_name() != "postgresql" or not url.database:
        raise _fail(name, mask_url(value), expected)
    if url.drivername == "postgresql":
        value = url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    elif url.drivername != "postgresql+psycopg":
        raise _fail(name, mask_url(value), "the postgresql+psycopg driver")
    return Secret(value)


def _api_token(environ: Mapping[str, str]) -> Secret | None:
    name = "RTARF_API_TOKEN"
    value = _secret_text(environ, name)
    if value is None:
        return None
    # RFC 6750 token characters only, so a client can always send it in a header.
    if not re.fullmatch(r"[A-Za-z0-9\-._~+/]+=*", value):
        raise ConfigError(f"{name} is invalid: expected letters, digits and -._~+/ (value not shown)")
    if len(value) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"{name} is invalid: expected at least {MIN_TOKEN_LENGTH} characters (value not shown)")
    return Secret(value)


def _bind(environ: Mapping[str, str], token: Secret | None) -> tuple[str, str]:
    """The address and the variable that chose it: RTARF_BIND wins; else PORT (all interfaces, the platform
    convention); else 0.0.0.0:8000 with a token and 127.0.0.1:8000 without one (closed by default)."""
    bind = _raw(environ, "RTARF_BIND")
    if bind is not None:
        if not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]*):[0-9]{1,5}|unix:/\S+", bind):
            raise _fail("RTARF_BIND", bind, "HOST:PORT or unix:/path")
        return bind, "RTARF_BIND"
    if _raw(environ, "PORT") is not None:
        return f"0.0.0.0:{_integer(environ, 'PORT', 8000, 1, 65535)}", "PORT"
    return ("0.0.0.0:8000" if token is not None else LOOPBACK_BIND), "the default"


_ORIGIN = re.compile(r"https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?")


def _cors_origins(environ: Mapping[str, str]) -> tuple[str, ...]:
    """RTARF_CORS_ORIGINS: exact browser origins (scheme://host[:port]) allowed to call non-GET routes."""
    name = "RTARF_CORS_ORIGINS"
    text = _raw(environ, name)
    if text is None:
        return ()
    origins = tuple(part.strip() for part in text.split(","))
    for origin in origins:
        # An origin never has a path or a trailing slash; "*" would open every write route to every page.
        if not _ORIGIN.fullmatch(origin):
            raise _fail(
                name,
                origin,
                "comma-separated origins such as https://dash.example.com:8443 "
                "(scheme://host[:port], no path, no wildcard)",
            )
    return tuple(dict.fromkeys(origin.lower() for origin in origins))


def _reconcile(environ: Mapping[str, str]) -> ReconcileSettings:
    return ReconcileSettings(
        delete_mode=_setting(environ, "RTARF_DELETE_MODE", "soft"),
        delete_vanished_indices=_setting(environ, "RTARF_DELETE_VANISHED_INDICES", False),
        delete_max_fraction=_setting(environ, "RTARF_DELETE_MAX_FRACTION", 0.2),
        slices=_setting(environ, "RTARF_SYNC_SLICES", 1),
        delete_min_count=_integer(environ, "RTARF_DELETE_MIN_COUNT", 100, 0, 1_000_000_000),
    )


def _verify(environ: Mapping[str, str]) -> VerifySettings:
    return VerifySettings(
        interval_seconds=_setting(environ, "RTARF_VERIFY_INTERVAL_SECONDS", 3600),
        lookback_hours=_setting(environ, "RTARF_VERIFY_LOOKBACK_HOURS", 168),
        repair=_setting(environ, "RTARF_VERIFY_REPAIR", True),
        max_repairs=_integer(environ, "RTARF_VERIFY_MAX_REPAIRS", 24, 1, 10_000),
    )


def _webhook_urls(environ: Mapping[str, str]) -> tuple[Secret, ...]:
    name = "RTARF_WEBHOOK_URLS"
    value = _secret_text(environ, name)
    if value is None:
        return ()
    urls = [part.strip() for part in value.split(",")]
    for url in urls:
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", url):
            raise _fail(name, mask_userinfo(value), "comma-separated http:// or https:// URLs")
    return tuple(Secret(url) for url in urls)


def _webhook_secret(environ: Mapping[str, str]) -> Secret | None:
    name = "RTARF_WEBHOOK_SECRET"
    value = _secret_text(environ, name)
    if value is None:
        return None
    body = value[len("whsec_") :] if value.startswith("whsec_") else None
    try:
        valid = body is not None and len(base64.b64decode(body, validate=True)) >= 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise ConfigError(
            f"{name} is invalid: expected whsec_ followed by base64 of at least 16 bytes (value not shown)"
        )
    return Secret(value)


def _webhooks(environ: Mapping[str, str]) -> WebhookSettings:
    urls, secret = _webhook_urls(environ), _webhook_secret(environ)
    if urls and secret is None:
        raise ConfigError("RTARF_WEBHOOK_SECRET is required when RTARF_WEBHOOK_URLS is set")
    return WebhookSettings(
        urls=urls,
        secret=secret,
        events=_setting(environ, "RTARF_WEBHOOK_EVENTS", _DEFAULT_WEBHOOK_EVENTS),
        timeout_seconds=_number(environ, "RTARF_WEBHOOK_TIMEOUT_SECONDS", 10.0, 0.1, 300),
        max_attempts=_integer(environ, "RTARF_WEBHOOK_MAX_ATTEMPTS", 8, 1, 100),
        retry_seconds=_number(environ, "RTARF_WEBHOOK_RETRY_SECONDS", 5.0, 0.01, 3600),
        retention_days=_integer(environ, "RTARF_WEBHOOK_RETENTION_DAYS", 7, 1, 3650),
    )


def _trace_exporters(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The trace exporters asked for, none unless an OTEL_ variable asks. The OpenTelemetry SDK reads the
    rest of them (endpoint, headers, service name, sampler) itself, the standard way, so they are not
    duplicated as settings: the one exception to this module being the only reader of the environment."""
    names = tuple(
        name for name in (part.strip().lower() for part in environ.get("OTEL_TRACES_EXPORTER", "").split(",")) if name
    )
    if names:
        unknown = sorted(set(names) - {"otlp", "otlp_proto_http", "console", "none"})
        if unknown:
            raise ConfigError(f"OTEL_TRACES_EXPORTER: unsupported exporter {unknown[0]!r} (otlp, console or none)")
        return tuple(name for name in names if name != "none")
    return ("otlp",) if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() else ()


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read and validate every RTARF_ variable; raise ConfigError on the first bad one."""
    username = _raw(environ, "RTARF_ES_USERNAME")
    password = _secret(environ, "RTARF_ES_PASSWORD")
    if (username is None) != (password is None):
        raise ConfigError("RTARF_ES_USERNAME and RTARF_ES_PASSWORD must be set together")
    api_key = _secret(environ, "RTARF_ES_API_KEY")
    es_auth = _es_auth(environ, {"RTARF_ES_USERNAME": username is not None, "RTARF_ES_API_KEY": api_key is not None})
    cloud_id, cloud_urls = _cloud_urls(environ)
    es_urls = cloud_urls or _es_urls(environ)
    client_cert, client_key = _client_certificate(environ)
    if client_cert is not None and not all(url.startswith("https://") for url in es_urls):
        raise ConfigError("RTARF_ES_CLIENT_CERT needs https:// engine URLs: a client certificate is presented over TLS")
    api_token = _api_token(environ)
    bind, bind_source = _bind(environ, api_token)
    return Settings(
        sync_enabled=_setting(environ, "RTARF_SYNC_ENABLED", True),
        sync_interval_seconds=_setting(environ, "RTARF_SYNC_INTERVAL_SECONDS", 300),
        es_urls=es_urls,
        es_index=_setting(environ, "RTARF_ES_INDEX", "rtarf-events*"),
        es_username=username,
        es_password=password,
        es_api_key=api_key,
        es_ca_certs=_raw(environ, "RTARF_ES_CA_CERTS"),
        es_verify_certs=_boolean(environ, "RTARF_ES_VERIFY_CERTS", True),
        es_request_timeout_seconds=_number(environ, "RTARF_ES_REQUEST_TIMEOUT_SECONDS", 30.0, 0.1, 3600),
        es_auth=es_auth,
        aws_region=_aws_region(environ) if es_auth == "sigv4" else None,
        aws_service=_choice(environ, "RTARF_AWS_SERVICE", "es", _AWS_SERVICES),
        es_cloud_id=cloud_id,
        es_client_cert=client_cert,
        es_client_key=client_key,
        es_proxy=_proxy(environ),
        source_engine=_source_engine(environ, es_auth, cloud_id),
        read_mode=_setting(environ, "RTARF_SYNC_READ_MODE", "auto"),
        cursor_field=_setting(environ, "RTARF_CURSOR_FIELD", "@timestamp"),
        batch_size=_setting(environ, "RTARF_SYNC_BATCH_SIZE", 1000),
        overlap_seconds=_setting(environ, "RTARF_SYNC_OVERLAP_SECONDS", 60),
        settle_seconds=_setting(environ, "RTARF_SYNC_SETTLE_SECONDS", 5),
        pit_keep_alive=_env(
            environ, "RTARF_PIT_KEEP_ALIVE", "5m", Matching(_KEEP_ALIVE, "a duration such as 90s, 5m or 1h")
        ),
        max_document_bytes=_integer(environ, "RTARF_SYNC_MAX_DOCUMENT_BYTES", 10 * 1024 * 1024, 1, 2**31 - 1),
        max_retries=_integer(environ, "RTARF_SYNC_MAX_RETRIES", 5, 0, 100),
        retry_max_seconds=_number(environ, "RTARF_SYNC_RETRY_MAX_SECONDS", 30.0, 0.0, 3600),
        lease_ttl_seconds=_integer(environ, "RTARF_LEASE_TTL_SECONDS", 60, 5, 60),
        misfire_grace_seconds=_integer(environ, "RTARF_SYNC_MISFIRE_GRACE_SECONDS", 60, 1, 86400),
        database_url=_database_url(environ),
        table=_setting(environ, "RTARF_TABLE", "rtarf_events"),
        api_token=api_token,
        log_level=_choice(environ, "RTARF_LOG_LEVEL", "INFO", _LOG_LEVELS, str.upper),
        log_format=_choice(environ, "RTARF_LOG_FORMAT", "text", _LOG_FORMATS),
        bind=bind,
        bind_source=bind_source,
        allow_unauthenticated=_boolean(environ, "RTARF_ALLOW_UNAUTHENTICATED", False),
        graceful_timeout_seconds=_integer(environ, "RTARF_GRACEFUL_TIMEOUT_SECONDS", 30, 1, 3600),
        run_history_days=_integer(environ, "RTARF_RUN_HISTORY_DAYS", 30, 1, 3650),
        trigger_debounce_seconds=_setting(environ, "RTARF_TRIGGER_DEBOUNCE_SECONDS", 1.0),
        cors_origins=_cors_origins(environ),
        trace_exporters=_trace_exporters(environ),
        reconcile=_reconcile(environ),
        verify=_verify(environ),
        webhooks=_webhooks(environ),
    )
