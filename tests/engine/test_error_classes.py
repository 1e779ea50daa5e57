"""Transient or permanent: the classification that decides between a retry and an abort.

The engine side runs both client adapters against real HTTP answers (the
protocol server's injected errors, the real OpenSearch node's own refusals,
a port where nothing listens); the PostgreSQL side provokes each error class
for real (serialization failure, deadlock, terminated backend, bad data,
unique violation).
"""

from __future__ import annotations

import threading
from typing import Callable

import pytest
import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.source.clients import ElasticsearchApi, OpenSearchApi, classify
from rtarf_sync.engine.errors import ContextExpired, SourceError, TooManyBuckets, TransientError
from rtarf_sync.engine.errors import is_transient
from tests.infra.esserver import EsProtocolServer
from tests.infra.harness.http import EngineHttp
from tests.infra.harness.process import free_port

ADAPTERS = {"elasticsearch": ElasticsearchApi, "opensearch": OpenSearchApi}
TRANSIENT = (408, 429, 500, 502, 503, 504)
PERMANENT = (400, 401, 403, 404, 405, 409, 413)


@pytest.mark.parametrize("status", TRANSIENT)
def test_transient_statuses_are_retryable(status: int) -> None:
    assert isinstance(classify(status, {"error": {"type": "x", "reason": "y"}}, "search"), TransientError)


@pytest.mark.parametrize("status", PERMANENT)
def test_other_error_statuses_abort(status: int) -> None:
    error = classify(status, {"error": {"type": "illegal_argument_exception", "reason": "bad"}}, "search")
    assert type(error) is SourceError
    assert f"HTTP {status} illegal_argument_exception bad" in str(error)


@pytest.mark.parametrize("kind", ["es_rejected_execution_exception", "rejected_execution_exception"])
def test_rejected_execution_is_transient_whatever_the_status(kind: str) -> None:
    body = {
        "error": {
            "root_cause": [{"type": kind, "reason": "queue full"}],
            "type": "search_phase_execution_exception",
            "reason": "all shards failed",
        }
    }
    assert isinstance(classify(400, body, "search"), TransientError)


def test_an_unknown_search_context_is_expiry_not_a_retry() -> None:
    body = {
        "error": {
            "root_cause": [{"type": "search_context_missing_exception", "reason": "No search context"}],
            "type": "search_phase_execution_exception",
        },
        "status": 404,
    }
    assert type(classify(404, body, "search page")) is ContextExpired


