"""What the status page needs from PostgreSQL, in one read-only pass.

The page must tell the truth after a restart, so the recent runs, the cursor,
the dead-letter backlog and the latest verification come from the tables,
not from the process's counters. Nothing here writes; before the first run
made the tables, every part is empty rather than an error.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from rtarf_sync.engine.runs.result import utc_iso
from rtarf_sync.engine.runs.records import run_object
from rtarf_sync.engine.target.cursor_store import CursorStore
from rtarf_sync.engine.target.tables import Tables, present_tables

RUNS_SHOWN = 50
REASONS_SHOWN = 5
BUCKETS_SHOWN = 20


def read_overview(
    engine: sa.Engine, tables: Tables, source_index: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """Recent runs (newest first), cursor and lag, dead letters and the latest verification of one target."""
    now = now or datetime.now(timezone.utc)
    with engine.connect() as connection:
        present = present_tables(connection, tables.cursor, tables.runs, tables.dead_letters, tables.verifications)
        cursor = _cursor(connection, tables, source_index) if tables.cursor.name in present else None
        runs = _runs(connection, tables) if tables.runs.name in present else []
        dead = _dead_letters(connection, tables) if tables.dead_letters.name in present else _no_dead_letters()
        verification = _verification(connection, tables, source_index) if tables.verifications.name in present else None
    lag = round((now - cursor).total_seconds(), 3) if cursor is not None else None
    return {
        "table": tables.target.name,
        "source_index": source_index,
        "tables_ready": bool(present),
        "cursor": utc_iso(cursor),
        "lag_seconds": lag,
        "runs": runs,
        "dead_letters": dead,
        "verification": verification,
    }


def _cursor(connection: sa.Connection, tables: Tables, source_index: str) -> datetime | None:
    return CursorStore(tables, source_index).read(connection)


def _runs(connection: sa.Connection, tables: Tables) -> list[dict[str, Any]]:
    table = tables.runs
    rows = (
        connection.execute(
            sa.select(table)
            .where(table.c.target_table == tables.target.name)
            .order_by(table.c.id.desc())
            .limit(RUNS_SHOWN)
        )
        .mappings()
        .all()
    )
    return [run_object(row) for row in rows]


def _no_dead_letters() -> dict[str, Any]:
    return {"unresolved": 0, "newest": []}


def _dead_letters(connection: sa.Connection, tables: Tables) -> dict[str, Any]:
    table = tables.dead_letters
    unresolved = sa.and_(table.c.target_table == tables.target.name, table.c.resolved_at.is_(None))
    count = connection.execute(sa.select(sa.func.count()).select_from(table).where(unresolved)).scalar_one()
    rows = (
        connection.execute(
            sa.select(table.c.id, table.c.es_index, table.c.es_id, table.c.reason, table.c.failed_at, table.c.run_id)
            .where(unresolved)
            .order_by(table.c.id.desc())
            .limit(REASONS_SHOWN)
        )
        .mappings()
        .all()
    )
    newest = [
        {
            "id": int(row["id"]),
            "es_index": row["es_index"],
            "es_id": row["es_id"],
            "reason": row["reason"],
            "created_at": utc_iso(row["failed_at"]),
            "run_id": row["run_id"],
        }
        for row in rows
    ]
    return {"unresolved": int(count), "newest": newest}


def _verification(connection: sa.Connection, tables: Tables, source_index: str) -> dict[str, Any] | None:
    table = tables.verifications
    row = (
        connection.execute(
            sa.select(table)
            .where(table.c.target_table == tables.target.name, table.c.source_index == source_index)
            .order_by(table.c.checked_at.desc(), table.c.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    result = row["result"] if isinstance(row["result"], dict) else {}
    differing = result.get("differing") or []
    return {
        "checked_at": utc_iso(row["checked_at"]),
        "from": utc_iso(row["range_from"]),
        "to": utc_iso(row["range_to"]),
        "bucket": row["bucket"],
        "in_step": bool(row["in_step"]),
        "source_total": int(row["source_total"]),
        "target_total": int(row["target_total"]),
        "buckets_differing": int(row["buckets_differing"]),
        "differing": [bucket for bucket in differing if isinstance(bucket, dict)][:BUCKETS_SHOWN],
        "missing_cursor": result.get("missing_cursor"),
    }
