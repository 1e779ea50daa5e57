"""Filling new typed columns from the stored `source`: `python -m benchmarks.backfill --rows 200000`.

Starts a durable PostgreSQL cluster, fills a target table with ROWS sample events
(as a sync without typed columns leaves it), then starts the engine's table set-up
with the five typed columns of the benchmark (inet, smallint, text with an index,
text[], timestamptz) and prints how long adding, filling and indexing took.
The engine is never read: the columns are filled from PostgreSQL alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import psycopg
import sqlalchemy as sa

from benchmarks.bench_columns import BENCH_COLUMNS
from rtarf_sync.engine.fastjson import dumps_utf8
from rtarf_sync.engine.target.columns.schema import apply_columns
from rtarf_sync.engine.target.documents import COPY_HEADER, COPY_TRAILER, copy_row, parse_instant
from rtarf_sync.engine.target.tables import build_tables, create_tables
from rtarf_sync.sample import make_event
from tests.infra.harness import PostgresCluster

TABLE = "ev_backfill"


def load(engine: sa.Engine, rows: int) -> None:
    """ROWS sample events into the target table, by binary COPY, without typed columns."""
    create_tables(engine, build_tables(TABLE))
    url = engine.url.render_as_string(hide_password=False).replace("+psycopg", "")
    columns = "es_index, es_id, event_timestamp, source, es_seq_no, es_primary_term"
    statement = f"COPY {TABLE} ({columns}) FROM STDIN (FORMAT BINARY)"
    with psycopg.connect(url) as connection, connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(COPY_HEADER)
        for number in range(rows):
            event = make_event(number)
            moment = parse_instant(event["@timestamp"])
            assert moment is not None
            copy.write(copy_row("rtarf-events-bench", f"e{number:09d}", moment, dumps_utf8(event), number, 1))
        copy.write(COPY_TRAILER)


def main(argv: list[str] | None = None) -> int:
    """Load, fill, print the figures."""
    parser = argparse.ArgumentParser(prog="backfill", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows in the table (default 200,000)")
    parser.add_argument("--batch", type=int, default=5000, help="rows per fill transaction (default 5,000)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    with PostgresCluster(durable=True) as pg:
        engine = sa.create_engine(pg.create_database("rtarf_backfill"))
        began = time.monotonic()
        load(engine, args.rows)
        print(f"loaded {args.rows:,} rows without typed columns in {time.monotonic() - began:.1f} s")
        tables = build_tables(TABLE, BENCH_COLUMNS)
        began = time.monotonic()
        changes = apply_columns(engine, tables, batch=args.batch)
        total = time.monotonic() - began
        with engine.connect() as connection:
            filled = connection.exec_driver_sql(
                f"SELECT count(*) FROM {TABLE} WHERE source_ip IS NOT NULL AND severity IS NOT NULL "
                "AND rule_name IS NOT NULL AND tags IS NOT NULL AND seen_at IS NOT NULL"
            ).scalar_one()
        engine.dispose()
    print(f"added {', '.join(changes.added)}; indexed {', '.join(changes.indexed)}")
    print(
        f"filled {changes.rows:,} rows in {changes.seconds:.1f} s ({changes.rows / changes.seconds:,.0f} rows/s), "
        f"batches of {args.batch:,}; {changes.not_converted} values did not convert; "
        f"{filled:,} rows with all five columns set"
    )
    print(f"start-up column set-up in all (add, fill, index): {total:.1f} s")
    return 0 if filled == args.rows else 1


if __name__ == "__main__":
    sys.exit(main())
