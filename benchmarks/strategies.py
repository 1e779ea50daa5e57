"""Write strategies side by side: `python -m benchmarks.strategies [--rows 50000]`.

For the sync engine's choice of how a page reaches PostgreSQL (issue 3, item
7), on a durable throwaway cluster, one transaction per page of 1,000 rows:

  copy    plain COPY into the target table (what the write ceiling does)
  sink    the engine's PostgresSink.write_page: lease fence, COPY into a temporary
          staging table, one version-guarded INSERT ... SELECT ... ON CONFLICT,
          cursor and run history
  probe   look the page's keys up first (one indexed SELECT returning the stored
          versions); COPY the rows not there yet straight into the target; send
          only the rows whose version is newer through staging and the upsert;
          leave the others alone (they count as unchanged)

Each runs twice: a first load (every row new) and a re-read of the same rows
with 10% of them at a newer version. `probe` here is a sketch to measure, not
the engine's code: it leaves out the fence, cursor and run history that `sink`
includes (a few small statements per page).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from typing import Callable

import psycopg
import sqlalchemy as sa

from benchmarks.cpu import tree_cpu_seconds
from rtarf_sync.engine.target.documents import EventRow, parse_instant
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.lease import Lease
from rtarf_sync.engine.runs.records import RunHistory
from rtarf_sync.sample import make_event
from rtarf_sync.engine.target.sink import PostgresSink
from rtarf_sync.engine.target.tables import build_tables, create_tables
from rtarf_sync.engine.target.versions import row_version
from tests.infra.harness import PostgresCluster

INDEX = "rtarf-events-bench"
COLUMNS = "es_index, es_id, event_timestamp, source, es_seq_no, es_primary_term"
TYPES = ["text", "text", "timestamptz", "text", "int8", "int8"]
STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS stage (es_index text, es_id text, event_timestamp timestamptz, "
    "source text, es_seq_no bigint, es_primary_term bigint) ON COMMIT DELETE ROWS"
)
UPSERT = (
    "INSERT INTO {t} ({c}) SELECT es_index, es_id, event_timestamp, source::jsonb, es_seq_no, es_primary_term "
    "FROM stage ORDER BY es_index, es_id ON CONFLICT (es_index, es_id) DO UPDATE SET "
    "event_timestamp = excluded.event_timestamp, source = excluded.source, es_seq_no = excluded.es_seq_no, "
    "es_primary_term = excluded.es_primary_term, last_synced_at = now() WHERE "
    "({t}.es_primary_term, {t}.es_seq_no) < (excluded.es_primary_term, excluded.es_seq_no)"
)
Page = list[EventRow]


def pages(count: int, size: int = 1000) -> tuple[list[Page], list[Page]]:
    """The first-load pages, and the same rows with every 10th at a newer version."""
    rows = []
    for number in range(count):
        event = make_event(number)
        moment = parse_instant(event["@timestamp"])
        assert moment is not None
        rows.append(
            EventRow(INDEX, event["event"]["id"], moment, json.dumps(event, separators=(",", ":")).encode(), number, 1)
        )
    changed = [
        EventRow(
            r.es_index,
            r.es_id,
            r.event_timestamp,
            r.source.replace(b'"case_id":null', b'"case_id":"C"'),
            r.seq_no + count,
            1,
        )
        if k % 10 == 0
        else r
        for k, r in enumerate(rows)
    ]
    return ([rows[i : i + size] for i in range(0, count, size)], [changed[i : i + size] for i in range(0, count, size)])


def copy_rows(cursor: psycopg.Cursor, table: str, rows: Page) -> None:
    """COPY `rows` into `table`."""
    with cursor.copy(f"COPY {table} ({COLUMNS}) FROM STDIN") as copy:
        copy.set_types(TYPES)
        for r in rows:
            copy.write_row((r.es_index, r.es_id, r.event_timestamp, r.source.decode(), r.seq_no, r.primary_term))


def probe_page(connection: psycopg.Connection, table: str, page: Page) -> None:
    """Write one page the probe way."""
    stored: dict[str, list[int]] = dict(
        connection.execute(
            f"SELECT es_id, ARRAY[es_primary_term, es_seq_no] FROM {table} WHERE es_index = %s AND es_id = ANY(%s)",
            (INDEX, [r.es_id for r in page]),
        ).fetchall()
    )
    new = [r for r in page if r.es_id not in stored]
    newer = [r for r in page if r.es_id in stored and tuple(stored[r.es_id]) < row_version(r)]
    with connection.cursor() as cursor:
        if new:
            copy_rows(cursor, table, new)
        if newer:
            connection.execute(STAGE)
            copy_rows(cursor, "stage", newer)
            connection.execute(UPSERT.format(t=table, c=COLUMNS))
    connection.commit()


class Strategies:
    """One cluster, a fresh table per strategy, CPU accounted per pass."""

    def __init__(self, cluster: PostgresCluster) -> None:
        self.cluster = cluster
        self.url = cluster.create_database("rtarf_strategies")
        self.engine = sa.create_engine(self.url)
        self.conninfo = self.url.replace("postgresql+psycopg", "postgresql")

    def fresh(self, table: str) -> None:
        create_tables(self.engine, build_tables(table))
        with psycopg.connect(self.conninfo, autocommit=True) as connection:
            connection.execute("CHECKPOINT")

    def timed(self, label: str, write: Callable[[Page], None], work: list[Page]) -> None:
        assert self.cluster.process is not None
        wall, cpu, pg = time.perf_counter(), time.process_time(), tree_cpu_seconds(self.cluster.process.pid)
        for page in work:
            write(page)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        pg = tree_cpu_seconds(self.cluster.process.pid) - pg
        rows = sum(len(page) for page in work)
        print(f"  {label:<36}{rows / wall:>10,.0f}{wall:>8.2f}{cpu:>9.2f}{pg:>11.2f}", flush=True)

    def sink(self, table: str) -> Callable[[Page], None]:
        tables = build_tables(table)
        lease = Lease(tables.lease, table, 60)
        with self.engine.begin() as connection:
            fence = lease.acquire(connection, "strategies")
        assert isinstance(fence, Fence)
        run_id = RunHistory(self.engine, tables, INDEX).start("bench", "strategies", datetime.now(timezone.utc))
        sink, number = PostgresSink(self.engine, tables, lease.ttl, INDEX), [0]

        def write(page: Page) -> None:
            number[0] += 1
            sink.write_page(page, [], fence, run_id, number[0])

        return write


def main() -> None:
    """Measure each strategy on a first load and on a re-read with 10% changed."""
    parser = argparse.ArgumentParser(prog="strategies", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    first, changed = pages(parser.parse_args().rows)
    with PostgresCluster(durable=True) as cluster:
        s = Strategies(cluster)
        print(f"  {'strategy, pass':<36}{'rows/s':>10}{'wall s':>8}{'py CPU s':>9}{'pg CPU s':>11}")
        s.fresh("w_copy")
        with psycopg.connect(s.conninfo) as connection:

            def copy_page(page: Page) -> None:
                with connection.cursor() as cursor:
                    copy_rows(cursor, "w_copy", page)
                connection.commit()

            s.timed("copy, first load", copy_page, first)
        s.fresh("w_sink")
        write = s.sink("w_sink")
        s.timed("sink, first load", write, first)
        s.timed("sink, re-read with 10% newer", write, changed)
        s.fresh("w_probe")
        with psycopg.connect(s.conninfo) as connection:
            s.timed("probe, first load", lambda page: probe_page(connection, "w_probe", page), first)
            s.timed("probe, re-read with 10% newer", lambda page: probe_page(connection, "w_probe", page), changed)


if __name__ == "__main__":
    main()
