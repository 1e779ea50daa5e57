"""TLS and credentials, through a TLS-terminating proxy in front of each real engine.

A CA and a server certificate for 127.0.0.1 are made for the session (and a
second, unrelated CA to stand for the wrong one). The proxy records every
request's headers, so the tests see the Authorization header the engine gets;
canary secrets then must show up there and nowhere else: not in a log line, a
response body or /metrics.
"""

from __future__ import annotations

import base64
import logging
from typing import Callable, Iterator

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
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import engine_docs, table_docs

API_KEY_CANARY = "CanaryApiKey-b41c9e=="
PASSWORD_CANARY = "CanaryEsPw-0d7f31"
TOKEN_CANARY = "CanaryToken-62ae5b"


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Certs, Certs]:
    """The session's CA and server certificate, and an unrelated CA."""
    directory = tmp_path_factory.mktemp("tls")
    return make_certs(directory, "session"), make_certs(directory, "stranger")


@pytest.fixture
def tls_proxy(engine: EngineHttp, certs: tuple[Certs, Certs]) -> Iterator[FaultProxy]:
    """HTTPS in front of the engine under test, with the session's server certificate."""
    proxy = FaultProxy(engine.url, tls=certs[0].server_context()).start()
    yield proxy
    proxy.stop()


def _load(engine: EngineHttp, index: str, count: int = 30) -> None:
    engine.create_index(index)
    engine.bulk(bulk_payload(index, (make_event(n) for n in range(count))))
    engine.refresh(index)


def test_verified_tls_with_the_session_ca_works(
    engine: EngineHttp,
    tls_proxy: FaultProxy,
    certs: tuple[Certs, Certs],
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    _load(engine, index_name)
    assert tls_proxy.url.startswith("https://")
    result = SyncService(
        make_settings(engine, index_name, RTARF_ES_URL=tls_proxy.url, RTARF_ES_CA_CERTS=str(certs[0].ca_cert))
    ).run()
    assert (result.status, result.inserted) == ("success", 30), result.error
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
    assert any(seen.path.endswith("/_search") for seen in tls_proxy.requests)


def test_a_wrong_ca_fails_at_once_with_one_clear_message(
    engine: EngineHttp,
    tls_proxy: FaultProxy,
    certs: tuple[Certs, Certs],
    index_name: str,
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _load(engine, index_name)
    service = SyncService(
        make_settings(
            engine,
            index_name,
            RTARF_ES_URL=tls_proxy.url,
            RTARF_SYNC_MAX_RETRIES=5,
            RTARF_ES_CA_CERTS=str(certs[1].ca_cert),
        )
    )
    with caplog.at_level(logging.WARNING):
        result = service.run()
    service.close()
    assert result.status == "failed"
    assert (result.error or "").startswith(
        "open point in time: TLS handshake with the engine failed (certificate verify failed"
    )
    assert "check RTARF_ES_CA_CERTS" in (result.error or "")
    retries = [record for record in caplog.records if record.name == "rtarf_sync.retry"]
    assert retries == [], "a certificate problem is not retried"
    assert tls_proxy.requests == [], "no request got through"


def test_verify_certs_false_works_and_says_so(
    engine: EngineHttp,
    tls_proxy: FaultProxy,
    index_name: str,
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _load(engine, index_name)
    with caplog.at_level(logging.WARNING, logger="rtarf_sync.clients"):
        result = SyncService(
            make_settings(engine, index_name, RTARF_ES_URL=tls_proxy.url, RTARF_ES_VERIFY_CERTS="false")
        ).run()
    assert (result.status, result.inserted) == ("success", 30), result.error
    assert "RTARF_ES_VERIFY_CERTS=false: the engine's TLS certificate is not verified" in caplog.text


@pytest.mark.parametrize("credential", ["api_key", "basic"])
def test_credentials_arrive_in_the_header_the_engine_expects(
    credential: str,
    engine: EngineHttp,
    tls_proxy: FaultProxy,
    certs: tuple[Certs, Certs],
    index_name: str,
    make_settings: Callable[..., Settings],
) -> None:
    _load(engine, index_name, 5)
    auth = (
        {"RTARF_ES_API_KEY": API_KEY_CANARY}
        if credential == "api_key"
        else {"RTARF_ES_USERNAME": "rtarf-sync", "RTARF_ES_PASSWORD": PASSWORD_CANARY}
    )
    result = SyncService(
        make_settings(engine, index_name, RTARF_ES_URL=tls_proxy.url, RTARF_ES_CA_CERTS=str(certs[0].ca_cert), **auth)
    ).run()
    assert result.status == "success", result.error
    expected = (
        f"ApiKey {API_KEY_CANARY}"
        if credential == "api_key"
        else "Basic " + base64.b64encode(f"rtarf-sync:{PASSWORD_CANARY}".encode()).decode()
    )
    headers = {seen.headers.get("authorization") for seen in tls_proxy.requests}
    assert headers == {expected}, "every request carried the credential, in the engine's scheme"


@pytest.mark.parametrize("credential", ["api_key", "basic"])
def test_no_canary_leaves_the_service(
    credential: str,
    engine: EngineHttp,
    tls_proxy: FaultProxy,
    certs: tuple[Certs, Certs],
    index_name: str,
    table_name: str,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _load(engine, index_name, 5)
    auth = (
        {"RTARF_ES_API_KEY": API_KEY_CANARY}
        if credential == "api_key"
        else {"RTARF_ES_USERNAME": "rtarf-sync", "RTARF_ES_PASSWORD": PASSWORD_CANARY}
    )
    canary = API_KEY_CANARY if credential == "api_key" else PASSWORD_CANARY
    settings = load_settings(
        {
            "RTARF_DATABASE_URL": database_url,
            "RTARF_TABLE": table_name,
            "RTARF_ES_INDEX": index_name,
            "RTARF_ES_URL": tls_proxy.url,
            "RTARF_SOURCE_ENGINE": engine.kind,
            "RTARF_ES_CA_CERTS": str(certs[0].ca_cert),
            "RTARF_API_TOKEN": TOKEN_CANARY,
            "RTARF_SYNC_ENABLED": "false",
            "RTARF_LOG_LEVEL": "DEBUG",
            "RTARF_SYNC_SETTLE_SECONDS": "0",
            **auth,
        }
    )
    app = create_app(settings)
    try:
        client = app.test_client()
        bodies = [client.post("/scheduler/sync-now", headers={"Authorization": f"Bearer {TOKEN_CANARY}"})]
        bodies += [client.get(path) for path in ("/scheduler/status", "/readyz", "/healthz", "/metrics")]
    finally:
        scheduler_of(app).shutdown(timeout=10)
        configure_logging(load_settings({}))  # back to INFO for the tests that follow
    assert bodies[0].status_code == 200 and bodies[0].get_json()["result"]["inserted"] == 5
    sent = [seen.headers.get("authorization", "") for seen in tls_proxy.requests]
    assert sent and all(canary in header or "Basic " in header for header in sent), "the canary was really used"
    logs = capsys.readouterr().err + caplog.text
    assert "Sync completed successfully" in logs
    for text in [body.get_data(as_text=True) for body in bodies] + [logs]:
        for secret in (canary, TOKEN_CANARY, base64.b64encode(f"rtarf-sync:{PASSWORD_CANARY}".encode()).decode()):
            assert secret not in text
