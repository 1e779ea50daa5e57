"""The connections' variables: engine URLs or cloud id, credentials and how they sign, TLS client
certificate, proxy, and the database URL. Each reader checks its variables against one another.
"""

from __future__ import annotations

import re
from typing import Mapping

from elastic_transport.client_utils import parse_cloud_id
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from config.settings import ConfigError, Secret, mask_url, mask_userinfo
from config.variables import choice, refused, raw, secret_text

ENGINES = ("auto", "elasticsearch", "opensearch")
ES_AUTH = ("auto", "basic", "api_key", "sigv4", "none")
AWS_SERVICES = ("es", "aoss")  # Amazon OpenSearch Service, and OpenSearch Serverless
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-[0-9]+$")


def es_urls(environ: Mapping[str, str]) -> tuple[str, ...]:
    name = "RTARF_ES_URL"
    value = raw(environ, name) or "http://localhost:9200"
    urls = tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())
    for url in urls:
        if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", url):
            raise refused(name, mask_url(value), "comma-separated http:// or https:// URLs")
    if not urls:
        raise refused(name, value, "at least one URL")
    return urls


def cloud_urls(environ: Mapping[str, str]) -> tuple[str | None, tuple[str, ...] | None]:
    """RTARF_ES_CLOUD_ID and the HTTPS URL it stands for, decoded the way the Elasticsearch client does."""
    name = "RTARF_ES_CLOUD_ID"
    cloud_id = raw(environ, name)
    if cloud_id is None:
        return None, None
    if raw(environ, "RTARF_ES_URL") is not None:
        raise ConfigError(f"{name} and RTARF_ES_URL are both set: a cloud id names the URL, give one of them")
    try:
        address = parse_cloud_id(cloud_id).es_address
    except ValueError:
        address = None
    if address is None:
        raise refused(name, cloud_id, "an Elastic Cloud id such as name:BASE64 (from the deployment's page)")
    return cloud_id, (f"https://{address[0]}:{address[1]}",)


def readable_file(environ: Mapping[str, str], name: str) -> str | None:
    path = raw(environ, name)
    if path is None:
        return None
    try:
        open(path, "rb").close()  # missing, a folder, or not readable by this user: each fails here
    except OSError as error:
        raise ConfigError(f"{name}={path!r} is invalid: cannot read the file ({error.strerror or error})") from None
    return path


def client_certificate(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """RTARF_ES_CLIENT_CERT and RTARF_ES_CLIENT_KEY: both or neither, each a readable file."""
    cert = readable_file(environ, "RTARF_ES_CLIENT_CERT")
    key = readable_file(environ, "RTARF_ES_CLIENT_KEY")
    if (cert is None) != (key is None):
        raise ConfigError("RTARF_ES_CLIENT_CERT and RTARF_ES_CLIENT_KEY must be set together")
    return cert, key


def proxy(environ: Mapping[str, str]) -> Secret | None:
    name = "RTARF_ES_PROXY"
    value = secret_text(environ, name)
    if value is None:
        return None
    if not re.fullmatch(r"https?://([^\s/@]+@)?[^\s/@:]+(:[0-9]{1,5})?/?", value):
        shown = mask_userinfo(value) if "@" in value else value
        raise refused(name, shown, "an http:// or https:// proxy URL such as http://user:password@proxy:3128")
    return Secret(value.rstrip("/"))


def aws_region(environ: Mapping[str, str]) -> str:
    """The region SigV4 signs for: RTARF_AWS_REGION, else the AWS SDKs' own AWS_REGION or AWS_DEFAULT_REGION."""
    for name in ("RTARF_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"):
        value = raw(environ, name)
        if value is not None:
            if not _AWS_REGION.fullmatch(value):
                raise refused(name, value, "an AWS region such as eu-west-1")
            return value
    raise ConfigError("RTARF_ES_AUTH=sigv4 needs RTARF_AWS_REGION (or AWS_REGION), the region of the domain")


def es_auth(environ: Mapping[str, str], given: dict[str, bool]) -> str:
    """RTARF_ES_AUTH, checked against the credentials set: an explicit scheme takes its own and no other."""
    auth = choice(environ, "RTARF_ES_AUTH", "auto", ES_AUTH)
    needed = {"basic": "RTARF_ES_USERNAME", "api_key": "RTARF_ES_API_KEY"}.get(auth)
    if needed is not None and not given[needed]:
        raise ConfigError(f"RTARF_ES_AUTH={auth} needs {needed}")
    if auth != "auto":
        extra = [variable for variable, present in given.items() if present and variable != needed]
        if extra:
            raise ConfigError(f"RTARF_ES_AUTH={auth} does not use {', '.join(extra)}: unset it (value not shown)")
    return auth


def source_engine(environ: Mapping[str, str], auth: str, cloud_id: str | None) -> str:
    """RTARF_SOURCE_ENGINE; a cloud id means Elasticsearch and SigV4 means the OpenSearch client."""
    engine = choice(environ, "RTARF_SOURCE_ENGINE", "auto", ENGINES)
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


def database_url(environ: Mapping[str, str]) -> Secret:
    name = "RTARF_DATABASE_URL"
    value = secret_text(environ, name) or "postgresql+psycopg://postgres@localhost:5432/rtarf"
    expected = "a SQLAlchemy URL such as postgresql+psycopg://user:password@host:5432/db"
    try:
        url: URL = make_url(value)
        _ = url.port  # a non-numeric port only fails when read
    except (ArgumentError, ValueError):
        raise refused(name, mask_url(value), expected) from None
    if url.get_backend_name() != "postgresql" or not url.database:
        raise refused(name, mask_url(value), expected)
    if url.drivername == "postgresql":
        value = url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    elif url.drivername != "postgresql+psycopg":
        raise refused(name, mask_url(value), "the postgresql+psycopg driver")
    return Secret(value)
