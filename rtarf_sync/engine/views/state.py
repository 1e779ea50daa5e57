"""The sync state as PostgreSQL holds it: row count, cursor, lease, dead letters, recent runs.

Read by `python -m rtarf_sync status`; it only reads, never writes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from rtarf_sync.engine.target.tables import Tables, present_tables

_RUN_COLUMNS = (
    "id",
    "trigger",
    "status",
    "started_at",
    "finished_at",
    "pages",
    "total_processed",
    "inserted",
    "updated",
    "unchanged",
    "failed",
    "known_bad",
    "cursor_value",
    "error",
)


class MissingTables(LookupError):
    """The service's tables do not exist yet in this database."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


def _plain(value: Any) -> Any:
    """JSON-ready value: datetimes as ISO-8601 UTC."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    return value


def _plain_row(row: Any) -> dict[str, Any]:
    return {key: _plain(value) for key, value in dict(row).items()}


def read_state(engine: sa.Engine, tables: Tables, limit: int = 10) -> dict[str, Any]:
    """Everything `status` shows about one target table; raise MissingTables before the first run."""
    name = tables.target.name
    with engine.connect() as connection:
        wanted = (tables.target, tables.cursor, tables.lease, tables.runs, tables.dead_letters)
        present = present_tables(connection, *wanted)
        missing = [table.name for table in wanted if table.name not in present]
        if missing:
            raise MissingTables(missing)
        rows = connection.execute(sa.select(sa.func.count()).select_from(tables.target)).scalar_one()
        cursors = (
            connection.execute(
                sa.select(tables.cursor.c.source_index, tables.cursor.c.cursor_value, tables.cursor.c.updated_at).where(
                    tables.cursor.c.target_table == name
                )
            )
            .mappings()
            .all()
        )
        lease = (
            connection.execute(
                sa.select(tables.lease, (tables.lease.c.expires_at > sa.func.now()).label("held")).where(
                    tables.lease.c.name == name
                )
            )
            .mappings()
            .first()
        )
        dead = connection.execute(
            sa.select(sa.func.count())
            .select_from(tables.dead_letters)
            .where(tables.dead_letters.c.target_table == name)
        ).scalar_one()
        runs = (
            connection.execute(
                sa.select(*(tables.runs.c[column] for column in _RUN_COLUMNS))
                .where(tables.runs.c.target_table == name)
                .order_by(tables.runs.c.id.desc())
                .limit(limit)
            )
            .mappings()
            .all()
        )
    return {
        "table": name,
        "rows": int(rows),
        "cursors": [_plain_row(row) for row in cursors],
        "lease": _plain_row(lease) if lease else None,
        "dead_letters": int(dead),
        "runs": [_plain_row(row) for row in runs],
    }


def running_run(engine: sa.Engine, tables: Tables, owner_prefix: str) -> dict[str, Any] | None:
    """The newest run still marked running whose owner starts with `owner_prefix`, if any."""
    runs = tables.runs
    with engine.connect() as connection:
        row = (
            connection.execute(
                sa.select(runs)
                .where(
                    runs.c.target_table == tables.target.name,
                    runs.c.status == "running",
                    runs.c.owner.startswith(owner_prefix, autoescape=True),
                )
                .order_by(runs.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None


def _seconds(run: dict[str, Any]) -> str:
    if not run["finished_at"]:
        return "-"
    started = datetime.fromisoformat(run["started_at"])
    finished = datetime.fromisoformat(run["finished_at"])
    return f"{(finished - started).total_seconds():.1f}"


def _lease_line(lease: dict[str, Any] | None) -> str:
    if lease is None:
        return "lease: never taken"
    if lease["held"]:
        return f"lease: held by {lease['owner']} (epoch {lease['epoch']}) until {lease['expires_at']}"
    return f"lease: free (last owner {lease['owner']}, epoch {lease['epoch']})"


def format_state(state: dict[str, Any], database: str) -> str:
    """The state as a few lines of text and a table of recent runs, newest first."""
    lines = [f"database: {database}", f"target table {state['table']}: {state['rows']:,} rows"]
    for cursor in state["cursors"]:
        lines.append(f"cursor for {cursor['source_index']}: {cursor['cursor_value']} (updated {cursor['updated_at']})")
    if not state["cursors"]:
        lines.append("cursor: none yet (the next run reads the whole history)")
    lines.append(_lease_line(state["lease"]))
    lines.append(f"dead letters: {state['dead_letters']:,}")
    if not state["runs"]:
        lines.append("no runs yet: python -m rtarf_sync sync runs one")
        return "\n".join(lines)
    header = (
        f"{'id':>6}  {'trigger':<9}  {'status':<8}  {'started (UTC)':<19}  {'secs':>6}  "
        f"{'processed':>9}  {'inserted':>8}  {'updated':>8}  {'unchanged':>9}  {'set aside':>9}"
    )
    lines += ["recent runs, newest first:", header]
    for run in state["runs"]:
        started = str(run["started_at"])[:19].replace("T", " ")
        lines.append(
            f"{run['id']:>6}  {run['trigger']:<9}  {run['status']:<8}  {started:<19}  "
            f"{_seconds(run):>6}  {run['total_processed']:>9,}  {run['inserted']:>8,}  "
            f"{run['updated']:>8,}  {run['unchanged']:>9,}  {run['failed']:>9,}"
        )
        if run["error"]:
            lines.append(f"{'':>8}error: {run['error']}")
    return "\n".join(lines)
