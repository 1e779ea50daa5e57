"""The connections enterprises use, each through a real component in front of a real engine.

SigV4: a gateway re-signs every request with botocore and refuses a mismatch, as Amazon does.
mTLS: the TLS proxy asks for a client certificate of the session's CA. Proxy: a forwarding proxy
records each request it carried (absolute URI for http://, CONNECT for https://). Cloud id: the
decoded URL reaches the Elasticsearch protocol server behind TLS.
"""

from __future__ import annotations

import base64
from typing import Callable, Iterator
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from config import Settings, load_settings
from rtarf_sync import create_app
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.logs import configure_logging
from rtarf_sync.sample import bulk_payload, make_event
from rtarf_sync.service.extension import scheduler_of
from tests.infra.harness.certs import Certs, make_certs
from tests.infra.harness.faultproxy import FaultProxy
from tests.infra.harness.forwardproxy import ForwardProxy
from tests.infra.harness.http import EngineHttp
from tests.infra.harness.sigv4 import AwsKeys, SigV4Check
from tests.infra.oracle import engine_docs, table_docs

KEYS = AwsKeys("AKIDEXAMPLECANARY01", "CanaryAwsSecret-6f0e2b/K7MDENG", "CanaryAwsToken-1c9d4a//////IQoJb3JpZ2lu")
PROXY_USER, PROXY_PASSWORD = "squid", "CanaryProxyPw-8a2f/c@:"


def _load(engine: EngineHttp, index: str, count: int = 30) -> None:
    engine.create_index(index)
    engine.bulk(bulk_payload(index, (make_event(n) for n in range(count))))
    engine.refresh(index)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA with a server and a client certificate."""
    return make_certs(tmp_path_factory.mktemp("mtls"), "connections")


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> AwsKeys:
    """Fake keys in the AWS variables, and no other source of credentials the chain could find."""
    empty = tmp_path_factory.mktemp("aws") / "absent"
    for name, value in {
        "AWS_ACCESS_KEY_ID": KEYS.access_key,
        "AWS_SECRET_ACCESS_KEY": KEYS.secret_key,
        "AWS_SESSION_TOKEN": KEYS.token or "",
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    return KEYS


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    """A proxy that wants the canary password."""
    proxy = ForwardProxy(credentials=(PROXY_USER, PROXY_PASSWORD)).start()
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("through_proxy", [False, True], ids=["direct", "through-a-proxy"])
@pytest.mark.parametrize("service", ["es", "aoss"])
def test_sigv4_signatures_are_botocore_s_own_and_rows_land(
    service: str,
    through_proxy: bool,
    aws_environment: AwsKeys,
    opensearch: EngineHttp,
    forward_proxy: ForwardProxy,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    _load(opensearch, index_name)
    check = SigV4Check(aws_environment, "eu-west-1", service)
    gateway = FaultProxy(opensearch.url, gate=check).start()
    try:
        proxy = {"RTARF_ES_PROXY": forward_proxy.url((PROXY_USER, PROXY_PASSWORD))} if through_proxy else {}
        settings = make_settings(
            None,
            index_name,
            RTARF_ES_URL=gateway.url,
            RTARF_ES_AUTH="sigv4",
            RTARF_AWS_REGION="eu-west-1",
            RTARF_AWS_SERVICE=service,
            **proxy,
        )
        result = SyncService(settings).run()
    finally:
        gateway.stop()
    assert [seen.refused for seen in gateway.requests if seen.refused] == []
    assert (result.status, result.inserted) == ("success", 30), result.error
    assert table_docs(db_engine, table_name) == engine_docs(opensearch, index_name)
    assert check.checked == len(gateway.requests) > 0
    assert any(seen.body for seen in gateway.requests), "requests with bodies were signed too"
    assert bool(forward_proxy.carried) == through_proxy


def test_a_wrong_secret_key_is_refused_by_the_gateway(
    aws_environment: AwsKeys,
    opensearch: EngineHttp,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    _load(opensearch, index_name, 3)
    gateway = FaultProxy(
        opensearch.url, gate=SigV4Check(AwsKeys(KEYS.access_key, "another-secret", KEYS.token), "eu-west-1", "es")
    ).start()
    try:
        settings = make_settings(
            None, index_name, RTARF_ES_URL=gateway.url, RTARF_ES_AUTH="sigv4", RTARF_AWS_REGION="eu-west-1"
        )
        result = SyncService(settings).run()
    finally:
        gateway.stop()
    assert result.status == "failed"
    assert "HTTP 403" in (result.error or "") and "the signature does not match" in (result.error or "")
    assert KEYS.secret_key not in (result.error or "")


def test_sigv4_without_credentials_in_the_chain_fails_saying_so(
    aws_environment: AwsKeys,
    monkeypatch: pytest.MonkeyPatch,
    opensearch: EngineHttp,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    settings = make_settings(opensearch, index_name, RTARF_ES_AUTH="sigv4", RTARF_AWS_REGION="eu-west-1")
    result = SyncService(settings).run()
    assert result.status == "failed"
    assert "RTARF_ES_AUTH=sigv4: no AWS credentials found" in (result.error or "")


@pytest.fixture
def mtls_proxy(engine: EngineHttp, certs: Certs) -> Iterator[FaultProxy]:
    """HTTPS in front of the engine that wants a client certificate signed by the session's CA."""
    proxy = FaultProxy(engine.url, tls=certs.server_context(require_client_cert=True)).start()
    yield proxy
    proxy.stop()


