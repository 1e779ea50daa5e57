"""Retention drops whole expired partitions, keeps legal holds, and puts what it dropped out of every scope.

Days are placed relative to today (runs compute the horizon from the clock):
days 10, 9 and 8 ago have ended before now - 7 days; 9 ago is under a legal
hold. The engine keeps every event: a later full run (hard deletes, reading
everything), a verification with repair and a range run over the dropped days
neither write the dropped events back nor delete or count the held ones (not
even one the engine has deleted since: below the horizon, rows are frozen).
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.checks.repair import verify_and_repair
from rtarf_sync.engine.checks.replay import DeadLetterReplay
from rtarf_sync.engine.runs.retention import Retention
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.engine.target.partitions import create_partitions, partition_of
from rtarf_sync.engine.target.tables import build_tables, create_tables
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import index_docs, rows, scalar

DAY = timedelta(days=1)
EVERYTHING = {"RTARF_SYNC_OVERLAP_SECONDS": 86400 * 3650}


def _today() -> datetime:
    now = datetime.now(timezone.utc)
    return datetime(now.year, now.month, now.day, tzinfo=timezone.utc)


def _days_ago(n: int) -> datetime:
    return _today() - n * DAY


def stored_days(db: sa.Engine, table: str) -> dict[int, int]:
    """Rows per day, as days before today."""
    found = rows(db, f'SELECT event_timestamp FROM "{table}" WHERE deleted_at IS NULL')
    days: dict[int, int] = {}
    for row in found:
        ago = (_today() - row.event_timestamp.astimezone(timezone.utc)).days + 1
        days[ago] = days.get(ago, 0) + 1
    return days


def retention_settings(make_settings: Callable[..., Settings], engine: EngineHttp, index: str, **env: Any) -> Settings:
    """Daily partitions kept 7 days; the day 9 days ago held."""
    held = _days_ago(9).date()
    return dataclasses.replace(
        make_settings(engine, index, **env),
        partition="day",
        retention_days=7,
        legal_hold=((held, held + DAY),),
    )


def test_retention_drops_expired_days_keeps_holds_and_leaves_them_out_of_every_scope(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
) -> None:
    # Two events on each of the days 10, 9, 8, 5 and 1 ago (never 7 ago: the horizon moves through it).
    ages = (10, 9, 8, 5, 1)
    engine.create_index(index_name)
    index_docs(
        engine,
        index_name,
        {
            f"a{age}-{n}": {"@timestamp": engine_time(_days_ago(age) + timedelta(hours=6 + n))}
            for age in ages
            for n in (0, 1)
        },
    )
    engine.refresh(index_name)
    # Loaded without retention first (the events are older than the horizon), then retention applies.
    loader = SyncService(dataclasses.replace(make_settings(engine, index_name, **EVERYTHING), partition="day"))
    try:
        assert loader.run().inserted == 10
    finally:
        loader.close()
    assert stored_days(db_engine, table_name) == {age: 2 for age in ages}

    service = SyncService(retention_settings(make_settings, engine, index_name, RTARF_DELETE_MODE="hard", **EVERYTHING))
    try:
        outcome = Retention(service).run()
        assert (outcome.status, outcome.error) == ("success", None)
        assert outcome.to_dict()["dropped"] == [
            {"from": _days_ago(age).isoformat(), "to": (_days_ago(age) + DAY).isoformat(), "rows": 2} for age in (10, 8)
        ]
        assert outcome.kept_for_hold == [{"from": _days_ago(9).isoformat(), "to": _days_ago(8).isoformat()}]
        assert stored_days(db_engine, table_name) == {9: 2, 5: 2, 1: 2}
        assert (
            scalar(db_engine, "SELECT to_regclass(:p)", p=partition_of(table_name, "day", _days_ago(10)).name) is None
        )
        recorded = rows(
            db_engine,
            "SELECT status, deleted, range_from FROM rtarf_sync_runs WHERE target_table = :t AND mode = 'retention' "
            "ORDER BY id",
            t=table_name,
        )
        assert [(r.status, r.deleted, r.range_from) for r in recorded] == [
            ("success", 2, _days_ago(10)),
            ("success", 2, _days_ago(8)),
        ]
        assert Retention(service).run().dropped == []  # nothing more to drop

        # The engine still has every event but one held one: none is written back, nothing is deleted.
        engine.call("DELETE", f"/{index_name}/_doc/a9-0")
        engine.refresh(index_name)
        full = service.run(mode="full")
        assert (full.status, full.inserted, full.updated, full.deleted) == ("success", 0, 0, 0), full.error
        ranged = service.run(mode="range", start=_days_ago(11), end=_days_ago(7))
        assert (ranged.status, ranged.inserted, ranged.deleted) == ("success", 0, 0), ranged.error
        answer = verify_and_repair(service, start=_days_ago(11), end=_today(), bucket="1d", repair_drift=True)
        assert answer["in_step"] is True, answer
        assert answer["from"] > _days_ago(8).isoformat()  # the window starts at the horizon
    finally:
        service.close()
    assert stored_days(db_engine, table_name) == {9: 2, 5: 2, 1: 2}


def test_a_hold_of_any_overlap_keeps_a_month_and_the_rows_without_time_are_never_dropped(
    db_engine: sa.Engine, table_name: str, make_settings: Callable[..., Settings]
) -> None:
    tables = build_tables(table_name, partition="month")
    create_tables(db_engine, tables)
    months = [datetime(2024, m, 1, tzinfo=timezone.utc) for m in (1, 2, 3)]
    with db_engine.begin() as connection:
        create_partitions(connection, table_name, [partition_of(table_name, "month", month) for month in months])
        for n, month in enumerate(months):
            connection.execute(
                sa.text(
                    f'INSERT INTO "{table_name}" (es_index, es_id, event_timestamp, source) VALUES (:i, :id, :t, :s)'
                ),
                {"i": "i", "id": f"m{n}", "t": month + timedelta(days=3), "s": "{}"},
            )
        connection.execute(
            sa.text(f"INSERT INTO \"{table_name}\" (es_index, es_id, source) VALUES ('i', 'untimed', '{{}}')")
        )
    # One day of hold inside February keeps all of February.
    settings = dataclasses.replace(
        make_settings(), partition="month", retention_days=30, legal_hold=((date(2024, 2, 28), date(2024, 2, 29)),)
    )
    service = SyncService(settings)
    try:
        outcome = Retention(service).run()
    finally:
        service.close()
    assert [part["from"][:7] for part in outcome.dropped] == ["2024-01", "2024-03"]
    assert [part["from"][:7] for part in outcome.kept_for_hold] == ["2024-02"]
    assert sorted(r.es_id for r in rows(db_engine, f'SELECT es_id FROM "{table_name}"')) == ["m1", "untimed"]


def test_a_dead_letter_older_than_the_horizon_is_resolved_as_gone_not_written(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
) -> None:
    engine.create_index(index_name)
    index_docs(engine, index_name, {"old": {"n": 1}, "new": {"n": 2}, "ok": {"@timestamp": engine_time(_days_ago(1))}})
    engine.refresh(index_name)
    service = SyncService(retention_settings(make_settings, engine, index_name, **EVERYTHING))
    try:
        assert service.run().failed == 2  # no time: both set aside
        # Fixed in the engine: one with a time past retention, one within it.
        index_docs(
            engine,
            index_name,
            {"old": {"@timestamp": engine_time(_days_ago(20))}, "new": {"@timestamp": engine_time(_days_ago(2))}},
        )
        engine.refresh(index_name)
        outcome = DeadLetterReplay(service).run()
    finally:
        service.close()
    assert (outcome.replayed, outcome.gone, outcome.still_failing) == (1, 1, 0), outcome.to_dict()
    assert sorted(r.es_id for r in rows(db_engine, f'SELECT es_id FROM "{table_name}"')) == ["new", "ok"]
    assert (
        scalar(
            db_engine,
            "SELECT count(*) FROM rtarf_sync_dead_letters WHERE target_table = :t AND resolved_at IS NULL",
            t=table_name,
        )
        == 0
    )
