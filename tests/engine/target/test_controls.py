"""The operators' stop/start intent in rtarf_sync_controls, against the real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest
import sqlalchemy as sa

from rtarf_sync.engine.target.controls import read_paused, write_paused
from rtarf_sync.engine.target.tables import build_tables, create_tables


@pytest.fixture
def fresh_engine(database_url: str, db_engine: sa.Engine) -> Iterator[sa.Engine]:
    """An engine on a schema of its own, so the state tables start absent."""
    schema = f"c_{uuid.uuid4().hex[:10]}"
    with db_engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine = sa.create_engine(database_url, connect_args={"options": f"-csearch_path={schema}"})
    yield engine
    engine.dispose()
    with db_engine.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


def test_no_table_and_no_row_mean_nobody_stopped_it(fresh_engine: sa.Engine) -> None:
    tables = build_tables("events_a")
    assert read_paused(fresh_engine, tables.controls, "events_a") is None  # before any migration
    create_tables(fresh_engine, tables)
    assert read_paused(fresh_engine, tables.controls, "events_a") is None


def test_each_write_is_read_back_and_returns_the_intent_it_replaces(fresh_engine: sa.Engine) -> None:
    tables = build_tables("events_a")
    create_tables(fresh_engine, tables)
    assert write_paused(fresh_engine, tables.controls, "events_a", True, "host:1:aa") is None
    assert read_paused(fresh_engine, tables.controls, "events_a") is True
    assert write_paused(fresh_engine, tables.controls, "events_a", True, "host:2:bb") is True
    assert write_paused(fresh_engine, tables.controls, "events_a", False, "host:3:cc") is True
    assert read_paused(fresh_engine, tables.controls, "events_a") is False
    assert write_paused(fresh_engine, tables.controls, "events_a", False, "host:3:cc") is False
    with fresh_engine.connect() as connection:
        row = connection.execute(sa.select(tables.controls)).one()
    assert (row.target_table, row.paused, row.changed_by) == ("events_a", False, "host:3:cc")
    assert row.changed_at is not None


def test_each_target_table_has_its_own_intent(fresh_engine: sa.Engine) -> None:
    tables = build_tables("events_a")
    create_tables(fresh_engine, tables)
    write_paused(fresh_engine, tables.controls, "events_a", True, "host:1:aa")
    assert read_paused(fresh_engine, tables.controls, "events_b") is None
    write_paused(fresh_engine, tables.controls, "events_b", False, "host:1:aa")
    assert (
        read_paused(fresh_engine, tables.controls, "events_a"),
        read_paused(fresh_engine, tables.controls, "events_b"),
    ) == (True, False)
