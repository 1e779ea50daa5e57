"""Listing and pruning the run history of one target table.

Paging is by keyset on the run id (newest first): `before` is the last id of
the previous page, so a page never shifts while new runs are being recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rtarf_sync.engine.target.tables import Tables

RUN_STATUSES = ("running", "success", "partial", "failed")
RUN_MODES = ("incremental", "full", "range", "replay", "retention")
RUN_TRIGGERS = ("scheduled", "manual", "cli", "trigger", "repair", "replay")
MAX_LIMIT = 200


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list; None means any."""

    status: str | None = None
    trigger: str | None = None
    mode: str | None = None


@dataclass(frozen=True)
class RunPage:
    """One page of run objects, newest first, and the id to pass as `before` for the next one."""

    runs: list[dict[str, Any]]
    next_before: int | None


def list_runs(
    engine: sa.Engine, tables: Tables, limit: int = 20, before: int | None = None, where: RunFilter = RunFilter()
) -> RunPage:
    """Runs of this target, newest first, at most `limit` (1 to MAX_LIMIT)."""
    from rtarf_sync.engine.runs.records import run_object  # with the sink: the app imports this module at start-up

    runs = tables.runs
    query = sa.select(runs).where(runs.c.target_table == tables.target.name).order_by(runs.c.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(runs.c.id < before)
    for column, value in (("status", where.status), ("trigger", where.trigger), ("mode", where.mode)):
        if value is not None:
            query = query.where(runs.c[column] == value)
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    page = [run_object(row) for row in rows[:limit]]
    return RunPage(page, page[-1]["run_id"] if len(rows) > limit else None)


def prune_runs(engine: sa.Engine, tables: Tables, days: int) -> int:
    """Delete this target's runs that started more than `days` days ago; return how many went."""
    runs = tables.runs
    cutoff = sa.func.now() - sa.func.make_interval(0, 0, 0, days)
    with engine.begin() as connection:
        # A short lock wait: pruning is housekeeping and must never hold up a run's page.
        connection.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
        return int(
            connection.execute(
                sa.delete(runs).where(runs.c.target_table == tables.target.name, runs.c.started_at < cutoff)
            ).rowcount
        )
