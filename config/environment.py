"""Reading the environment: `load_settings(environ)`, the one entry that reads RTARF_ variables.

The connections' variables are read by connections.py, each variable by variables.py; this module
reads the service's own (API token, bind, CORS, reconcile, verify, webhooks, traces) and builds
`Settings` from all of them.

Every value is validated, and a bad one stops start-up with a `ConfigError` whose message is a
single line naming the variable and the bad value (secrets are masked).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Mapping

from config import connections
from config.rules import Matching
from config.settings import (
    DEFAULT_WEBHOOK_EVENTS,
    LOOPBACK_BIND,
    ConfigError,
    ReconcileSettings,
    Secret,
    Settings,
    VerifySettings,
    WebhookSettings,
    mask_userinfo,
)
from config.variables import (
    boolean,
    choice,
    integer,
    refused,
    number,
    raw,
    ruled,
    secret,
    secret_text,
    setting,
)

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_FORMATS = ("text", "json")
_KEEP_ALIVE = re.compile(r"^[1-9][0-9]*[smh]$")
MIN_TOKEN_LENGTH = 16
# Names the TOML file of pipelines; rtarf_sync/pipelines_file.py reads it with the rules of rules.py.
PIPELINES_FILE_VARIABLE = "RTARF_PIPELINES_FILE"


def _api_token(environ: Mapping[str, str]) -> Secret | None:
    name = "RTARF_API_TOKEN"
    value = secret_text(environ, name)
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
    bind = raw(environ, "RTARF_BIND")
    if bind is not None:
        if not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]*):[0-9]{1,5}|unix:/\S+", bind):
            raise refused("RTARF_BIND", bind, "HOST:PORT or unix:/path")
        return bind, "RTARF_BIND"
    if raw(environ, "PORT") is not None:
        return f"0.0.0.0:{integer(environ, 'PORT', 8000, 1, 65535)}", "PORT"
    return ("0.0.0.0:8000" if token is not None else LOOPBACK_BIND), "the default"


_ORIGIN = re.compile(r"https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?")


def _cors_origins(environ: Mapping[str, str]) -> tuple[str, ...]:
    """RTARF_CORS_ORIGINS: exact browser origins (scheme://host[:port]) allowed to call non-GET routes."""
    name = "RTARF_CORS_ORIGINS"
    text = raw(environ, name)
    if text is None:
        return ()
    origins = tuple(part.strip() for part in text.split(","))
    for origin in origins:
        # An origin never has a path or a trailing slash; "*" would open every write route to every page.
        if not _ORIGIN.fullmatch(origin):
            raise refused(
                name,
                origin,
                "comma-separated origins such as https://dash.example.com:8443 "
                "(scheme://host[:port], no path, no wildcard)",
            )
    return tuple(dict.fromkeys(origin.lower() for origin in origins))


def _reconcile(environ: Mapping[str, str]) -> ReconcileSettings:
    return ReconcileSettings(
        delete_mode=setting(environ, "RTARF_DELETE_MODE", "soft"),
        delete_vanished_indices=setting(environ, "RTARF_DELETE_VANISHED_INDICES", False),
        delete_max_fraction=setting(environ, "RTARF_DELETE_MAX_FRACTION", 0.2),
        slices=setting(environ, "RTARF_SYNC_SLICES", 1),
        delete_min_count=integer(environ, "RTARF_DELETE_MIN_COUNT", 100, 0, 1_000_000_000),
    )


def _verify(environ: Mapping[str, str]) -> VerifySettings:
    return VerifySettings(
        interval_seconds=setting(environ, "RTARF_VERIFY_INTERVAL_SECONDS", 3600),
        lookback_hours=setting(environ, "RTARF_VERIFY_LOOKBACK_HOURS", 168),
        repair=setting(environ, "RTARF_VERIFY_REPAIR", True),
        max_repairs=integer(environ, "RTARF_VERIFY_MAX_REPAIRS", 24, 1, 10_000),
    )


def _webhook_urls(environ: Mapping[str, str]) -> tuple[Secret, ...]:
    name = "RTARF_WEBHOOK_URLS"
    value = secret_text(environ, name)
    if value is None:
        return ()
    urls = [part.strip() for part in value.split(",")]
    for url in urls:
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", url):
            raise refused(name, mask_userinfo(value), "comma-separated http:// or https:// URLs")
    return tuple(Secret(url) for url in urls)


def _webhook_secret(environ: Mapping[str, str]) -> Secret | None:
    name = "RTARF_WEBHOOK_SECRET"
    value = secret_text(environ, name)
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
        events=setting(environ, "RTARF_WEBHOOK_EVENTS", DEFAULT_WEBHOOK_EVENTS),
        timeout_seconds=number(environ, "RTARF_WEBHOOK_TIMEOUT_SECONDS", 10.0, 0.1, 300),
        max_attempts=integer(environ, "RTARF_WEBHOOK_MAX_ATTEMPTS", 8, 1, 100),
        retry_seconds=number(environ, "RTARF_WEBHOOK_RETRY_SECONDS", 5.0, 0.01, 3600),
        retention_days=integer(environ, "RTARF_WEBHOOK_RETENTION_DAYS", 7, 1, 3650),
    )


