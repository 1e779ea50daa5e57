"""Verification sees drift in both directions, and repair puts both right, on both engines.

Existing tests drive drift where the engine holds more (late arrivals). Here
PostgreSQL holds more live rows than the engine, in the three ways that
happen: a deletion no reconciliation saw, a soft-delete undone by hand, rows
restored from a backup. Each such bucket must be reported, and its range run
must mark (or remove, per RTARF_DELETE_MODE) the extra row.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.checks.repair import verify_and_repair
from rtarf_sync.engine.runs.sync import SyncService
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import deleted_keys, engine_docs, index_docs, scalar, table_docs

BASE = datetime(2026, 5, 1, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
PER_HOUR = 10  # one extra row in a bucket is 10 %, inside the default delete safety valve (20 %)


def _event(moment: datetime | None, n: int) -> dict[str, Any]:
    source: dict[str, Any] = {"event": {"id": n}, "message": f"event {n}"}
    if moment is not None:
        source["@timestamp"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return source


def _hour(start: datetime) -> str:
    return start.isoformat()


def _execute(db: sa.Engine, *statements: str) -> None:
    with db.begin() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))


@pytest.mark.parametrize("delete_mode", ["soft", "hard"])
def test_buckets_where_postgresql_holds_more_are_drift_and_their_range_runs_reconcile_them(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
    delete_mode: str,
) -> None:
    engine.create_index(index_name)
    docs = {
        f"h{h}-{n}": _event(BASE + h * HOUR + timedelta(minutes=5 * n), 100 * h + n)
        for h in range(4)
        for n in range(PER_HOUR)
    }
    docs["no-time"] = _event(None, 999)  # set aside as a dead letter: reported in missing_cursor.source
    index_docs(engine, index_name, docs)
    engine.refresh(index_name)
    setup = SyncService(make_settings(engine, index_name, RTARF_DELETE_MODE="soft"))
    backup = f"{table_name}_backup"
    try:
        assert setup.run().inserted == 4 * PER_HOUR

        # Hour 1: a soft-delete undone by hand. Hour 2: a row restored from a backup taken before its deletion.
        _execute(db_engine, f'CREATE TABLE "{backup}" AS SELECT * FROM "{table_name}" WHERE es_id = \'h2-3\'')
        for doc_id in ("h1-3", "h2-3"):
            engine.call("DELETE", f"/{index_name}/_doc/{doc_id}")
        engine.refresh(index_name)
        assert setup.run(mode="full").deleted == 2
        assert {key[1] for key in deleted_keys(db_engine, table_name)} == {"h1-3", "h2-3"}
        _execute(
            db_engine,
            f"UPDATE \"{table_name}\" SET deleted_at = NULL WHERE es_id = 'h1-3'",
            f"DELETE FROM \"{table_name}\" WHERE es_id = 'h2-3'",
            f'INSERT INTO "{table_name}" SELECT * FROM "{backup}"',
            # Rows without a time (a legacy load): reported in missing_cursor.target, never in a bucket.
            *(
                f"INSERT INTO \"{table_name}\" (es_index, es_id, source) VALUES ('{index_name}', 'legacy-{n}', '{{}}')"
                for n in range(2)
            ),
        )
    finally:
        _execute(db_engine, f'DROP TABLE IF EXISTS "{backup}"')
        setup.close()
    # Hour 0: a deletion no run reconciled (incremental runs never do). Hour 3: a late arrival, the other way.
    engine.call("DELETE", f"/{index_name}/_doc/h0-3")
    index_docs(engine, index_name, {"h3-late": _event(BASE + 3 * HOUR + timedelta(minutes=59), 399)})
    engine.refresh(index_name)

    service = SyncService(make_settings(engine, index_name, RTARF_DELETE_MODE=delete_mode))
    try:
        answer = verify_and_repair(service, start=BASE, end=BASE + 4 * HOUR, bucket="1h", repair_drift=True)
    finally:
        service.close()

    assert answer["in_step"] is False
    assert [(d["from"], d["source"], d["target"]) for d in answer["differing"]] == [
        (_hour(BASE), 9, 10),
        (_hour(BASE + HOUR), 9, 10),
        (_hour(BASE + 2 * HOUR), 9, 10),
        (_hour(BASE + 3 * HOUR), 11, 10),
    ]
    assert answer["missing_cursor"] == {"source": 1, "target": 2}
    repaired = [
        (run["trigger"], run["mode"], run["status"], run["deleted"], run["inserted"]) for run in answer["repaired"]
    ]
    assert repaired == [("repair", "range", "success", 1, 0)] * 3 + [("repair", "range", "success", 0, 1)]
    after = answer["after_repair"]
    assert (after["in_step"], after["source_total"], after["target_total"]) == (True, 38, 38)
    assert after["missing_cursor"] == {"source": 1, "target": 2}

    legacy = {(index_name, f"legacy-{n}") for n in range(2)}
    live = table_docs(db_engine, table_name, live=True)
    timed = {key: doc for key, doc in engine_docs(engine, index_name).items() if key[1] != "no-time"}
    assert {key: doc for key, doc in live.items() if key not in legacy} == timed
    extra = {(index_name, doc_id) for doc_id in ("h0-3", "h1-3", "h2-3")}
    if delete_mode == "soft":
        assert deleted_keys(db_engine, table_name) == extra
    else:
        assert deleted_keys(db_engine, table_name) == set()
        assert scalar(db_engine, f"SELECT count(*) FROM \"{table_name}\" WHERE es_id IN ('h0-3', 'h1-3', 'h2-3')") == 0
