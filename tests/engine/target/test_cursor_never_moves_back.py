"""The stored cursor of a full run only moves forward, whether its pages move it or, sliced, its end does.

A full run after the newest documents were deleted reads nothing as new as the
stored cursor: the cursor stays where it was (DESIGN: full runs move it
forward only). With slices the pages come out of order and the cursor moves
once at the end (`PostgresSink.move_cursor`), a second place the rule must hold.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

import pytest
import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.engine.runs.sync import SyncService
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import deleted_keys, engine_docs, index_docs, stored_cursor, table_docs

BASE = datetime(2026, 4, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("slices", [1, 2])
def test_a_full_run_never_moves_the_stored_cursor_back(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    db_engine: sa.Engine,
    make_settings: Callable[..., Settings],
    slices: int,
) -> None:
    engine.create_index(index_name)
    index_docs(
        engine,
        index_name,
        {f"e{n:02d}": {"@timestamp": engine_time(BASE + timedelta(hours=n)), "n": n} for n in range(12)},
    )
    engine.refresh(index_name)
    service = SyncService(make_settings(engine, index_name, RTARF_SYNC_SLICES=slices))
    try:
        assert service.run().inserted == 12
        assert stored_cursor(db_engine, table_name) == BASE + timedelta(hours=11)
        for doc_id in ("e10", "e11"):  # the two newest go: the full run reads nothing newer than e09
            engine.call("DELETE", f"/{index_name}/_doc/{doc_id}")
        engine.refresh(index_name)
        full = service.run(mode="full")
    finally:
        service.close()
    assert (full.status, full.deleted, full.unchanged) == ("success", 2, 10), full.error
    assert stored_cursor(db_engine, table_name) == BASE + timedelta(hours=11)
    assert full.cursor == engine_time(BASE + timedelta(hours=11))
    assert deleted_keys(db_engine, table_name) == {(index_name, "e10"), (index_name, "e11")}
    assert table_docs(db_engine, table_name, live=True) == engine_docs(engine, index_name)
