"""How the engine connection is made: timeouts, TLS and the client certificate, the proxy, and the auth scheme.

Each client gets the options its own constructor takes; SigV4 signing is opensearch-py's
signer over botocore's credential chain, and a proxy goes through each client's `requests` transport.
"""

from __future__ import annotations

import logging
from typing import Any

import botocore.session  # type: ignore[import-untyped]  # botocore ships no type hints
import elastic_transport
import opensearchpy

from config import Settings
from rtarf_sync.engine.errors import SourceError

Json = dict[str, Any]
log = logging.getLogger("rtarf_sync.clients")  # the name log filters know


def _common_options(settings: Settings, timeout_key: str) -> Json:
    """Timeout and TLS options both clients take; their own retries stay off (retry.py retries)."""
    options: Json = {
        timeout_key: settings.es_request_timeout_seconds,
        "max_retries": 0,
        "retry_on_timeout": False,
        "verify_certs": settings.es_verify_certs,
    }
    if not settings.es_verify_certs:
        log.warning(
            "RTARF_ES_VERIFY_CERTS=false: the engine's TLS certificate is not verified; anyone on the "
            "network path can read or change what the sync copies"
        )
        options["ssl_show_warn"] = False  # said once above, not on every request
    if settings.es_ca_certs:
        options["ca_certs"] = settings.es_ca_certs
    if settings.es_client_cert and settings.es_client_key:
        options["client_cert"] = settings.es_client_cert
        options["client_key"] = settings.es_client_key
    return options


def _proxies(settings: Settings) -> dict[str, str]:
    proxy = settings.es_proxy.reveal() if settings.es_proxy else ""
    return {"http": proxy, "https": proxy}


def _elasticsearch_proxy_node(proxies: dict[str, str]) -> type[elastic_transport.RequestsHttpNode]:
    """A requests node sending through the proxy: the urllib3 node has no proxy support."""

    class ProxiedNode(elastic_transport.RequestsHttpNode):
        def __init__(self, config: elastic_transport.NodeConfig) -> None:
            super().__init__(config)
            self.session.proxies = dict(proxies)
            # HTTP(S)_PROXY, NO_PROXY and .netrc of the environment would override RTARF_ES_PROXY.
            self.session.trust_env = False

    return ProxiedNode


class _ProxiedConnection(opensearchpy.RequestsHttpConnection):
    """opensearch-py's requests connection, deaf to the environment's proxy variables (RTARF_ES_PROXY rules)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session.trust_env = False


def elasticsearch_options(settings: Settings) -> Json:
    """Keyword arguments of `elasticsearch.Elasticsearch` for these settings."""
    options = _common_options(settings, "request_timeout")
    if settings.es_username and settings.es_password:
        options["basic_auth"] = (settings.es_username, settings.es_password.reveal())
    if settings.es_api_key:
        options["api_key"] = settings.es_api_key.reveal()
    if settings.es_proxy:
        options["node_class"] = _elasticsearch_proxy_node(_proxies(settings))
    return options


def aws_credentials() -> Any:
    """Credentials from the standard AWS chain (environment, shared files, web identity, container, instance)."""
    credentials = botocore.session.Session().get_credentials()
    if credentials is None:
        raise SourceError(
            "RTARF_ES_AUTH=sigv4: no AWS credentials found (environment, shared credentials file, "
            "web identity token, container or instance role)"
        )
    return credentials


def opensearch_options(settings: Settings) -> Json:
    """Keyword arguments of `opensearchpy.OpenSearch` for these settings."""
    options = _common_options(settings, "timeout")
    if settings.es_username and settings.es_password:
        options["http_auth"] = (settings.es_username, settings.es_password.reveal())
    if settings.es_api_key:
        options["headers"] = {"Authorization": f"ApiKey {settings.es_api_key.reveal()}"}
    if any(url.startswith("https://") for url in settings.es_urls):
        options["use_ssl"] = True
    if settings.es_proxy:
        options["connection_class"] = _ProxiedConnection
        options["proxies"] = _proxies(settings)
    if settings.es_auth == "sigv4":
        # Each request is signed with the chain's current credentials (refreshed when they expire).
        signer = opensearchpy.RequestsAWSV4SignerAuth if settings.es_proxy else opensearchpy.Urllib3AWSV4SignerAuth
        options["http_auth"] = signer(aws_credentials(), settings.aws_region, settings.aws_service)
    return options
