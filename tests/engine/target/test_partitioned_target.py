"""A target partitioned by day: every write path keeps one row per document, in the partition of its time.

Sync (COPY of new documents, the version-guarded upsert), reconciliation, dead
letters and their replay, verification and repair run on both engines against a
table range-partitioned on event_timestamp. A document whose cursor value moves
(an `event.ingested` cursor) stays one row and moves to its new partition; an
older version never moves it back, on the page path and the row-by-row path.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import sqlalchemy as sa

from config import ColumnSpec, Settings
from rtarf_sync.engine.checks.repair import verify_and_repair
from rtarf_sync.engine.checks.replay import DeadLetterReplay
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.lease import Lease
from rtarf_sync.engine.runs.records import RunHistory
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.documents import EventRow, engine_time
from rtarf_sync.engine.target.partitions import default_name, partition_of
from rtarf_sync.engine.target.sink import PostgresSink
from rtarf_sync.engine.target.tables import build_tables, create_tables
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import deleted_keys, engine_docs, index_docs, rows, scalar, table_docs

BASE = datetime(2026, 3, 10, 6, tzinfo=timezone.utc)
DAY = timedelta(days=1)
EVERYTHING = {"RTARF_SYNC_OVERLAP_SECONDS": 86400 * 3650}


def placed(db: sa.Engine, table: str) -> dict[str, str]:
    """Each stored document's id and the partition holding it."""
    found = rows(db, f'SELECT es_id, tableoid::regclass::text AS part FROM "{table}"')
    return {row.es_id: row.part.strip('"') for row in found}


def test_every_path_works_on_a_day_partitioned_target(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
) -> None:
    docs: dict[str, dict[str, Any]] = {
        f"d{day}-{n}": {"@timestamp": engine_time(BASE + day * DAY + n * timedelta(hours=1)), "n": n}
        for day in range(3)
        for n in range(3)
    }
    docs["no-time"] = {"n": 99}
    engine.create_index(index_name)
    index_docs(engine, index_name, docs)
    engine.refresh(index_name)
    settings = dataclasses.replace(
        make_settings(engine, index_name, RTARF_DELETE_MODE="hard", **EVERYTHING), partition="day"
    )
    service = SyncService(settings)
    try:
        first = service.run()
        assert (first.status, first.inserted, first.failed) == ("partial", 9, 1), first.error
        assert scalar(db_engine, "SELECT relkind FROM pg_class WHERE relname = :t", t=table_name) == "p"
        expected = {
            doc_id: partition_of(table_name, "day", BASE + int(doc_id[1]) * DAY).name
            for doc_id in docs
            if doc_id != "no-time"
        }
        assert placed(db_engine, table_name) == expected

        # The cursor value moves two days on: one row, now in the later day's partition.
        index_docs(engine, index_name, {"d0-0": {"@timestamp": engine_time(BASE + 2 * DAY), "n": 100}})
        # The document without a time gets one: its replay writes it like any other.
        index_docs(engine, index_name, {"no-time": {"@timestamp": engine_time(BASE + DAY), "n": 99}})
        engine.call("DELETE", f"/{index_name}/_doc/d1-2")
        engine.refresh(index_name)
        moved = service.run()
        assert (moved.status, moved.updated, moved.inserted) == ("success", 1, 1), moved.error
        assert scalar(db_engine, f"SELECT count(*) FROM \"{table_name}\" WHERE es_id = 'd0-0'") == 1
        assert placed(db_engine, table_name)["d0-0"] == partition_of(table_name, "day", BASE + 2 * DAY).name

        replay = DeadLetterReplay(service).run()
        assert replay.to_dict()["replayed"] == 1  # resolved; the row the run wrote stays the only one
        assert placed(db_engine, table_name)["no-time"] == partition_of(table_name, "day", BASE + DAY).name

        full = service.run(mode="full")
        assert (full.status, full.deleted) == ("success", 1), full.error
        assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)

        # A row lost by hand is drift in its bucket, and the repair writes it back into its partition.
        with db_engine.begin() as connection:
            connection.execute(sa.text(f"DELETE FROM \"{table_name}\" WHERE es_id = 'd1-0'"))
        answer = verify_and_repair(service, start=BASE - DAY, end=BASE + 3 * DAY, bucket="1d", repair_drift=True)
    finally:
        service.close()
    assert [(d["source"], d["target"]) for d in answer["differing"]] == [(3, 2)]
    assert answer["after_repair"]["in_step"] is True
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
    assert deleted_keys(db_engine, table_name) == set()
    assert placed(db_engine, table_name)["d1-0"] == partition_of(table_name, "day", BASE + DAY).name


def test_a_dead_letter_replay_writes_into_a_partition_made_for_it(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
) -> None:
    engine.create_index(index_name)
    index_docs(engine, index_name, {"late": {"n": 1}, "ok": {"@timestamp": engine_time(BASE)}})
    engine.refresh(index_name)
    settings = dataclasses.replace(make_settings(engine, index_name, **EVERYTHING), partition="month")
    service = SyncService(settings)
    try:
        assert service.run().failed == 1
        # Fixed in the engine, with a time in a month no partition exists for yet.
        index_docs(engine, index_name, {"late": {"@timestamp": "2019-07-04T00:00:00Z"}})
        engine.refresh(index_name)
        outcome = DeadLetterReplay(service).run()
    finally:
        service.close()
    assert outcome.to_dict()["replayed"] == 1, outcome.to_dict()
    assert placed(db_engine, table_name)["late"] == partition_of(table_name, "month", datetime(2019, 7, 4)).name