@pytest.mark.parametrize("status", [400, 503])
def test_too_many_buckets_is_neither_retried_nor_silent_whatever_the_status(status: int) -> None:
    """The cause sits beneath an empty root cause list (as OpenSearch answers a reduce that overflows)."""
    body = {
        "error": {
            "root_cause": [],
            "type": "search_phase_execution_exception",
            "reason": "",
            "caused_by": {
                "type": "too_many_buckets_exception",
                "reason": "Trying to create too many buckets. Must be less than or equal to: [200] but was [201].",
            },
        }
    }
    error = classify(status, body, "aggregate")
    assert type(error) is TooManyBuckets
    assert "Must be less than or equal to: [200]" in str(error)


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
@pytest.mark.parametrize("status", TRANSIENT + (400, 403))
def test_each_client_adapter_classifies_real_http_answers(
    adapter: str,
    status: int,
    elasticsearch: EngineHttp,
    es_server: EsProtocolServer,
    make_settings: Callable[..., Settings],
) -> None:
    api = ADAPTERS[adapter](make_settings(elasticsearch, RTARF_ES_REQUEST_TIMEOUT_SECONDS=5))
    es_server.faults.fail_next(1, status=status)
    try:
        with pytest.raises((TransientError, SourceError)) as caught:
            api.info()
    finally:
        api.close()
    expected = TransientError if status in TRANSIENT else SourceError
    assert type(caught.value) is expected, caught.value
    assert f"HTTP {status}" in str(caught.value)


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_a_refused_connection_is_transient(adapter: str, make_settings: Callable[..., Settings]) -> None:
    api = ADAPTERS[adapter](make_settings(RTARF_ES_URL=f"http://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(TransientError):
            api.info()
    finally:
        api.close()


def test_the_real_node_missing_index_and_unknown_pit_are_classified(
    opensearch: EngineHttp, make_settings: Callable[..., Settings]
) -> None:
    api = OpenSearchApi(make_settings(opensearch))
    try:
        with pytest.raises(SourceError) as missing:
            api.open_pit("rtarf-no-such-index-4f1", "10s")
        assert type(missing.value) is SourceError and "index_not_found_exception" in str(missing.value)
        # A point-in-time id of a context that no longer exists: an id made by the node, then deleted.
        opensearch.create_index("rtarf-events-pit-gone")
        pit_id = api.open_pit("rtarf-events-pit-gone", "10s")
        api.close_pit(pit_id)
        with pytest.raises(ContextExpired):
            api.search({"size": 1, "pit": {"id": pit_id, "keep_alive": "10s"}, "sort": [{"_id": "asc"}]})
    finally:
        opensearch.call("DELETE", "/rtarf-events-pit-gone", ok_missing=True)
        api.close()


# -- PostgreSQL -------------------------------------------------------------------------------


def _table(db: sa.Engine, name: str) -> None:
    with db.begin() as connection:
        connection.execute(sa.text(f'CREATE TABLE "{name}" (k int primary key, v int)'))
        connection.execute(sa.text(f'INSERT INTO "{name}" VALUES (1, 0), (2, 0)'))


def test_a_real_deadlock_is_transient(db_engine: sa.Engine, table_name: str) -> None:
    _table(db_engine, table_name)
    first, second = db_engine.connect(), db_engine.connect()
    errors: list[sa.exc.DBAPIError] = []
    locked = threading.Barrier(2)

    def cross(connection: sa.Connection, a: int, b: int) -> None:
        try:
            connection.execute(sa.text(f'UPDATE "{table_name}" SET v = v + 1 WHERE k = {a}'))
            locked.wait(10)
            connection.execute(sa.text(f'UPDATE "{table_name}" SET v = v + 1 WHERE k = {b}'))
            connection.commit()
        except sa.exc.DBAPIError as error:
            errors.append(error)
            connection.rollback()

    threads = [threading.Thread(target=cross, args=(first, 1, 2)), threading.Thread(target=cross, args=(second, 2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    first.close()
    second.close()
    assert [error.orig.sqlstate for error in errors] == ["40P01"]  # type: ignore[union-attr]  # orig: a psycopg error
    assert is_transient(errors[0])


def test_a_terminated_backend_is_transient(db_engine: sa.Engine) -> None:
    victim = db_engine.connect()
    pid = victim.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    victim.commit()
    with db_engine.connect() as killer:
        assert killer.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar() is True
    try:
        with pytest.raises(sa.exc.DBAPIError) as caught:
            victim.execute(sa.text("SELECT 1"))
    finally:
        victim.invalidate()
        victim.close()
    assert is_transient(caught.value)


def test_a_refused_database_connection_is_transient() -> None:
    engine = sa.create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/rtarf", connect_args={"connect_timeout": 2}
    )
    try:
        with pytest.raises(sa.exc.DBAPIError) as caught:
            engine.connect()
    finally:
        engine.dispose()
    assert is_transient(caught.value)


@pytest.mark.parametrize(("setting", "sqlstate"), [("lock_timeout", "55P03"), ("statement_timeout", "57014")])
def test_lock_and_statement_timeouts_are_transient(
    setting: str, sqlstate: str, db_engine: sa.Engine, table_name: str
) -> None:
    _table(db_engine, table_name)
    with db_engine.connect() as holder, db_engine.connect() as waiter:
        holder.execute(sa.text(f'LOCK TABLE "{table_name}" IN ACCESS EXCLUSIVE MODE'))
        waiter.execute(sa.text(f"SET {setting} = '100ms'"))
        with pytest.raises(sa.exc.DBAPIError) as caught:
            waiter.execute(sa.text(f'SELECT * FROM "{table_name}"'))
        holder.rollback()
    assert caught.value.orig.sqlstate == sqlstate  # type: ignore[union-attr]  # orig: a psycopg error
    assert is_transient(caught.value)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO \"{t}\" VALUES (3, 'not a number')",
        'INSERT INTO "{t}" VALUES (1, 1)',
        'SELECT no_such_column FROM "{t}"',
    ],
)
def test_bad_data_and_bad_statements_are_permanent(statement: str, db_engine: sa.Engine, table_name: str) -> None:
    _table(db_engine, table_name)
    with db_engine.connect() as connection, pytest.raises(sa.exc.DBAPIError) as refused:
        connection.execute(sa.text(statement.format(t=table_name)))
    assert not is_transient(refused.value)
