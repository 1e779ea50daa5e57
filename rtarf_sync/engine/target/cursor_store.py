"""The stored cursor of one (index setting, target table): read it, advance it, set it by hand.

A run only ever advances it, with `greatest`, so it never moves back; a page's newest cursor
value (`newest_of_page`) is what it advances to. Setting it back is `CursorControl`'s, by hand.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from rtarf_sync.engine.target.documents import EventRow
from rtarf_sync.engine.target.tables import Tables

# The run row's own cursor column moves the same way: forward only.
RUN_CURSOR_FORWARD = "cursor_value = greatest(cursor_value, %s)"


def advance_statement(cursor_table: str) -> str:
    """The advance for a quoted cursor table; parameters (target table, source index, value)."""
    return (
        f"INSERT INTO {cursor_table} (target_table, source_index, cursor_value) VALUES (%s, %s, %s) "
        "ON CONFLICT (target_table, source_index) DO UPDATE SET "
        f"cursor_value = greatest({cursor_table}.cursor_value, excluded.cursor_value), updated_at = now()"
    )


def latest(*moments: datetime | None) -> datetime | None:
    """The newest of some instants, None for none."""
    return max((moment for moment in moments if moment is not None), default=None)


def newest_of_page(rows: Iterable[EventRow], newest_unchanged: datetime | None = None) -> datetime | None:
    """A page's newest cursor value: of its rows written, and of its unchanged documents as stored."""
    return latest(newest_unchanged, *(row.event_timestamp for row in rows))


class CursorStore:
    """The stored cursor row of (source index setting, target table)."""

    def __init__(self, tables: Tables, source_index: str) -> None:
        self.table, self.target_name, self.source_index = tables.cursor, tables.target.name, source_index

    def _mine(self) -> sa.ColumnElement[bool]:
        return sa.and_(self.table.c.target_table == self.target_name, self.table.c.source_index == self.source_index)

    def values(self, moment: datetime) -> tuple[str, str, datetime]:
        """The parameters of `advance_statement` for `moment`."""
        return (self.target_name, self.source_index, moment)

    def advance(self, connection: sa.Connection, moment: datetime) -> None:
        """Move the stored cursor forward to `moment`, never back, in the caller's transaction."""
        quoted = connection.dialect.identifier_preparer.format_table(self.table)
        connection.exec_driver_sql(advance_statement(quoted), self.values(moment))

    def query(self) -> sa.Select[tuple[datetime | None]]:
        """The statement that reads the stored cursor (also as a subquery of a larger read)."""
        return sa.select(self.table.c.cursor_value).where(self._mine())

    def read(self, connection: sa.Connection, *, for_update: bool = False) -> datetime | None:
        """The stored cursor, or None before the first page; `for_update` locks its row."""
        statement = self.query()
        return connection.execute(statement.with_for_update() if for_update else statement).scalar()

    def set(self, connection: sa.Connection, wanted: datetime | None) -> None:
        """Store `wanted` as it is, back or forward (None: forget the cursor): for a change by hand."""
        if wanted is None:
            connection.execute(sa.delete(self.table).where(self._mine()))
            return
        statement = insert(self.table).values(
            target_table=self.target_name, source_index=self.source_index, cursor_value=wanted, updated_at=sa.func.now()
        )
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[self.table.c.target_table, self.table.c.source_index],
                set_={"cursor_value": wanted, "updated_at": sa.func.now()},
            )
        )