# -- the sink alone: moves under the version guard ----------------------------------------------


def _sink(db: sa.Engine, table: str) -> tuple[PostgresSink, Fence, int]:
    tables = build_tables(table, partition="day")
    create_tables(db, tables)
    lease = Lease(tables.lease, table, 60)
    with db.begin() as connection:
        fence = lease.acquire(connection, "test-owner")
    assert isinstance(fence, Fence)
    run_id = RunHistory(db, tables, "idx").start("test", "test-owner", datetime.now(timezone.utc))
    return PostgresSink(db, tables, lease.ttl, "idx"), fence, run_id


def _row(doc_id: str, seq_no: int, stamp: datetime, note: str = "") -> EventRow:
    return EventRow("idx", doc_id, stamp, f'{{"note": "{note}"}}'.encode(), seq_no, 1)


def _where(db: sa.Engine, table: str, doc_id: str) -> list[tuple[str, int | None]]:
    found = rows(db, f'SELECT tableoid::regclass::text AS part, es_seq_no FROM "{table}" WHERE es_id = :i', i=doc_id)
    return [(row.part.strip('"'), row.es_seq_no) for row in found]


def test_a_moving_document_stays_one_row_and_an_older_version_never_moves_it_back(
    db_engine: sa.Engine, table_name: str
) -> None:
    sink, fence, run_id = _sink(db_engine, table_name)
    day = lambda n: partition_of(table_name, "day", BASE + n * DAY).name  # noqa: E731 - a short local
    sink.write_page([_row("a", 1, BASE), _row("b", 1, BASE)], [], fence, run_id, 1)
    with db_engine.begin() as connection:  # a row without a time (a legacy load) has a place of its own
        connection.execute(
            sa.text(f"INSERT INTO \"{table_name}\" (es_index, es_id, source) VALUES ('idx', 'none', '{{}}')")
        )
    assert _where(db_engine, table_name, "none") == [(default_name(table_name), None)]

    # Page path: a newer version moves `a` forward ten days (a partition made for it), one row.
    counts = sink.write_page([_row("a", 5, BASE + 10 * DAY)], [], fence, run_id, 2)
    assert (counts.updated, counts.inserted) == (1, 0)
    assert _where(db_engine, table_name, "a") == [(day(10), 5)]
    # An older version, with the older time, is unchanged: it does not move the row back.
    counts = sink.write_page([_row("a", 3, BASE)], [], fence, run_id, 3)
    assert counts.unchanged == 1
    assert _where(db_engine, table_name, "a") == [(day(10), 5)]

    # Row-by-row path (a row PostgreSQL refuses sends the page there): the same rule.
    bad = EventRow("idx", "bad", BASE, b'{"note": "\\u0000"}', 1, 1)
    counts = sink.write_page(
        [_row("a", 4, BASE + DAY), _row("b", 2, BASE + 20 * DAY), _row("none", 2, BASE + DAY), bad],
        [],
        fence,
        run_id,
        4,
    )
    assert (counts.updated, counts.failed) == (2, 1)
    assert _where(db_engine, table_name, "a") == [(day(10), 5)]
    assert _where(db_engine, table_name, "b") == [(day(20), 2)]
    assert _where(db_engine, table_name, "none") == [(day(1), 2)]
    assert scalar(db_engine, f'SELECT count(*) FROM "{table_name}"') == 3


def test_an_indexed_typed_column_on_a_partitioned_target(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
) -> None:
    engine.create_index(index_name)
    index_docs(engine, index_name, {"a": {"@timestamp": engine_time(BASE), "event": {"severity": 3}}})
    engine.refresh(index_name)
    severity = ColumnSpec("severity", "event.severity", "smallint", index=True)
    settings = dataclasses.replace(make_settings(engine, index_name), partition="day", columns=(severity,))
    service = SyncService(settings)
    try:
        result = service.run()
    finally:
        service.close()
    assert (result.status, result.inserted) == ("success", 1), result.error
    assert scalar(db_engine, f'SELECT severity FROM "{table_name}"') == 3
    indexed = "SELECT count(*) FROM pg_indexes WHERE tablename = :t AND indexdef LIKE '%(severity)%'"
    assert scalar(db_engine, indexed, t=table_name) == 1


def test_pages_read_whole_into_a_partitioned_target_that_holds_rows_look_their_keys_up(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
) -> None:
    """Only a target empty when the run began skips the lookup: later whole pages still find stored rows."""
    docs = {f"k{n}": {"@timestamp": engine_time(BASE + n * timedelta(hours=1)), "n": n} for n in range(4)}
    engine.create_index(index_name)
    index_docs(engine, index_name, docs)
    engine.refresh(index_name)
    # No overlap: a run reads its pages whole (not metadata first) from the stored cursor on.
    settings = dataclasses.replace(make_settings(engine, index_name, RTARF_SYNC_OVERLAP_SECONDS=0), partition="day")
    service = SyncService(settings)
    try:
        assert service.run().inserted == 4
        # A stored document comes back with a later time (a moved cursor value): read again, whole.
        index_docs(engine, index_name, {"k1": {"@timestamp": engine_time(BASE + 2 * DAY), "n": 101}})
        engine.refresh(index_name)
        again = service.run()
    finally:
        service.close()
    assert (again.status, again.inserted, again.updated) == ("success", 0, 1), again.error
    assert scalar(db_engine, f'SELECT count(*) FROM "{table_name}"') == 4
    assert placed(db_engine, table_name)["k1"] == partition_of(table_name, "day", BASE + 2 * DAY).name
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
