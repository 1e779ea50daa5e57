"""Cursor control: show, set or reset the stored cursor of (index setting, target table).

Setting the cursor must never lose an event, so the change is checked
against what is stored, under the sync lease (no run moves it meanwhile):

- `None` (reset): the next incremental run reads the whole history. Always allowed.
- earlier than the stored cursor: the next run re-reads from there; re-read events
  count as unchanged. Always allowed.
- later than the stored cursor (or any cursor when none is stored): the events in
  between would never be read by an incremental run. Refused unless `force`.
- later than now: refused, even with `force` (every event until then would be skipped).

Each change is logged with the old and the new value.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from rtarf_sync.engine.runs.lease import holding
from rtarf_sync.engine.runs.result import utc_iso
from rtarf_sync.engine.target.cursor_store import CursorStore

if TYPE_CHECKING:
    from rtarf_sync.engine.runs.sync import SyncService

log = logging.getLogger("rtarf_sync.cursor")


class CursorRefused(ValueError):
    """The requested cursor could skip events (or lies in the future); nothing was changed."""


def check_move(stored: datetime | None, wanted: datetime | None, now: datetime, force: bool) -> None:
    """Raise CursorRefused when moving from `stored` to `wanted` could skip events."""
    if wanted is None:
        return
    if wanted > now:
        raise CursorRefused(f"cursor {utc_iso(wanted)} is in the future: every event until then would be skipped")
    if force:
        return
    if stored is None:
        raise CursorRefused(
            f"no cursor is stored, so the next run reads the whole history; setting "
            f'{utc_iso(wanted)} would skip every event before it. Send "force": true to accept'
        )
    if wanted > stored:
        raise CursorRefused(
            f"cursor {utc_iso(wanted)} is later than the stored cursor {utc_iso(stored)}: the events "
            'in between would never be read. Send "force": true to accept'
        )


class CursorControl:
    """The stored cursor of one service's (index setting, target table)."""

    def __init__(self, service: SyncService) -> None:
        self.service = service
        self.store = CursorStore(service.tables, service.settings.es_index)
        self.target_name = service.tables.target.name
        self.source_index = service.settings.es_index

    def _describe(self, cursor: datetime | None) -> dict[str, Any]:
        return {"cursor": utc_iso(cursor), "source_index": self.source_index, "table": self.target_name}

    def show(self) -> dict[str, Any]:
        """`{"cursor": ISO or null, "source_index", "table"}`."""
        self.service.ensure_tables()
        return self._describe(self.service.sink.load_cursor())

    def set(self, wanted: datetime | None, force: bool = False, now: datetime | None = None) -> dict[str, Any]:
        """Store `wanted` (None: reset) under the lease; raise CursorRefused or LeaseHeld, changing nothing."""
        service = self.service
        service.ensure_tables()
        now = now or datetime.now(timezone.utc)
        with holding(service.engine, service.lease, "cursor") as fence, service.engine.begin() as connection:
            stored = self.store.read(connection, for_update=True)
            check_move(stored, wanted, now, force)
            self.store.set(connection, wanted)
            service.lease.fence(connection, fence)  # commit only while the lease is still ours
        log.warning(
            "Cursor of %s for %s set from %s to %s%s",
            self.target_name,
            self.source_index,
            utc_iso(stored) or "none",
            utc_iso(wanted) or "none (the next run reads the whole history)",
            " (forced)" if force and wanted is not None and (stored is None or wanted > stored) else "",
        )
        return {**self._describe(wanted), "previous": utc_iso(stored)}
