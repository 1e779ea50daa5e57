"""Run history in PostgreSQL: one row per run, updated by every committed page."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from rtarf_sync.engine.result import SyncResult
from rtarf_sync.engine.sink import COUNTERS, PageCounts
from rtarf_sync.engine.tables import Tables


class RunHistory:
    """Rows of the runs table for one target table."""

    def __init__(self, engine: sa.Engine, tables: Tables, source_index: str) -> None:
        self.engine, self.table, self.tables, self.source_index = engine, tables.runs, tables, source_index

    def start(self, trigger: str, owner: str, started_at: datetime) -> int:
        """Record a run as running; return its id."""
        with self.engine.begin() as connection:
            return int(connection.execute(sa.insert(self.table).values(
                target_table=self.tables.target.name, source_index=self.source_index, trigger=trigger,
                owner=owner, status="running", started_at=started_at).returning(self.table.c.id)).scalar_one())

    def finish(self, result: SyncResult) -> None:
        """Record how a run ended."""
        if result.run_id is None:
            return
        with self.engine.begin() as connection:
            connection.execute(sa.update(self.table).where(self.table.c.id == result.run_id).values(
                status=result.status, finished_at=result.finished_at, error=result.error))

    def committed(self, run_id: int) -> tuple[int, PageCounts]:
        """Pages committed so far by a run and their summed counts, as PostgreSQL has them."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(self.table).where(self.table.c.id == run_id)).one()
        return int(row.pages), PageCounts(**{name: int(getattr(row, name)) for name in COUNTERS})
