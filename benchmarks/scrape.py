"""How long a GET /metrics takes, cold and warm, and how often it reads PostgreSQL.

    .venv/bin/python -m benchmarks.scrape [--scrapes 500] [--runs 200] [--dead-letters 1000]

Starts a throwaway PostgreSQL cluster (tests.infra.harness), records `--runs` finished
runs and `--dead-letters` unresolved dead letters for one target (as a service
that has been running a while), builds the app and scrapes it through Flask's
test client: the first (cold) scrape, then `--scrapes` warm ones within one
cache period. Prints the times and the statements sent to PostgreSQL.
The target of the issue: a warm scrape under 50 ms, at most one query per period.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from flask import Flask

from config import load_settings
from rtarf_sync import create_app
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.service.extension import scheduler_of
from tests.infra.harness import PostgresCluster
from tests.infra.harness.process import free_port


def _history(app: Flask, runs: int, dead_letters: int) -> None:
    service = scheduler_of(app).service
    service.ensure_tables()
    start = datetime.now(timezone.utc) - timedelta(days=10)
    for n in range(runs):
        run_id = service.history.start("scheduled", "bench:1:x", start + timedelta(minutes=5 * n))
        service.history.finish(
            SyncResult(run_id=run_id, status="success", finished_at=start + timedelta(minutes=5 * n, seconds=3))
        )
    with service.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO rtarf_sync_dead_letters (target_table, es_index, es_id, es_seq_no, es_primary_term, "
                "reason, raw_document) SELECT :t, 'rtarf-events-x', 'doc-' || n, n, 1, 'missing cursor field', '{}' "
                "FROM generate_series(1, :n) n"
            ),
            {"t": service.tables.target.name, "n": dead_letters},
        )


def main() -> None:
    """Run the measurement and print it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scrapes", type=int, default=500)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--dead-letters", type=int, default=1000)
    args = parser.parse_args()
    cluster = PostgresCluster().start()
    try:
        url = cluster.create_database("rtarf_bench")
        settings = load_settings(
            {
                "RTARF_DATABASE_URL": url,
                "RTARF_ES_URL": f"http://127.0.0.1:{free_port()}",
                "RTARF_SOURCE_ENGINE": "elasticsearch",
                "RTARF_TABLE": "bench_events",
            }
        )
        app = create_app(settings)
        _history(app, args.runs, args.dead_letters)
        statements: list[str] = []
        sa.event.listen(
            scheduler_of(app).service.engine,
            "before_cursor_execute",
            lambda conn, cursor, statement, *rest: statements.append(statement),
        )
        client = app.test_client()
        began = time.perf_counter()
        size = len(client.get("/metrics").data)
        cold = (time.perf_counter() - began) * 1000
        warm = []
        for _ in range(args.scrapes):
            began = time.perf_counter()
            client.get("/metrics")
            warm.append((time.perf_counter() - began) * 1000)
        warm.sort()
        print(
            f"scrape of {size:,} bytes; cold {cold:.1f} ms; warm over {args.scrapes}: "
            f"median {statistics.median(warm):.2f} ms, p95 {warm[int(len(warm) * 0.95)]:.2f} ms, "
            f"max {warm[-1]:.2f} ms; PostgreSQL statements: {len(statements)}"
        )
        scheduler_of(app).shutdown(timeout=5)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
