"""`init-db --convert-partitioned`: a plain target becomes a partitioned one online, in batches, rows kept.

The command runs as a user runs it (a subprocess); a second test drives the
conversion in-process to show that runs wait for it: a sync asked between two
batches is skipped, naming the conversion as the lease holder, and the next
sync after the swap writes the partitioned table.
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Callable

import sqlalchemy as sa

from config import ColumnSpec, Settings
from rtarf_sync.cli.conversion import convert_table
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.engine.target.partitions import partition_of
from tests.cli.test_cli import engine_env, run_cli
from tests.engine.target.test_partitioned_target import placed
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import engine_docs, index_docs, scalar, table_docs

BASE = datetime(2026, 5, 30, 12, tzinfo=timezone.utc)
EVERYTHING = {"RTARF_SYNC_OVERLAP_SECONDS": str(86400 * 3650)}
SEVERITY = ColumnSpec("severity", "event.severity", "smallint", index=True)


def _load(engine: EngineHttp, index: str, count: int) -> None:
    engine.create_index(index)
    index_docs(
        engine,
        index,
        {
            f"e{n}": {"@timestamp": engine_time(BASE + n * timedelta(hours=7)), "event": {"severity": n}}
            for n in range(count)
        },
    )
    engine.refresh(index)


def test_the_command_converts_a_plain_table_in_batches_keeping_every_row(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    database_url: str,
    make_settings: Callable[..., Settings],
) -> None:
    _load(engine, index_name, 10)  # 10 events over 3 days, across a month's end
    settings = dataclasses.replace(make_settings(engine, index_name, **EVERYTHING), columns=(SEVERITY,))
    plain = SyncService(settings)
    try:
        assert plain.run().inserted == 10
        # Partitioning set on a plain table: runs refuse, naming the command.
        refused = SyncService(dataclasses.replace(settings, partition="day")).run()
    finally:
        plain.close()
    assert refused.status == "failed" and "--convert-partitioned" in (refused.error or ""), refused.error
    before = table_docs(db_engine, table_name)

    env = {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_TABLE": table_name,
        "RTARF_ES_INDEX": index_name,
        **engine_env(engine),
    }
    done = run_cli("init-db", "--convert-partitioned", "--partition", "day", "--batch", "4", env=env)
    assert done.returncode == 0, done.stderr
    assert f"table {table_name} converted: 10 rows in" in done.stdout
    progress = [line for line in done.stderr.splitlines() if line.startswith("converted ")]
    assert progress == [f"converted {n} of 10 rows of {table_name}" for n in (4, 8, 10)]

    assert scalar(db_engine, "SELECT relkind FROM pg_class WHERE relname = :t", t=table_name) == "p"
    assert table_docs(db_engine, table_name) == before
    assert placed(db_engine, table_name)["e9"] == partition_of(table_name, "day", BASE + 63 * timedelta(hours=1)).name
    severity = scalar(db_engine, f"SELECT severity FROM \"{table_name}\" WHERE es_id = 'e7'")
    assert severity == 7
    assert (
        scalar(
            db_engine,
            "SELECT count(*) FROM pg_indexes WHERE tablename = :t AND indexdef LIKE '%severity%'",
            t=table_name,
        )
        == 1
    )

    again = run_cli("init-db", "--convert-partitioned", "--partition", "day", env=env)
    assert again.returncode == 0 and "already partitioned" in again.stdout, again.stderr

    # The partitioned table syncs on: a moved event stays one row.
    index_docs(
        engine, index_name, {"e0": {"@timestamp": engine_time(BASE + 5 * timedelta(days=1)), "event": {"severity": 1}}}
    )
    engine.refresh(index_name)
    service = SyncService(dataclasses.replace(settings, partition="day"))
    try:
        result = service.run()
    finally:
        service.close()
    assert (result.status, result.updated, result.inserted) == ("success", 1, 0), result.error
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)


def test_runs_wait_for_a_conversion_and_resume_on_the_partitioned_table(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
) -> None:
    _load(engine, index_name, 6)
    settings = make_settings(engine, index_name, **EVERYTHING)
    plain = SyncService(settings)
    between: list[SyncResult] = []
    try:
        assert plain.run().inserted == 6

        def progress(done: int, total: int) -> None:
            if done < total:
                between.append(plain.run())  # a sync asked while the conversion runs

        args = argparse.Namespace(partition="month", batch=2)
        outcome = convert_table(settings, args, progress)
    finally:
        plain.close()
    assert outcome.startswith(f"table {table_name} converted: 6 rows in")
    assert [run.status for run in between] == ["skipped", "skipped"]
    assert all("convert" in (run.error or "") for run in between), [run.error for run in between]

    index_docs(engine, index_name, {"late": {"@timestamp": engine_time(BASE + timedelta(days=40))}})
    engine.refresh(index_name)
    service = SyncService(dataclasses.replace(settings, partition="month"))
    try:
        assert service.run().inserted == 1
    finally:
        service.close()
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
    assert placed(db_engine, table_name)["late"] == partition_of(table_name, "month", BASE + timedelta(days=40)).name