def _trace_exporters(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The trace exporters asked for, none unless an OTEL_ variable asks. The OpenTelemetry SDK reads the
    rest of them (endpoint, headers, service name, sampler) itself, the standard way, so they are not
    duplicated as settings: the one exception to load_settings being the only reader of the environment."""
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
    username = raw(environ, "RTARF_ES_USERNAME")
    password = secret(environ, "RTARF_ES_PASSWORD")
    if (username is None) != (password is None):
        raise ConfigError("RTARF_ES_USERNAME and RTARF_ES_PASSWORD must be set together")
    api_key = secret(environ, "RTARF_ES_API_KEY")
    es_auth = connections.es_auth(
        environ, {"RTARF_ES_USERNAME": username is not None, "RTARF_ES_API_KEY": api_key is not None}
    )
    cloud_id, cloud_urls = connections.cloud_urls(environ)
    es_urls = cloud_urls or connections.es_urls(environ)
    client_cert, client_key = connections.client_certificate(environ)
    if client_cert is not None and not all(url.startswith("https://") for url in es_urls):
        raise ConfigError("RTARF_ES_CLIENT_CERT needs https:// engine URLs: a client certificate is presented over TLS")
    api_token = _api_token(environ)
    bind, bind_source = _bind(environ, api_token)
    return Settings(
        sync_enabled=setting(environ, "RTARF_SYNC_ENABLED", True),
        sync_interval_seconds=setting(environ, "RTARF_SYNC_INTERVAL_SECONDS", 300),
        es_urls=es_urls,
        es_index=setting(environ, "RTARF_ES_INDEX", "rtarf-events*"),
        es_username=username,
        es_password=password,
        es_api_key=api_key,
        es_ca_certs=raw(environ, "RTARF_ES_CA_CERTS"),
        es_verify_certs=boolean(environ, "RTARF_ES_VERIFY_CERTS", True),
        es_request_timeout_seconds=number(environ, "RTARF_ES_REQUEST_TIMEOUT_SECONDS", 30.0, 0.1, 3600),
        es_auth=es_auth,
        aws_region=connections.aws_region(environ) if es_auth == "sigv4" else None,
        aws_service=choice(environ, "RTARF_AWS_SERVICE", "es", connections.AWS_SERVICES),
        es_cloud_id=cloud_id,
        es_client_cert=client_cert,
        es_client_key=client_key,
        es_proxy=connections.proxy(environ),
        source_engine=connections.source_engine(environ, es_auth, cloud_id),
        read_mode=setting(environ, "RTARF_SYNC_READ_MODE", "auto"),
        cursor_field=setting(environ, "RTARF_CURSOR_FIELD", "@timestamp"),
        batch_size=setting(environ, "RTARF_SYNC_BATCH_SIZE", 1000),
        overlap_seconds=setting(environ, "RTARF_SYNC_OVERLAP_SECONDS", 60),
        settle_seconds=setting(environ, "RTARF_SYNC_SETTLE_SECONDS", 5),
        pit_keep_alive=ruled(
            environ, "RTARF_PIT_KEEP_ALIVE", "5m", Matching(_KEEP_ALIVE, "a duration such as 90s, 5m or 1h")
        ),
        max_document_bytes=integer(environ, "RTARF_SYNC_MAX_DOCUMENT_BYTES", 10 * 1024 * 1024, 1, 2**31 - 1),
        max_retries=integer(environ, "RTARF_SYNC_MAX_RETRIES", 5, 0, 100),
        retry_max_seconds=number(environ, "RTARF_SYNC_RETRY_MAX_SECONDS", 30.0, 0.0, 3600),
        lease_ttl_seconds=integer(environ, "RTARF_LEASE_TTL_SECONDS", 60, 5, 60),
        misfire_grace_seconds=integer(environ, "RTARF_SYNC_MISFIRE_GRACE_SECONDS", 60, 1, 86400),
        database_url=connections.database_url(environ),
        table=setting(environ, "RTARF_TABLE", "rtarf_events"),
        api_token=api_token,
        log_level=choice(environ, "RTARF_LOG_LEVEL", "INFO", _LOG_LEVELS, str.upper),
        log_format=choice(environ, "RTARF_LOG_FORMAT", "text", _LOG_FORMATS),
        bind=bind,
        bind_source=bind_source,
        allow_unauthenticated=boolean(environ, "RTARF_ALLOW_UNAUTHENTICATED", False),
        graceful_timeout_seconds=integer(environ, "RTARF_GRACEFUL_TIMEOUT_SECONDS", 30, 1, 3600),
        run_history_days=integer(environ, "RTARF_RUN_HISTORY_DAYS", 30, 1, 3650),
        trigger_debounce_seconds=setting(environ, "RTARF_TRIGGER_DEBOUNCE_SECONDS", 1.0),
        cors_origins=_cors_origins(environ),
        trace_exporters=_trace_exporters(environ),
        reconcile=_reconcile(environ),
        verify=_verify(environ),
        webhooks=_webhooks(environ),
    )
