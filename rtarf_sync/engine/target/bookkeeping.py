"""A page's bookkeeping statements as plain SQL run through the driver.

Every page transaction renews the lease (the fence), adds the page's counts to
the run's history row and moves the stored cursor. The lease is renewed again
with the counts, so a page that took longer than the TTL commits a lease that
is still good. They are the same few
statements on every page, and building and executing them through SQLAlchemy
cost more Python time than the server spent running them, so their text is
rendered once here and executed on the page's own psycopg cursor, inside the
page's transaction. The cursor and the run's counts go in one round trip.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

import psycopg
from sqlalchemy.dialects import postgresql

from rtarf_sync.engine.fence import Fence, check_renewed, renewal, renewal_values
from rtarf_sync.engine.target.cursor_store import RUN_CURSOR_FORWARD, CursorStore, advance_statement
from rtarf_sync.engine.target.tables import Tables

COUNTERS = ("inserted", "updated", "unchanged", "failed", "known_bad")
_QUOTE = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]  # SQLAlchemy dialects are untyped


class PageBookkeeping:
    """The fence, the counts and the cursor of one target's pages."""

    def __init__(self, tables: Tables, lease_ttl_seconds: float, source_index: str) -> None:
        lease, runs, cursor = (_QUOTE.format_table(table) for table in (tables.lease, tables.runs, tables.cursor))
        self.cursor, self.ttl = CursorStore(tables, source_index), float(lease_ttl_seconds)
        renew = renewal(lease)
        self._fence = renew
        added = ", ".join(f"{name} = {name} + %s" for name in COUNTERS)
        # The page's fence locked the lease row, so the second renewal cannot miss: its count goes unchecked.
        self._counts = (
            f"WITH renewed AS ({renew}) "
            f"UPDATE {runs} SET {added}, pages = %s, total_processed = total_processed + %s WHERE id = %s"
        )
        self._counts_and_cursor = (
            f"WITH renewed AS ({renew}), "
            f"stored AS ({advance_statement(cursor)}) "
            f"UPDATE {runs} SET {added}, pages = %s, total_processed = total_processed + %s, "
            f"{RUN_CURSOR_FORWARD} WHERE id = %s"
        )

    def renew(self, cursor: psycopg.Cursor[Any], fence: Fence) -> None:
        """Renew the lease inside the page's transaction; `check_renewed` then raises LeaseLost if it
        was not (the page rolls back). In pipeline mode the answer comes only when the pipeline syncs."""
        cursor.execute(self._fence, renewal_values(fence, self.ttl))

    @staticmethod
    def check_renewed(cursor: psycopg.Cursor[Any], fence: Fence) -> None:
        """Raise LeaseLost unless the renewal sent on `cursor` renewed the lease."""
        check_renewed(cursor.rowcount, fence)

    def advance(
        self,
        cursor: psycopg.Cursor[Any],
        fence: Fence,
        counts: Mapping[str, int],
        run_id: int,
        page_no: int,
        moment: datetime | None,
    ) -> None:
        """Renew the lease again, add the page's counts to the run's row and, given a cursor value,
        move the stored cursor forward."""
        added = [counts[name] for name in COUNTERS]
        total = sum(added)
        renewed = renewal_values(fence, self.ttl)
        if moment is None:
            cursor.execute(self._counts, (*renewed, *added, page_no, total, run_id))
        else:
            cursor.execute(
                self._counts_and_cursor, (*renewed, *self.cursor.values(moment), *added, page_no, total, moment, run_id)
            )
