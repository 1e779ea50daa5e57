"""Versioned migrations: a first-release database upgrades in place, and racing processes do not collide."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from rtarf_sync.engine.target import migrations
from rtarf_sync.engine.target.tables import build_tables, create_tables

RELEASE_ONE = Path(__file__).resolve().parents[3] / "tests" / "infra" / "fixtures" / "release_one_schema.sql"


def _engine_on(database_url: str, schema: str) -> sa.Engine:
    return sa.create_engine(database_url, connect_args={"options": f"-csearch_path={schema}"})


@pytest.fixture
def schema(db_engine: sa.Engine) -> Iterator[str]:
    """A fresh schema of its own, so the state tables start absent."""
    name = f"m_{uuid.uuid4().hex[:10]}"
    with db_engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {name}")
    yield name
    with db_engine.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def schema_engine(database_url: str, schema: str) -> Iterator[sa.Engine]:
    """An engine whose search_path is that schema."""
    engine = _engine_on(database_url, schema)
    yield engine
    engine.dispose()


def _columns(engine: sa.Engine, table: str) -> set[str]:
    with engine.connect() as connection:
        return {column["name"] for column in sa.inspect(connection).get_columns(table)}


def _release_one(engine: sa.Engine, schema: str, target: str) -> None:
    """Build the tables exactly as the first release's create_all did, and fill them."""
    ddl = RELEASE_ONE.read_text().replace("{schema}", schema).replace("{target}", target)
    with engine.begin() as connection:
        connection.exec_driver_sql(ddl)
        connection.exec_driver_sql(
            f"INSERT INTO {target} (es_index, es_id, event_timestamp, source, es_seq_no, es_primary_term) "
            "SELECT 'idx', 'doc-' || n, now() - n * interval '1 minute', jsonb_build_object('n', n), n, 1 "
            "FROM generate_series(1, 250) n"
        )
        connection.exec_driver_sql(
            "INSERT INTO rtarf_sync_cursor (target_table, source_index, cursor_value) "
            f"VALUES ('{target}', 'rtarf-events*', now())"
        )
        connection.exec_driver_sql(
            "INSERT INTO rtarf_sync_runs (target_table, source_index, trigger, owner, status, started_at, inserted) "
            f"VALUES ('{target}', 'rtarf-events*', 'scheduled', 'h:1', 'success', now(), 250)"
        )
        connection.exec_driver_sql(
            "INSERT INTO rtarf_sync_dead_letters (target_table, es_index, es_id, es_seq_no, es_primary_term, "
            f"reason, raw_document) VALUES ('{target}', 'idx', 'bad', 1, 1, 'missing cursor field', '{{}}')"
        )


def _snapshot(engine: sa.Engine, target: str) -> tuple[list[tuple[object, ...]], ...]:
    with engine.connect() as connection:
        return tuple(
            list(connection.exec_driver_sql(sql).all())
            for sql in (
                f"SELECT es_index, es_id, event_timestamp, source::text, es_seq_no, es_primary_term, "
                f"first_synced_at, last_synced_at FROM {target} ORDER BY es_id",
                "SELECT target_table, source_index, cursor_value FROM rtarf_sync_cursor",
                "SELECT id, trigger, status, inserted FROM rtarf_sync_runs",
                "SELECT id, es_id, reason FROM rtarf_sync_dead_letters",
            )
        )


def test_a_first_release_database_upgrades_in_place_with_every_row_kept(schema_engine: sa.Engine, schema: str) -> None:
    target = "release_one_events"
    _release_one(schema_engine, schema, target)
    before = _snapshot(schema_engine, target)
    assert "deleted_at" not in _columns(schema_engine, target)
    assert migrations.current(schema_engine, target) == set()

    create_tables(schema_engine, build_tables(target))

    assert _snapshot(schema_engine, target) == before
    assert migrations.current(schema_engine, target) == migrations.heads() >= {"0005_pipeline_controls"}
    assert "deleted_at" in _columns(schema_engine, target)
    assert {"mode", "deleted", "range_from", "range_to"} <= _columns(schema_engine, "rtarf_sync_runs")
    assert "resolved_at" in _columns(schema_engine, "rtarf_sync_dead_letters")
    with schema_engine.connect() as connection:
        # Existing rows take the defaults: live, and the only mode the first release had.
        assert connection.exec_driver_sql(f"SELECT count(*) FROM {target} WHERE deleted_at IS NULL").scalar() == 250
        assert connection.exec_driver_sql("SELECT mode, deleted FROM rtarf_sync_runs").one() == ("incremental", 0)


def test_a_second_target_in_the_same_database_gets_its_own_table(schema_engine: sa.Engine, schema: str) -> None:
    _release_one(schema_engine, schema, "first_target")
    create_tables(schema_engine, build_tables("first_target"))
    create_tables(schema_engine, build_tables("second_target"))
    assert "deleted_at" in _columns(schema_engine, "second_target")
    assert migrations.current(schema_engine, "second_target") == migrations.heads()
    create_tables(schema_engine, build_tables("first_target"))  # at head: nothing to do, nothing fails


def test_processes_that_start_at_once_do_not_race(schema_engine: sa.Engine, schema: str, database_url: str) -> None:
    target = "raced_events"
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start_up() -> None:
        engine = _engine_on(database_url, schema)
        try:
            barrier.wait(10)
            create_tables(engine, build_tables(target))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start_up) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a start-up is stuck"
    assert errors == []
    assert migrations.current(schema_engine, target) == migrations.heads()
    with schema_engine.connect() as connection:
        versions = connection.exec_driver_sql(f"SELECT count(*) FROM {migrations.version_table(target)}").scalar()
    assert versions == 1


def test_version_tables_stay_valid_identifiers_for_long_target_names() -> None:
    long_name = "t" * 63
    name = migrations.version_table(long_name)
    assert len(name) <= 63 and name != migrations.version_table("t" * 62)
