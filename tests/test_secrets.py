"""Secrets never leave the process: not in a log line, a response body or an error body.

Canary values go into the database URL's password, the engine password and
the API token; then every route is called, including a sync that fails
because the database is unreachable, and the logs and bodies are searched,
in the app and in a real gunicorn process.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import pytest
from flask import Flask
from sqlalchemy.engine import make_url

from config import load_settings
from rtarf_sync import create_app
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.logs import Redactor, RedactingFilter, configure_logging
from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.harness.http import EngineHttp
from tests.infra.harness.process import free_port
from tests.infra.support import load_sample

DB_CANARY = "CanaryDbPw-5e1f0a"
ES_CANARY = "CanaryEsPw-9b7c2d"
TOKEN_CANARY = "CanaryToken-3d8e6f"
CANARIES = (DB_CANARY, ES_CANARY, TOKEN_CANARY)


def _leaks(text: str) -> list[str]:
    return [canary for canary in CANARIES if canary in text]


@pytest.fixture
def canary_app(elasticsearch: EngineHttp, table_name: str) -> Iterator[Flask]:
    """The real service with canary secrets, a reachable engine and an unreachable database."""
    settings = load_settings(
        {
            "RTARF_DATABASE_URL": f"postgresql+psycopg://postgres:{DB_CANARY}@127.0.0.1:{free_port()}/rtarf",
            "RTARF_ES_URL": elasticsearch.url,
            "RTARF_SOURCE_ENGINE": "elasticsearch",
            "RTARF_ES_USERNAME": "elastic",
            "RTARF_ES_PASSWORD": ES_CANARY,
            "RTARF_API_TOKEN": TOKEN_CANARY,
            "RTARF_TABLE": table_name,
            "RTARF_SYNC_MAX_RETRIES": "1",
            "RTARF_SYNC_RETRY_MAX_SECONDS": "0.1",
            "RTARF_LOG_LEVEL": "DEBUG",
        }
    )
    app = create_app(settings)
    yield app
    scheduler_of(app).shutdown(timeout=10)
    configure_logging(load_settings({}))  # back to INFO for the tests that follow


def test_no_canary_in_any_log_line_or_body(
    canary_app: Flask, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    client = canary_app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN_CANARY}"}
    bodies: list[str] = []

    failed = client.post("/scheduler/sync-now", headers=auth)
    assert failed.status_code == 503  # the database is unreachable
    assert failed.get_json()["result"]["status"] == "failed"
    assert failed.get_json()["result"]["error"]
    bodies.append(failed.get_data(as_text=True))
    for path in ("/scheduler/status", "/scheduler/jobs", "/readyz", "/healthz", "/metrics"):
        bodies.append(client.get(path).get_data(as_text=True))
    bodies.append(client.post("/scheduler/stop", headers={"Authorization": "Bearer wrong"}).get_data(as_text=True))
    bodies.append(client.post("/scheduler/start", headers=auth).get_data(as_text=True))
    bodies.append(client.post("/scheduler/stop", headers=auth).get_data(as_text=True))
    scheduler_of(canary_app).shutdown(timeout=10)

    stderr = capsys.readouterr().err
    assert "Sync failed" in stderr  # the failure was logged, just without the secret
    assert " | rtarf_sync." in stderr
    for body in bodies:
        assert _leaks(body) == [], body
    assert _leaks(stderr) == []
    assert _leaks(caplog.text) == []


def test_the_filter_masks_secrets_in_messages_arguments_and_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(
        {
            "RTARF_DATABASE_URL": f"postgresql://app:{DB_CANARY}@db.example:5432/rtarf",
            "RTARF_ES_USERNAME": "elastic",
            "RTARF_ES_PASSWORD": ES_CANARY,
            "RTARF_API_TOKEN": TOKEN_CANARY,
        }
    )
    configure_logging(settings)
    logger = logging.getLogger("rtarf_sync.test_secrets")
    logger.warning("connecting to %s", settings.database_url.reveal())
    logger.error("token %s and password %s", TOKEN_CANARY, ES_CANARY)
    try:
        raise ConnectionError(f"auth failed for elastic:{ES_CANARY}")
    except ConnectionError:
        logger.exception("engine call failed")
    logging.getLogger("some.driver").warning("dsn=postgresql://other:%s@h/db", "plain-text-pw")
    stderr = capsys.readouterr().err
    assert _leaks(stderr) == []
    assert "plain-text-pw" not in stderr  # any URL password is masked, known or not
    assert "token *** and password ***" in stderr
    assert "auth failed for elastic:***" in stderr
    assert "Traceback" in stderr


def test_the_redactor_masks_encoded_forms_of_the_database_password() -> None:
    settings = load_settings({"RTARF_DATABASE_URL": "postgresql://app:p%40ss%2Fw0rd-xyz@db:5432/rtarf"})
    redactor = configure_logging(settings)
    assert "p@ss/w0rd-xyz" not in redactor("decoded p@ss/w0rd-xyz")
    assert "p%40ss%2Fw0rd-xyz" not in redactor("encoded p%40ss%2Fw0rd-xyz")


def test_a_record_that_cannot_be_rendered_is_kept_not_raised() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("not a number",), None)
    assert RedactingFilter(Redactor(["secret"])).filter(record) is True
    assert "could not be rendered" in record.getMessage()


@pytest.mark.e2e
@pytest.mark.parametrize("database", ["reachable", "unreachable"])
def test_no_canary_leaves_a_gunicorn_server(
    database: str, tmp_path: Path, opensearch: EngineHttp, index_name: str, table_name: str, database_url: str
) -> None:
    load_sample(opensearch, index_name, 20)
    url = make_url(database_url).set(password=DB_CANARY)  # trust authentication ignores the password
    if database == "unreachable":
        url = url.set(port=free_port())
    env = {
        "RTARF_DATABASE_URL": url.render_as_string(hide_password=False),
        "RTARF_ES_URL": opensearch.url,
        "RTARF_ES_INDEX": index_name,
        "RTARF_TABLE": table_name,
        "RTARF_ES_USERNAME": "elastic",
        "RTARF_ES_PASSWORD": ES_CANARY,
        "RTARF_API_TOKEN": TOKEN_CANARY,
        "RTARF_LOG_LEVEL": "DEBUG",
        "RTARF_SYNC_ENABLED": "false",
        "RTARF_SYNC_MAX_RETRIES": "1",
        "RTARF_SYNC_RETRY_MAX_SECONDS": "0.1",
    }
    server = GunicornProcess(tmp_path, env)
    try:
        server.start()
        auth = {"Authorization": f"Bearer {TOKEN_CANARY}"}
        synced = server.post("/scheduler/sync-now", headers=auth)
        assert synced.status_code == (200 if database == "reachable" else 503), synced.text
        bodies = [synced.text, server.post("/scheduler/start", headers={"Authorization": "Bearer nope"}).text]
        bodies += [server.get(path).text for path in ("/scheduler/status", "/scheduler/jobs", "/readyz", "/metrics")]
        assert server.wait_after_sigterm(30) == 0
    finally:
        server.close()
    log = server.log()
    assert "Sync completed successfully" in log or "Sync failed" in log
    for body in bodies:
        assert _leaks(body) == [], body
    assert _leaks(log) == []