def test_a_client_certificate_opens_an_mtls_engine(
    engine: EngineHttp,
    mtls_proxy: FaultProxy,
    certs: Certs,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    _load(engine, index_name)
    settings = make_settings(
        engine,
        index_name,
        RTARF_ES_URL=mtls_proxy.url,
        RTARF_ES_CA_CERTS=str(certs.ca_cert),
        RTARF_ES_CLIENT_CERT=str(certs.client_cert),
        RTARF_ES_CLIENT_KEY=str(certs.client_key),
    )
    result = SyncService(settings).run()
    assert (result.status, result.inserted) == ("success", 30), result.error
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)


def test_without_the_client_certificate_the_run_fails_clearly(
    engine: EngineHttp,
    mtls_proxy: FaultProxy,
    certs: Certs,
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    _load(engine, index_name, 3)
    settings = make_settings(
        engine, index_name, RTARF_ES_URL=mtls_proxy.url, RTARF_ES_CA_CERTS=str(certs.ca_cert), RTARF_SYNC_MAX_RETRIES=1
    )
    result = SyncService(settings).run()
    assert result.status == "failed"
    assert (result.error or "").startswith("open point in time: TLS handshake with the engine failed ("), result.error
    assert (result.error or "").endswith(
        "the engine may want a client certificate: check RTARF_ES_CLIENT_CERT and RTARF_ES_CLIENT_KEY"
    ), result.error
    assert mtls_proxy.requests == [], "no request got through"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_every_request_goes_through_the_proxy(
    scheme: str,
    engine: EngineHttp,
    forward_proxy: ForwardProxy,
    certs: Certs,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _load(engine, index_name)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens: RTARF_ES_PROXY must win over these
    front = FaultProxy(engine.url, tls=certs.server_context() if scheme == "https" else None).start()
    try:
        settings = make_settings(
            engine,
            index_name,
            RTARF_ES_URL=front.url,
            **({"RTARF_ES_CA_CERTS": str(certs.ca_cert)} if scheme == "https" else {}),
            RTARF_ES_PROXY=forward_proxy.url((PROXY_USER, PROXY_PASSWORD)),
        )
        result = SyncService(settings).run()
    finally:
        front.stop()
    assert (result.status, result.inserted) == ("success", 30), result.error
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
    assert forward_proxy.refused == []
    address = front.url.split("://")[1]
    if scheme == "http":
        # One absolute-URI request carried for each the engine's front saw, the same ones.
        assert sorted(target for _, target in forward_proxy.carried) == sorted(
            f"http://{address}{seen.target}" for seen in front.requests
        )
    else:
        assert {entry for entry in forward_proxy.carried} == {("CONNECT", address)}
    assert front.requests


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxy_refusing_the_password_fails_at_once_without_showing_it(
    scheme: str,
    engine: EngineHttp,
    certs: Certs,
    index_name: str,
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = ForwardProxy(credentials=(PROXY_USER, "the-right-one")).start()
    front = FaultProxy(engine.url, tls=certs.server_context() if scheme == "https" else None).start()
    try:
        settings = make_settings(
            engine,
            index_name,
            RTARF_ES_URL=front.url,
            **({"RTARF_ES_CA_CERTS": str(certs.ca_cert)} if scheme == "https" else {}),
            RTARF_ES_PROXY=proxy.url((PROXY_USER, PROXY_PASSWORD)),
            RTARF_SYNC_MAX_RETRIES=3,
        )
        result = SyncService(settings).run()
    finally:
        proxy.stop()
        front.stop()
    assert result.status == "failed" and proxy.refused and not proxy.carried and not front.requests
    assert (result.error or "").endswith(
        "HTTP 407 Proxy Authentication Required: the proxy refused the user and password of RTARF_ES_PROXY"
    ), result.error
    assert len(proxy.refused) == 1, "a refused password is not retried"
    assert PROXY_PASSWORD not in (result.error or "") + caplog.text


def _cloud_id(host: str, es_uuid: str) -> str:
    return "rtarf-test:" + base64.b64encode(f"{host}${es_uuid}$kibana0".encode()).decode()


def test_a_cloud_id_reaches_its_deployment(
    elasticsearch: EngineHttp,
    certs: Certs,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    _load(elasticsearch, index_name)
    front = FaultProxy(elasticsearch.url, tls=certs.server_context()).start()
    try:
        port = front.url.rsplit(":", 1)[1]
        # The deployment's address is `es_uuid.host:port`: so 127 + 0.0.1 is the loopback address.
        cloud_id = _cloud_id(f"0.0.1:{port}", "127")
        settings = make_settings(None, index_name, RTARF_ES_CLOUD_ID=cloud_id, RTARF_ES_CA_CERTS=str(certs.ca_cert))
        assert settings.es_urls == (front.url,) and settings.source_engine == "elasticsearch"
        result = SyncService(settings).run()
    finally:
        front.stop()
    assert (result.status, result.inserted) == ("success", 30), result.error
    assert table_docs(db_engine, table_name) == engine_docs(elasticsearch, index_name)
    assert front.requests


def test_no_aws_key_token_proxy_password_or_client_key_leaves_the_service(
    aws_environment: AwsKeys,
    opensearch: EngineHttp,
    forward_proxy: ForwardProxy,
    certs: Certs,
    index_name: str,
    table_name: str,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """All four at once, at DEBUG: app → proxy (CONNECT, password) → mTLS gateway checking SigV4 → OpenSearch."""
    _load(opensearch, index_name, 5)
    gateway = FaultProxy(
        opensearch.url, tls=certs.server_context(require_client_cert=True), gate=SigV4Check(KEYS, "eu-west-1", "es")
    ).start()
    settings = load_settings(
        {
            "RTARF_DATABASE_URL": database_url,
            "RTARF_TABLE": table_name,
            "RTARF_ES_INDEX": index_name,
            "RTARF_ES_URL": gateway.url,
            "RTARF_ES_AUTH": "sigv4",
            "RTARF_AWS_REGION": "eu-west-1",
            "RTARF_ES_CA_CERTS": str(certs.ca_cert),
            "RTARF_ES_CLIENT_CERT": str(certs.client_cert),
            "RTARF_ES_CLIENT_KEY": str(certs.client_key),
            "RTARF_ES_PROXY": forward_proxy.url((PROXY_USER, PROXY_PASSWORD)),
            "RTARF_API_TOKEN": "CanaryToken-0a1b2c3d4e",
            "RTARF_SYNC_ENABLED": "false",
            "RTARF_LOG_LEVEL": "DEBUG",
            "RTARF_SYNC_SETTLE_SECONDS": "0",
        }
    )
    app = create_app(settings)
    try:
        client = app.test_client()
        auth = {"Authorization": "Bearer CanaryToken-0a1b2c3d4e"}
        bodies = [client.post("/scheduler/sync-now", headers=auth)]
        bodies += [client.get(path) for path in ("/scheduler/status", "/readyz", "/healthz", "/metrics")]
        bodies += [client.get(path, headers=auth) for path in ("/scheduler/runs", "/scheduler/overview")]
    finally:
        scheduler_of(app).shutdown(timeout=10)
        gateway.stop()
        configure_logging(load_settings({}))  # back to INFO for the tests that follow
    assert bodies[0].status_code == 200 and bodies[0].get_json()["result"]["inserted"] == 5, bodies[0].get_json()
    assert forward_proxy.carried and gateway.requests and not [s for s in gateway.requests if s.refused]
    key_lines = [line for line in certs.client_key.read_text().splitlines() if not line.startswith("-----")]
    canaries = [KEYS.secret_key, KEYS.token or "", PROXY_PASSWORD, quote(PROXY_PASSWORD, safe=""), *key_lines]
    logs = capsys.readouterr().err + caplog.text
    assert "Sync completed successfully" in logs
    for text in [body.get_data(as_text=True) for body in bodies] + [logs]:
        assert [canary for canary in canaries if canary in text] == []
