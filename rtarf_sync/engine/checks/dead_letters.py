"""Reading and resolving the dead letters of one target table (documents a run set aside).

The listing never carries `raw_document`: event data can be sensitive, so only
`get()` returns it, and the API guards that route with the token when one is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import sqlalchemy as sa

from rtarf_sync.engine.runs.result import utc_iso
from rtarf_sync.engine.target.tables import Tables


@dataclass(frozen=True)
class DeadLetterPage:
    """One page of dead letters, newest first, and the id to pass as `before` for the next one."""

    items: list[dict[str, Any]]
    unresolved: int
    next_before: int | None


def dead_letter_object(row: sa.RowMapping, with_document: bool = False) -> dict[str, Any]:
    """A dead-letter row as the API and the CLI show it (the field names of docs/design.md)."""
    item = {
        "id": int(row["id"]),
        "es_index": row["es_index"],
        "es_id": row["es_id"],
        "es_seq_no": int(row["es_seq_no"]),
        "es_primary_term": int(row["es_primary_term"]),
        "reason": row["reason"],
        "run_id": None if row["run_id"] is None else int(row["run_id"]),
        "created_at": utc_iso(row["failed_at"]),
        "resolved_at": utc_iso(row["resolved_at"]),
    }
    if with_document:
        item["raw_document"] = row["raw_document"]
    return item


class DeadLetters:
    """The dead-letter rows of one target table."""

    def __init__(self, engine: sa.Engine, tables: Tables) -> None:
        self.engine, self.table, self.target = engine, tables.dead_letters, tables.target.name

    def _mine(self) -> sa.ColumnElement[bool]:
        return self.table.c.target_table == self.target

    def _listed(self) -> list[sa.ColumnElement[Any]]:
        return [column for column in self.table.c if column.name != "raw_document"]

    def page(
        self, limit: int, before: int | None = None, reason: str | None = None, resolved: bool | None = None
    ) -> DeadLetterPage:
        """Dead letters newest first (keyset paging on id); `reason` matches a part of the reason, any case."""
        dead = self.table
        query = sa.select(*self._listed()).where(self._mine()).order_by(dead.c.id.desc()).limit(limit + 1)
        if before is not None:
            query = query.where(dead.c.id < before)
        if reason:
            query = query.where(dead.c.reason.icontains(reason, autoescape=True))
        if resolved is not None:
            query = query.where(dead.c.resolved_at.is_not(None) if resolved else dead.c.resolved_at.is_(None))
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
            unresolved = self.count_unresolved(connection)
        items = [dead_letter_object(row) for row in rows[:limit]]
        next_before = items[-1]["id"] if len(rows) > limit else None
        return DeadLetterPage(items, unresolved, next_before)

    def count_unresolved(self, connection: sa.Connection) -> int:
        """Dead letters not yet resolved (the partial index of migration 0002 serves this)."""
        return int(
            connection.execute(
                sa.select(sa.func.count())
                .select_from(self.table)
                .where(self._mine(), self.table.c.resolved_at.is_(None))
            ).scalar_one()
        )

    def get(self, dead_letter_id: int) -> dict[str, Any] | None:
        """One dead letter with its raw document, or None."""
        with self.engine.connect() as connection:
            row = (
                connection.execute(sa.select(self.table).where(self._mine(), self.table.c.id == dead_letter_id))
                .mappings()
                .first()
            )
        return dead_letter_object(row, with_document=True) if row is not None else None

    def rows(self, ids: Iterable[int] | None) -> list[dict[str, Any]]:
        """The rows with these ids (all unresolved ones when None), oldest first, resolved ones included."""
        dead = self.table
        query = sa.select(*self._listed()).where(self._mine()).order_by(dead.c.id)
        query = query.where(dead.c.resolved_at.is_(None)) if ids is None else query.where(dead.c.id.in_(list(ids)))
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def unresolved_after(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` unresolved dead letters with an id above `after`, oldest first (keyset paging)."""
        dead = self.table
        query = (
            sa.select(*self._listed())
            .where(self._mine(), dead.c.resolved_at.is_(None), dead.c.id > after)
            .order_by(dead.c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def resolve(self, connection: sa.Connection, ids: Iterable[int]) -> int:
        """Mark these dead letters resolved now, inside the caller's transaction."""
        wanted = list(ids)
        if not wanted:
            return 0
        return int(
            connection.execute(
                sa.update(self.table)
                .where(self._mine(), self.table.c.id.in_(wanted), self.table.c.resolved_at.is_(None))
                .values(resolved_at=sa.func.now())
            ).rowcount
        )
