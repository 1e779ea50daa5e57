"""Shared fixtures: real PostgreSQL, real OpenSearch, the Elasticsearch protocol server.

Engines start once per test session, on first use, and stop at the end of
the session, also when tests fail or the run is interrupted. Set
`RTARF_TEST_DATABASE_URL` or `RTARF_TEST_OPENSEARCH_URL` to use engines that
are already running instead.
"""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa

from config import Settings, load_settings
from tests.infra.esserver import EsProtocolServer
from tests.infra.harness import OpenSearchNode, PostgresCluster
from tests.infra.harness.esprocess import EsServerProcess
from tests.infra.harness.http import EngineHttp
from tests.infra.harness.process import say, set_printer
from tests.infra.support import held_sink

ENGINE_KINDS = ("opensearch", "elasticsearch")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C and SIGTERM (a CI time-out) stop the run through teardown, so engines are stopped and removed.

    A shell that starts pytest in the background hands it SIGINT ignored; take it back.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    set_printer(_terminal_printer(config))


def _terminal_printer(config: pytest.Config) -> Callable[[str], None]:
    """Engine start-up and download progress go to the terminal, past pytest's output capture."""

    def show(line: str) -> None:
        # Looked up per line: the terminal reporter registers after conftest's configure hook.
        capture = config.pluginmanager.getplugin("capturemanager")
        terminal = config.pluginmanager.getplugin("terminalreporter")
        if capture is None or terminal is None:
            print(line, flush=True)
            return
        with capture.global_and_fixture_disabled():
            terminal.write_line(line)

    return show


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strip the service's own variables so no test depends on the caller's shell."""
    for name in list(os.environ):
        if name.startswith("RTARF_") and not name.startswith("RTARF_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster | None]:
    """A throwaway cluster, or None when RTARF_TEST_DATABASE_URL points at one."""
    if os.environ.get("RTARF_TEST_DATABASE_URL"):
        say("PostgreSQL: using RTARF_TEST_DATABASE_URL")
        yield None
        return
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def database_url(postgres_cluster: PostgresCluster | None) -> str:
    """SQLAlchemy URL of the test database."""
    if postgres_cluster is None:
        return os.environ["RTARF_TEST_DATABASE_URL"]
    return postgres_cluster.create_database("rtarf_test")


@pytest.fixture(scope="session")
def db_engine(database_url: str) -> Iterator[sa.Engine]:
    """A SQLAlchemy engine on the test database, for assertions and set-up."""
    engine = sa.create_engine(database_url, pool_pre_ping=True)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def opensearch() -> Iterator[EngineHttp]:
    """The real OpenSearch node."""
    url = os.environ.get("RTARF_TEST_OPENSEARCH_URL")
    if url:
        say(f"OpenSearch: using RTARF_TEST_OPENSEARCH_URL={url}")
        yield EngineHttp(url, "opensearch")
        return
    # Expired search contexts are reaped every second instead of every minute, and a new point in
    # time is not kept for 30 s while it is created, so a test can see one really expire after a
    # keep-alive of a few seconds.
    node = OpenSearchNode(settings={"search.keep_alive_interval": "1s", "point_in_time.init.keep_alive": "2s"}).start()
    try:
        yield EngineHttp(node.url, "opensearch")
    finally:
        node.stop()


@pytest.fixture(scope="session")
def es_server() -> Iterator[EsProtocolServer]:
    """The in-repo Elasticsearch 8 protocol server, in a process of its own (faults over HTTP)."""
    server = EsServerProcess().start()
    try:
        yield server  # type: ignore[misc]  # the same faults, request_log and url, over HTTP
    finally:
        server.stop()


@pytest.fixture
def elasticsearch(es_server: EsProtocolServer) -> Iterator[EngineHttp]:
    """The protocol server as an engine, with faults cleared after each test."""
    es_server.faults.reset()
    yield EngineHttp(es_server.url, "elasticsearch")
    es_server.faults.reset()


@pytest.fixture(params=ENGINE_KINDS)
def engine(request: pytest.FixtureRequest) -> EngineHttp:
    """Each engine in turn: the real OpenSearch node, then the Elasticsearch protocol server."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def index_name(request: pytest.FixtureRequest) -> str:
    """A fresh index name per test, matching the default pattern rtarf-events*."""
    return f"rtarf-events-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sink_parts(db_engine: sa.Engine, table_name: str) -> tuple[Any, Any, Any, int]:
    """A sink on a fresh table, holding the lease, with a run row to count into."""
    return held_sink(db_engine, table_name)


@pytest.fixture
def table_name() -> str:
    """A fresh target table per test; state rows are keyed by it, so tests never share a cursor."""
    return f"ev_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_settings(database_url: str, table_name: str) -> Callable[..., Settings]:
    """Build Settings the way start-up does, from RTARF_ variables given as keywords."""

    def build(engine: EngineHttp | None = None, index: str | None = None, **env: Any) -> Settings:
        environ = {
            "RTARF_DATABASE_URL": database_url,
            "RTARF_TABLE": table_name,
            "RTARF_SYNC_RETRY_MAX_SECONDS": "0.2",
            "RTARF_SYNC_SETTLE_SECONDS": "0",
        }
        if engine is not None:
            environ["RTARF_ES_URL"] = engine.url
            environ["RTARF_SOURCE_ENGINE"] = engine.kind
        if index is not None:
            environ["RTARF_ES_INDEX"] = index
        environ.update({key: str(value) for key, value in env.items()})
        return load_settings(environ)

    return build
