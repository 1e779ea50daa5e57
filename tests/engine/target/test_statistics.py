"""A bulk load leaves the target with planner statistics, so the counts after it are planned for its size."""

from __future__ import annotations

import sqlalchemy as sa

from rtarf_sync.engine.target.statistics import ANALYZE_MIN_ROWS, refresh_statistics
from rtarf_sync.engine.target.tables import build_tables, create_tables


def _known_rows(db_engine: sa.Engine, table: str) -> float:
    with db_engine.connect() as connection:
        return float(
            connection.execute(sa.text("SELECT reltuples FROM pg_class WHERE relname = :t"), {"t": table}).scalar_one()
        )


def _insert(db_engine: sa.Engine, table: str, first: int, count: int) -> None:
    with db_engine.begin() as connection:
        connection.execute(
            sa.text(
                f'INSERT INTO "{table}" (es_index, es_id, event_timestamp, source, es_seq_no, es_primary_term) '
                "SELECT 'ev', 'd' || n, now(), '{}'::jsonb, n, 1 "
                "FROM generate_series(CAST(:a AS integer), CAST(:b AS integer)) AS n"
            ),
            {"a": first, "b": first + count - 1},
        )


def test_a_run_that_inserted_a_large_share_of_the_table_analyses_it(db_engine: sa.Engine, table_name: str) -> None:
    tables = build_tables(table_name)
    create_tables(db_engine, tables)
    assert _known_rows(db_engine, table_name) < 0  # never analysed: the planner guesses

    _insert(db_engine, table_name, 0, 100)
    assert refresh_statistics(db_engine, tables, 100) is False  # a small run leaves it to autovacuum
    assert _known_rows(db_engine, table_name) < 0

    _insert(db_engine, table_name, 100, ANALYZE_MIN_ROWS)
    assert refresh_statistics(db_engine, tables, ANALYZE_MIN_ROWS) is True  # a first load: analysed
    assert _known_rows(db_engine, table_name) == ANALYZE_MIN_ROWS + 100
    with db_engine.connect() as connection:
        analysed = connection.execute(
            sa.text("SELECT array_agg(attname::text ORDER BY attname) FROM pg_stats WHERE tablename = :t"),
            {"t": table_name},
        ).scalar_one()
    assert analysed == sorted(["deleted_at", "es_id", "es_index", "es_primary_term", "es_seq_no", "event_timestamp"])

    # Ten thousand more into a table of about ten thousand: a large share again.
    _insert(db_engine, table_name, 20_000, ANALYZE_MIN_ROWS)
    assert refresh_statistics(db_engine, tables, ANALYZE_MIN_ROWS) is True
    # The same again into what is now twenty thousand: still half of it, analysed.
    assert _known_rows(db_engine, table_name) == 2 * ANALYZE_MIN_ROWS + 100
    _insert(db_engine, table_name, 40_000, 3 * ANALYZE_MIN_ROWS)
    _insert(db_engine, table_name, 80_000, 3 * ANALYZE_MIN_ROWS)
    assert refresh_statistics(db_engine, tables, 60_000) is True
    # Ten thousand into eighty thousand: an eighth, under the share: left to autovacuum.
    assert refresh_statistics(db_engine, tables, ANALYZE_MIN_ROWS) is False
