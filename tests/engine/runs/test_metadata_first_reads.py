"""Metadata-first reads, on both engines, seen from the wire through the fault proxy.

A page PostgreSQL mostly holds is asked without `_source`; the new and changed
documents' sources come from an ids query on the same point in time. These tests
pin what that must never change: a document changed between the two requests is
stored at the version its source belongs to, unchanged documents are not written
(nor fetched), deletions are still seen, and the per-page choice follows the data.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.documents import engine_time
from tests.infra.harness.faultproxy import FaultProxy, Seen
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import engine_docs, index_docs, table_docs

BASE = datetime(2026, 3, 1, tzinfo=timezone.utc)
ALWAYS_OVERLAP = {"RTARF_SYNC_OVERLAP_SECONDS": 86400 * 3650}


class Hook:
    """A gate that lets every request through, and once armed runs `action` before the first `_source` fetch."""

    def __init__(self) -> None:
        self.action: Callable[[], None] | None = None
        self.fired = threading.Event()

    def __call__(self, seen: Seen) -> str | None:
        if self.action is not None and not self.fired.is_set() and _kind(seen) == "fetch":
            self.action()  # the engine changes between the metadata page and the fetch
            self.fired.set()
        return None


@pytest.fixture
def hook() -> Hook:
    return Hook()


@pytest.fixture
def proxy(engine: EngineHttp, hook: Hook) -> Iterator[FaultProxy]:
    running = FaultProxy(engine.url, gate=hook).start()
    yield running
    running.stop()


def _kind(seen: Seen) -> str | None:
    """'metadata' or 'whole' for a page of a point in time, 'fetch' for an ids query, else None."""
    if not seen.path.endswith("_search") or not seen.body:
        return None
    body: dict[str, Any] = json.loads(seen.body)
    if "sort" not in body:
        return "fetch" if b'"ids"' in seen.body else None
    if "pit" not in body:
        return None
    return "metadata" if body.get("_source") is False else "whole"


def _requests(proxy: FaultProxy) -> list[str]:
    return [kind for kind in map(_kind, proxy.requests) if kind is not None]


def _doc(second: int, rev: int = 1) -> dict[str, Any]:
    return {"@timestamp": engine_time(BASE + timedelta(seconds=second)), "rev": rev, "message": "x" * 200}


def _load(engine: EngineHttp, index: str, seconds: range, rev: int = 1) -> None:
    assert index_docs(engine, index, {f"d{n:04d}": _doc(n, rev) for n in seconds})["errors"] is False
    engine.refresh(index)


def _row(db_engine: sa.Engine, table: str, doc_id: str) -> Any:
    with db_engine.connect() as connection:
        return connection.execute(
            sa.text(f'SELECT source, es_primary_term, es_seq_no FROM "{table}" WHERE es_id = :id'), {"id": doc_id}
        ).one()


def test_a_document_changed_between_metadata_and_fetch_is_stored_at_the_version_its_source_has(
    engine: EngineHttp,
    proxy: FaultProxy,
    hook: Hook,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    engine.create_index(index_name)
    _load(engine, index_name, range(20))
    settings = make_settings(engine, index_name, RTARF_ES_URL=proxy.url, RTARF_SYNC_BATCH_SIZE=10, **ALWAYS_OVERLAP)
    service = SyncService(settings)
    assert service.run().inserted == 20

    _load(engine, index_name, range(5, 6), rev=2)
    term, seq_no, _ = engine_docs(engine, index_name)[(index_name, "d0005")]
    # Held between the metadata page (which shows rev 2) and the fetch of its source: rev 3 arrives.
    hook.action = lambda: _load(engine, index_name, range(5, 6), rev=3)
    proxy.requests.clear()
    second = service.run()
    assert hook.fired.is_set() and "metadata" in _requests(proxy)
    assert (second.status, second.inserted, second.updated, second.unchanged) == ("success", 0, 1, 19)
    source, stored_term, stored_seq_no = _row(db_engine, table_name, "d0005")
    # The point in time's version, source and version together: never rev 3's version over rev 2's source.
    assert (source["rev"], stored_term, stored_seq_no) == (2, term, seq_no)

    third = service.run()
    assert (third.updated, third.unchanged) == (1, 19)
    assert _row(db_engine, table_name, "d0005")[0]["rev"] == 3
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
    service.close()


def test_a_metadata_page_of_unchanged_documents_writes_and_fetches_nothing_and_deletions_are_still_seen(
    engine: EngineHttp,
    proxy: FaultProxy,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    engine.create_index(index_name)
    _load(engine, index_name, range(30))
    settings = make_settings(engine, index_name, RTARF_ES_URL=proxy.url, RTARF_SYNC_BATCH_SIZE=10, RTARF_SYNC_SLICES=2)
    service = SyncService(settings)
    assert service.run(mode="full").inserted == 30
    versions = f'SELECT es_id, xmin::text, last_synced_at FROM "{table_name}" ORDER BY es_id'
    with db_engine.connect() as connection:
        before = connection.execute(sa.text(versions)).all()

    proxy.requests.clear()
    again = service.run(mode="full")
    assert (again.status, again.inserted, again.updated, again.unchanged, again.deleted) == ("success", 0, 0, 30, 0)
    assert set(_requests(proxy)) == {"metadata"}, "every page without _source, and no source fetched"
    with db_engine.connect() as connection:
        assert connection.execute(sa.text(versions)).all() == before, "an unchanged row is not written"

    engine.call("DELETE", f"/{index_name}/_doc/d0003?refresh=true")
    gone = service.run(mode="full")
    assert (gone.status, gone.unchanged, gone.deleted) == ("success", 29, 1)
    assert table_docs(db_engine, table_name, live=True) == engine_docs(engine, index_name)
    service.close()


def test_the_per_page_choice_follows_the_share_already_stored_both_ways(
    engine: EngineHttp,
    proxy: FaultProxy,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    engine.create_index(index_name)
    _load(engine, index_name, range(0, 150))
    _load(engine, index_name, range(450, 600))
    settings = make_settings(engine, index_name, RTARF_ES_URL=proxy.url, RTARF_SYNC_BATCH_SIZE=5, **ALWAYS_OVERLAP)
    service = SyncService(settings)
    assert service.run().inserted == 300

    # Late events between two stretches already stored; enough of them that the reader, a few
    # (larger) metadata pages ahead of the writer when the choice flips, still reads some whole.
    # A full run reads all three stretches (an incremental one would read only the changed seconds).
    _load(engine, index_name, range(150, 450))
    proxy.requests.clear()
    run = service.run(mode="full")
    assert (run.status, run.inserted, run.updated, run.unchanged, run.deleted) == ("success", 300, 0, 300, 0)
    pages = [kind for kind in _requests(proxy) if kind != "fetch"]
    assert pages[0] == "metadata", pages
    flipped = pages.index("whole")  # the new documents' pages are read whole...
    assert "metadata" in pages[flipped:], pages  # ...and the stored ones after them metadata first again
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
    service.close()
