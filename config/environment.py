"""Reading the environment: `load_settings(environ)`, the only reader of RTARF_ variables.

Every value is validated, and a bad one stops start-up with a `ConfigError` whose message is a
single line naming the variable and the bad value (secrets are masked).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Callable, Mapping, TypeVar, cast

from elastic_transport.client_utils import parse_cloud_id
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from config.rules import SETTING_RULES, Boolean, Choice, Integer, Invalid, Matching, Number, Rule
from config.settings import (
    DEFAULT_WEBHOOK_EVENTS,
    LOOPBACK_BIND,
    ConfigError,
    ReconcileSettings,
    Secret,
    Settings,
    VerifySettings,
    WebhookSettings,
    mask_url,
    mask_userinfo,
)

T = TypeVar("T")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_FORMATS = ("text", "json")
_ENGINES = ("auto", "elasticsearch", "opensearch")
_ES_AUTH = ("auto", "basic", "api_key", "sigv4", "none")
_AWS_SERVICES = ("es", "aoss")  # Amazon OpenSearch Service, and OpenSearch Serverless
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-[0-9]+$")
_KEEP_ALIVE = re.compile(r"^[1-9][0-9]*[smh]$")
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
# Names the TOML file of pipelines; rtarf_sync/pipelines_file.py reads it with the rules of rules.py.
PIPELINES_FILE_VARIABLE = "RTARF_PIPELINES_FILE"


def _raw(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _fail(name: str, value: str, expected: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is invalid: expected {expected}")


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
        events=_setting(environ, "RTARF_WEBHOOK_EVENTS", DEFAULT_WEBHOOK_EVENTS),
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
