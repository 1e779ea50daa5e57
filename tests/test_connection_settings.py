"""The engine connection's settings: the auth scheme, SigV4's region and service, the cloud id, mTLS, the proxy.

Each wrong combination stops start-up with one line naming the variable; a proxy password is never shown.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from config import ConfigError, load_settings


def _cloud_id(decoded: str, name: str = "prod") -> str:
    return f"{name}:" + base64.b64encode(decoded.encode()).decode()


def test_the_default_is_today_s_behaviour() -> None:
    settings = load_settings({"RTARF_ES_USERNAME": "elastic", "RTARF_ES_PASSWORD": "pw-0123"})
    assert (settings.es_auth, settings.source_engine, settings.es_proxy, settings.es_client_cert) == (
        "auto",
        "auto",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RTARF_ES_AUTH": "basic"}, "RTARF_ES_AUTH=basic needs RTARF_ES_USERNAME"),
        ({"RTARF_ES_AUTH": "api_key"}, "RTARF_ES_AUTH=api_key needs RTARF_ES_API_KEY"),
        (
            {"RTARF_ES_AUTH": "basic", "RTARF_ES_USERNAME": "u", "RTARF_ES_PASSWORD": "p", "RTARF_ES_API_KEY": "k"},
            "RTARF_ES_AUTH=basic does not use RTARF_ES_API_KEY",
        ),
        ({"RTARF_ES_AUTH": "none", "RTARF_ES_API_KEY": "k"}, "RTARF_ES_AUTH=none does not use RTARF_ES_API_KEY"),
        (
            {"RTARF_ES_AUTH": "sigv4", "RTARF_AWS_REGION": "eu-west-1", "RTARF_ES_API_KEY": "k"},
            "RTARF_ES_AUTH=sigv4 does not use RTARF_ES_API_KEY",
        ),
        ({"RTARF_ES_AUTH": "kerberos"}, "RTARF_ES_AUTH='kerberos' is invalid"),
        ({"RTARF_ES_AUTH": "sigv4"}, "RTARF_ES_AUTH=sigv4 needs RTARF_AWS_REGION"),
        ({"RTARF_ES_AUTH": "sigv4", "RTARF_AWS_REGION": "Frankfurt"}, "RTARF_AWS_REGION='Frankfurt' is invalid"),
        (
            {"RTARF_ES_AUTH": "sigv4", "RTARF_AWS_REGION": "eu-west-1", "RTARF_AWS_SERVICE": "s3"},
            "RTARF_AWS_SERVICE='s3' is invalid: expected one of es, aoss",
        ),
        (
            {"RTARF_ES_AUTH": "sigv4", "RTARF_AWS_REGION": "eu-west-1", "RTARF_SOURCE_ENGINE": "elasticsearch"},
            "RTARF_ES_AUTH=sigv4 needs RTARF_SOURCE_ENGINE=opensearch or auto",
        ),
    ],
)
def test_a_wrong_auth_combination_names_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_settings(environ)


def test_each_explicit_scheme_takes_its_own_credentials() -> None:
    assert load_settings({"RTARF_ES_AUTH": "none"}).es_auth == "none"
    assert load_settings({"RTARF_ES_AUTH": "API_KEY", "RTARF_ES_API_KEY": "k"}).es_auth == "api_key"
    basic = load_settings({"RTARF_ES_AUTH": "basic", "RTARF_ES_USERNAME": "u", "RTARF_ES_PASSWORD": "p"})
    assert basic.es_auth == "basic"


def test_sigv4_means_the_opensearch_client_and_takes_the_sdk_region() -> None:
    settings = load_settings({"RTARF_ES_AUTH": "sigv4", "AWS_REGION": "ap-southeast-1", "RTARF_AWS_SERVICE": "aoss"})
    assert (settings.source_engine, settings.aws_region, settings.aws_service) == (
        "opensearch",
        "ap-southeast-1",
        "aoss",
    )
    own = load_settings({"RTARF_ES_AUTH": "sigv4", "RTARF_AWS_REGION": "eu-west-1", "AWS_REGION": "us-east-1"})
    assert (own.aws_region, own.aws_service) == ("eu-west-1", "es")


@pytest.mark.parametrize(
    ("decoded", "url"),
    [
        ("us-central1.gcp.cloud.es.io$0123abcd$4567efgh", "https://0123abcd.us-central1.gcp.cloud.es.io:443"),
        ("eu-west-1.aws.found.io:9243$deadbeef$cafe", "https://deadbeef.eu-west-1.aws.found.io:9243"),
        ("westeurope.azure.elastic-cloud.com$abc", "https://abc.westeurope.azure.elastic-cloud.com:443"),
    ],
)
def test_a_cloud_id_is_decoded_into_the_deployment_s_url(decoded: str, url: str) -> None:
    settings = load_settings({"RTARF_ES_CLOUD_ID": _cloud_id(decoded)})
    assert (settings.es_urls, settings.source_engine) == ((url,), "elasticsearch")
    assert settings.es_cloud_id == _cloud_id(decoded)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RTARF_ES_CLOUD_ID": "prod:not base64!"}, "RTARF_ES_CLOUD_ID='prod:not base64!' is invalid"),
        ({"RTARF_ES_CLOUD_ID": _cloud_id("host.example$")}, "RTARF_ES_CLOUD_ID="),
        (
            {"RTARF_ES_CLOUD_ID": _cloud_id("h.example$abc"), "RTARF_ES_URL": "https://es.example:9200"},
            "RTARF_ES_CLOUD_ID and RTARF_ES_URL are both set",
        ),
        (
            {"RTARF_ES_CLOUD_ID": _cloud_id("h.example$abc"), "RTARF_SOURCE_ENGINE": "opensearch"},
            "RTARF_SOURCE_ENGINE=opensearch cannot use it",
        ),
        (
            {
                "RTARF_ES_CLOUD_ID": _cloud_id("h.example$abc"),
                "RTARF_ES_AUTH": "sigv4",
                "RTARF_AWS_REGION": "eu-west-1",
            },
            "RTARF_ES_AUTH=sigv4 cannot sign for it",
        ),
    ],
)
def test_a_wrong_cloud_id_names_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings({"RTARF_SOURCE_ENGINE": "auto", **environ})


def test_a_client_certificate_needs_both_files_readable_and_an_https_url(tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("cert")
    key.write_text("key")
    https = {"RTARF_ES_URL": "https://es.internal:9200"}
    settings = load_settings({**https, "RTARF_ES_CLIENT_CERT": str(cert), "RTARF_ES_CLIENT_KEY": str(key)})
    assert (settings.es_client_cert, settings.es_client_key) == (str(cert), str(key))
    with pytest.raises(ConfigError, match="RTARF_ES_CLIENT_CERT and RTARF_ES_CLIENT_KEY must be set together"):
        load_settings({**https, "RTARF_ES_CLIENT_CERT": str(cert)})
    with pytest.raises(ConfigError, match="RTARF_ES_CLIENT_KEY='.*absent.key' is invalid: cannot read the file"):
        load_settings({**https, "RTARF_ES_CLIENT_CERT": str(cert), "RTARF_ES_CLIENT_KEY": str(tmp_path / "absent.key")})
    with pytest.raises(ConfigError, match="RTARF_ES_CLIENT_CERT='.*' is invalid: cannot read the file"):
        load_settings({**https, "RTARF_ES_CLIENT_CERT": str(tmp_path), "RTARF_ES_CLIENT_KEY": str(key)})
    with pytest.raises(ConfigError, match="RTARF_ES_CLIENT_CERT needs https:// engine URLs"):
        load_settings({"RTARF_ES_CLIENT_CERT": str(cert), "RTARF_ES_CLIENT_KEY": str(key)})


def test_the_proxy_is_a_secret_url() -> None:
    settings = load_settings({"RTARF_ES_PROXY": "http://squid:Pw-Proxy-77@proxy.internal:3128/"})
    assert (
        settings.es_proxy is not None and settings.es_proxy.reveal() == "http://squid:Pw-Proxy-77@proxy.internal:3128"
    )
    assert "Pw-Proxy-77" not in repr(settings)
    assert load_settings({"RTARF_ES_PROXY": "https://proxy.internal"}).es_proxy is not None


@pytest.mark.parametrize(
    "value", ["socks5://squid:Pw-Proxy-78@proxy:1080", "http://squid:Pw-Proxy-78@proxy:3128/path", "proxy:3128"]
)
def test_a_wrong_proxy_names_the_variable_and_hides_the_password(value: str) -> None:
    with pytest.raises(
        ConfigError, match="RTARF_ES_PROXY=.* is invalid: expected an http:// or https:// proxy URL"
    ) as caught:
        load_settings({"RTARF_ES_PROXY": value})
    assert "Pw-Proxy-78" not in str(caught.value)
