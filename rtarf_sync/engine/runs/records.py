"""Run history in PostgreSQL: one row per run, updated by every committed page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rtarf_sync.engine.target.bookkeeping import COUNTERS
from rtarf_sync.engine.runs.result import SyncResult, utc_iso
from rtarf_sync.engine.target.sink import PageCounts
from rtarf_sync.engine.target.tables import Tables


RUN_FIELDS = (
    "run_id",
    "trigger",
    "mode",
    "status",
    "owner",
    "started_at",
    "finished_at",
    "duration_seconds",
    "pages",
    "total_processed",
    "inserted",
    "updated",
    "unchanged",
    "failed",
    "known_bad",
    "deleted",
    "cursor",
    "error",
)


def run_object(row: sa.RowMapping) -> dict[str, Any]:
    """A runs-table row as the API, the CLI and webhooks show a run (docs/design.md, "Run object")."""
    started, finished = row["started_at"], row["finished_at"]
    duration = round((finished - started).total_seconds(), 3) if started and finished else None
    run = {
        "run_id": int(row["id"]),
        "trigger": row["trigger"],
        "mode": row["mode"],
        "status": row["status"],
        "owner": row["owner"],
        "started_at": utc_iso(started),
        "finished_at": utc_iso(finished),
        "duration_seconds": duration,
    }
    run.update({name: int(row[name]) for name in ("pages", "total_processed", *COUNTERS, "deleted")})
    run.update(
        cursor=utc_iso(row["cursor_value"]),
        error=row["error"],
        range_from=utc_iso(row["range_from"]),
        range_to=utc_iso(row["range_to"]),
    )
    return run


class RunHistory:
    """Rows of the runs table for one target table."""

    def __init__(self, engine: sa.Engine, tables: Tables, source_index: str) -> None:
        self.engine, self.table, self.tables, self.source_index = engine, tables.runs, tables, source_index

    def start(
        self,
        trigger: str,
        owner: str,
        started_at: datetime | sa.ColumnElement[datetime],
        mode: str = "incremental",
        range_from: datetime | None = None,
        range_to: datetime | None = None,
    ) -> int:
        """Record a run as running; return its id."""
        with self.engine.begin() as connection:
            return int(
                connection.execute(
                    sa.insert(self.table)
                    .values(
                        target_table=self.tables.target.name,
                        source_index=self.source_index,
                        trigger=trigger,
                        owner=owner,
                        status="running",
                        started_at=started_at,
                        mode=mode,
                        range_from=range_from,
                        range_to=range_to,
                    )
                    .returning(self.table.c.id)
                ).scalar_one()
            )

    def running_of(self, owner: str) -> int | None:
        """The id of the run `owner` recorded as running, if that record landed (owners are unique per run)."""
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(self.table.c.id)
                .where(
                    self.table.c.target_table == self.tables.target.name,
                    self.table.c.owner == owner,
                    self.table.c.status == "running",
                )
                .order_by(self.table.c.id)
                .limit(1)
            ).scalar()

    def close_abandoned(self, owner: str) -> list[int]:
        """Mark failed the runs of this target still `running` under another owner; call only holding the lease.

        Whoever holds the lease is the only one running, so such a row belongs to a process
        that died (killed, lost its host) before it could record how its run ended.
        """
        with self.engine.begin() as connection:
            closed = (
                connection.execute(
                    sa.update(self.table)
                    .where(
                        self.table.c.target_table == self.tables.target.name,
                        self.table.c.status == "running",
                        self.table.c.owner != owner,
                    )
                    .values(
                        status="failed",
                        finished_at=sa.func.now(),
                        error="abandoned: its process stopped before recording the end of the run "
                        "(closed by the next run)",
                    )
                    .returning(self.table.c.id)
                )
                .scalars()
                .all()
            )
        return sorted(int(run_id) for run_id in closed)

    def confirm(self, run_id: int, unchanged: int) -> None:
        """Count documents found unchanged without reading them (fingerprints) in the run's row."""
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(self.table)
                .where(self.table.c.id == run_id)
                .values(
                    unchanged=self.table.c.unchanged + unchanged,
                    total_processed=self.table.c.total_processed + unchanged,
                )
            )

    def finish(self, result: SyncResult) -> None:
        """Record how a run ended."""
        if result.run_id is None:
            return
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(self.table)
                .where(self.table.c.id == result.run_id)
                .values(
                    status=result.status, finished_at=result.finished_at, error=result.error, deleted=result.deleted
                )
            )

    def get(self, run_id: int) -> dict[str, Any] | None:
        """One run of this target as a run object, or None."""
        with self.engine.connect() as connection:
            row = (
                connection.execute(
                    sa.select(self.table).where(
                        self.table.c.id == run_id, self.table.c.target_table == self.tables.target.name
                    )
                )
                .mappings()
                .first()
            )
        return run_object(row) if row is not None else None

    def committed(self, run_id: int) -> tuple[int, PageCounts]:
        """Pages committed so far by a run and their summed counts, as PostgreSQL has them."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(self.table).where(self.table.c.id == run_id)).one()
        return int(row.pages), PageCounts(**{name: int(getattr(row, name)) for name in COUNTERS})
