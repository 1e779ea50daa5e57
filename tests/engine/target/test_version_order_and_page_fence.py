"""Every guard of the sync has a test here that fails when the guard is taken out.

The version guard has two layers (the pre-filter query that decides which
rows go to the upsert, and the SQL `WHERE` of the upsert itself); each is
tested on its own, with a primary term above 1. The never-commit-a-page-twice
check is driven by a real lost commit answer: the page's COMMIT reaches
PostgreSQL and lands, then the driver reports the connection as lost.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import psycopg
import pytest
import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.target.documents import EventRow
from rtarf_sync.engine.target.versions import newest_per_key, row_version
from rtarf_sync.engine.errors import LeaseLost
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.lease import Lease
from rtarf_sync.engine.runs.records import RunHistory
from rtarf_sync.engine.target.sink import PostgresSink
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.tables import build_tables, create_tables
from rtarf_sync.sample import bulk_payload, make_event
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import engine_docs, index_docs, rows, scalar, table_docs

EVERYTHING = {"RTARF_SYNC_OVERLAP_SECONDS": 86400 * 3650}


def _row(doc_id: str, seq_no: int, term: int = 1, note: str = "") -> EventRow:
    stamp = datetime(2025, 11, 14, tzinfo=timezone.utc) + timedelta(seconds=seq_no)
    return EventRow("idx", doc_id, stamp, f'{{"note": "{note}"}}'.encode(), seq_no, term)


def _stored(db: sa.Engine, table: str, doc_id: str) -> tuple[int, int, str]:
    row = rows(
        db, f"SELECT es_primary_term, es_seq_no, source->>'note' AS note FROM \"{table}\" WHERE es_id = :i", i=doc_id
    )[0]
    return (row.es_primary_term, row.es_seq_no, row.note)


# -- the version guard: the pre-filter query --------------------------------------------------


def test_pre_filter_lets_only_new_documents_and_strictly_newer_versions_through(
    sink_parts: tuple[PostgresSink, Fence, RunHistory, int], db_engine: sa.Engine, table_name: str
) -> None:
    sink, fence, _, run_id = sink_parts
    stored = [_row(name, 9, term=2) for name in ("seq", "term", "same", "older-term", "older-seq", "gone")]
    sink.write_page(stored, [], fence, run_id, 1)
    with db_engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE \"{table_name}\" SET deleted_at = now() WHERE es_id = 'gone'"))
    incoming = [
        _row("seq", 10, term=2),  # a higher seq_no in the same term: newer
        _row("term", 1, term=3),  # a higher primary term wins over a higher seq_no
        _row("same", 9, term=2),  # the same version is not newer
        _row("older-term", 50, term=1),  # an older primary term loses whatever its seq_no
        _row("older-seq", 8, term=2),
        _row("gone", 0, term=1),  # a soft-deleted row is versionless: any version is taken
        _row("fresh", 0, term=1),  # never stored: new
    ]
    with db_engine.begin() as connection:
        new, newer = sink.writer.changed(connection, incoming)
    assert [row.es_id for row in new] == ["fresh"]
    assert [row.es_id for row in newer] == ["seq", "term", "gone"]


def test_a_higher_primary_term_with_a_lower_seq_no_is_written(
    sink_parts: tuple[PostgresSink, Fence, RunHistory, int], db_engine: sa.Engine, table_name: str
) -> None:
    sink, fence, _, run_id = sink_parts
    assert sink.write_page([_row("a", 90, term=1, note="term one")], [], fence, run_id, 1).inserted == 1
    # After a primary failover the term goes up and seq_no may restart lower: still the newer version.
    counts = sink.write_page([_row("a", 3, term=2, note="term two")], [], fence, run_id, 2)
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, 0)
    assert _stored(db_engine, table_name, "a") == (2, 3, "term two")


# -- the version guard: the SQL WHERE of the upsert, with the pre-filter bypassed --------------


def test_the_upsert_itself_refuses_an_older_version(
    sink_parts: tuple[PostgresSink, Fence, RunHistory, int], db_engine: sa.Engine, table_name: str
) -> None:
    sink, fence, _, run_id = sink_parts
    assert (
        sink.write_page(
            [_row("a", 9, term=2, note="stored"), _row("b", 9, term=2, note="stored")], [], fence, run_id, 1
        ).inserted
        == 2
    )
    # Straight to the guarded upsert, as a row that slipped past the pre-filter would go.
    with db_engine.begin() as connection:
        written = sink.writer.upsert_newer(
            connection,
            [
                _row("a", 50, term=1, note="older term, higher seq_no"),
                _row("b", 9, term=2, note="same version"),
            ],
        )
    assert written == 0
    assert _stored(db_engine, table_name, "a") == (2, 9, "stored")
    assert _stored(db_engine, table_name, "b") == (2, 9, "stored")


def test_the_upsert_itself_writes_a_higher_term_with_a_lower_seq_no(
    sink_parts: tuple[PostgresSink, Fence, RunHistory, int], db_engine: sa.Engine, table_name: str
) -> None:
    sink, fence, _, run_id = sink_parts
    sink.write_page([_row("a", 90, term=1, note="stored")], [], fence, run_id, 1)
    with db_engine.begin() as connection:
        written = sink.writer.upsert_newer(connection, [_row("a", 4, term=3, note="term three")])
    assert written == 1
    assert _stored(db_engine, table_name, "a") == (3, 4, "term three")


# -- a page COPYed straight in after a page of only new documents -----------------------------


def test_after_an_all_new_page_a_page_with_stored_documents_falls_back_to_the_lookup(
    sink_parts: tuple[PostgresSink, Fence, RunHistory, int], db_engine: sa.Engine, table_name: str
) -> None:
    sink, fence, _, run_id = sink_parts
    assert sink.write_page([_row("a", 1, note="a1"), _row("b", 1, note="b1")], [], fence, run_id, 1).inserted == 2
    assert sink.writer.all_new, "the next page is tried as all new"
    counts = sink.write_page(
        [_row("c", 1, note="c1"), _row("a", 1, note="a again"), _row("b", 2, note="b2")], [], fence, run_id, 2
    )
    assert (counts.inserted, counts.updated, counts.unchanged) == (1, 1, 1)
    assert scalar(db_engine, f'SELECT count(*) FROM "{table_name}"') == 3, "nothing of the refused COPY stayed"
    assert [_stored(db_engine, table_name, doc_id)[2] for doc_id in "abc"] == ["a1", "b2", "c1"]


# -- the newest of two versions within one page -----------------------------------------------


@pytest.mark.parametrize("order", ["newest first", "newest last"])
def test_newest_per_key_keeps_the_newest_version_in_either_order(order: str) -> None:
    page = [
        _row("a", 1, term=3, note="newest"),
        _row("a", 50, term=2, note="older term"),
        _row("a", 7, term=2, note="older"),
    ]
    if order == "newest last":
        page.reverse()
    kept, dropped = newest_per_key(page)
    assert [(row_version(row), row.source) for row in kept] == [((3, 1), b'{"note": "newest"}')]
    assert dropped == 2


def test_a_page_holding_two_versions_stores_the_newest_and_counts_the_other_unchanged(
    sink_parts: tuple[PostgresSink, Fence, RunHistory, int], db_engine: sa.Engine, table_name: str
) -> None:
    sink, fence, history, run_id = sink_parts
    page = [_row("a", 2, term=2, note="newest"), _row("a", 40, term=1, note="older"), _row("b", 4)]
    counts = sink.write_page(page, [], fence, run_id, 1)
    assert (counts.inserted, counts.updated, counts.unchanged) == (2, 0, 1)
    assert _stored(db_engine, table_name, "a") == (2, 2, "newest")
    assert history.committed(run_id) == (1, counts)


# -- lease fencing and renewal ----------------------------------------------------------------


def test_fence_renews_the_lease_and_refuses_a_stale_epoch(db_engine: sa.Engine, table_name: str) -> None:
    tables = build_tables(table_name)
    create_tables(db_engine, tables)
    lease = Lease(tables.lease, table_name, 30)
    with db_engine.begin() as connection:
        fence = lease.acquire(connection, "holder")
        assert isinstance(fence, Fence)
        # Shorten the lease by hand, so that a renewal is visible as a later expiry.
        connection.execute(
            sa.text("UPDATE rtarf_sync_lease SET expires_at = now() + interval '1 second' WHERE name = :n"),
            {"n": table_name},
        )
    with db_engine.begin() as connection:
        lease.fence(connection, fence)
    left = scalar(
        db_engine, "SELECT extract(epoch FROM expires_at - now()) FROM rtarf_sync_lease WHERE name = :n", n=table_name
    )
    assert 25 < float(left) <= 30, "fencing renews the lease for a whole TTL"
    stale = Fence(fence.name, fence.owner, fence.epoch - 1)
    with db_engine.begin() as connection, pytest.raises(LeaseLost):
        lease.fence(connection, stale)
    with db_engine.begin() as connection, pytest.raises(LeaseLost):
        lease.fence(connection, Fence(fence.name, "someone else", fence.epoch))


def test_a_page_written_under_a_lost_lease_leaves_nothing(
    sink_parts: tuple[PostgresSink, Fence, RunHistory, int], db_engine: sa.Engine, table_name: str
) -> None:
    sink, fence, history, run_id = sink_parts
    with db_engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE rtarf_sync_lease SET epoch = epoch + 1, owner = 'taker' WHERE name = :n"), {"n": table_name}
        )
    with pytest.raises(LeaseLost):
        sink.write_page([_row("a", 1)], [], fence, run_id, 1)
    assert scalar(db_engine, f'SELECT count(*) FROM "{table_name}"') == 0
    assert scalar(db_engine, "SELECT count(*) FROM rtarf_sync_cursor WHERE target_table = :t", t=table_name) == 0
    assert history.committed(run_id)[0] == 0


# -- never commit a page twice ----------------------------------------------------------------


class LostCommitAnswer:
    """Lets a page's COMMIT land in PostgreSQL, then reports the connection lost, once.

    The fault sits at the driver edge (the dialect's commit), like a network cut
    between the server's commit and its answer reaching us.
    """

    def __init__(self, engine: sa.Engine, table: str, page: int) -> None:
        self.engine, self.table, self.page, self.fired = engine, table, page, 0
        self._commit = engine.dialect.do_commit
        engine.dialect.do_commit = self._do_commit  # type: ignore[method-assign]  # the fault sits at the driver edge

    def _pages(self) -> int:
        with psycopg.connect(
            self.engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql"),
            autocommit=True,
        ) as connection:
            found = connection.execute(
                "SELECT max(pages) FROM rtarf_sync_runs WHERE target_table = %s", (self.table,)
            ).fetchone()
        return int(found[0] or 0) if found else 0

    def _do_commit(self, dbapi_connection: Any) -> None:
        self._commit(dbapi_connection)
        if not self.fired and self._pages() == self.page:
            self.fired += 1
            raise psycopg.OperationalError("server closed the connection unexpectedly (injected after COMMIT)")


@pytest.fixture
def own_engine(database_url: str) -> Iterator[sa.Engine]:
    """An engine the service uses alone, so a fault on it touches no other test."""
    engine = sa.create_engine(database_url, pool_pre_ping=True)
    yield engine
    engine.dispose()


def test_a_page_whose_commit_answer_was_lost_is_counted_once(
    elasticsearch: EngineHttp,
    index_name: str,
    table_name: str,
    own_engine: sa.Engine,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    elasticsearch.create_index(index_name)
    elasticsearch.bulk(bulk_payload(index_name, (make_event(n) for n in range(120))))
    elasticsearch.refresh(index_name)
    fault = LostCommitAnswer(own_engine, table_name, page=2)
    service = SyncService(make_settings(elasticsearch, index_name, RTARF_SYNC_BATCH_SIZE=50), engine=own_engine)
    result = service.run()
    assert fault.fired == 1, "the commit of page 2 landed and its answer was lost"
    assert result.status == "success", result.error
    assert (result.pages, result.inserted, result.updated, result.unchanged, result.total_processed) == (
        3,
        120,
        0,
        0,
        120,
    )
    run = rows(
        db_engine,
        "SELECT pages, inserted, unchanged, total_processed FROM rtarf_sync_runs WHERE target_table = :t",
        t=table_name,
    )[0]
    assert (run.pages, run.inserted, run.unchanged, run.total_processed) == (3, 120, 0, 120)
    assert table_docs(db_engine, table_name) == engine_docs(elasticsearch, index_name)


# -- each counter of total_processed, exactly -------------------------------------------------


def test_every_counter_is_exact_in_one_run(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    engine.create_index(index_name)
    first = {f"e{n}": make_event(n) for n in range(30)}
    first["bad-old"] = {"message": "no timestamp"}
    assert index_docs(engine, index_name, first)["errors"] is False
    engine.refresh(index_name)
    service = SyncService(make_settings(engine, index_name, RTARF_SYNC_BATCH_SIZE=8, **EVERYTHING))
    one = service.run()
    assert (one.inserted, one.updated, one.unchanged, one.failed, one.known_bad, one.total_processed) == (
        30,
        0,
        0,
        1,
        0,
        31,
    )
    second = {f"e{n}": {**make_event(n), "note": "changed"} for n in range(0, 30, 3)}  # 10 updated
    second.update({f"new{n}": make_event(100 + n) for n in range(7)})  # 7 inserted
    second.update({"bad-new-1": {"message": "no timestamp"}, "bad-new-2": {"message": "none either"}})
    assert index_docs(engine, index_name, second)["errors"] is False
    engine.refresh(index_name)
    two = service.run()
    # 20 e-documents unchanged; bad-old is known bad (its version is already set aside).
    counts = (two.inserted, two.updated, two.unchanged, two.failed, two.known_bad)
    assert counts == (7, 10, 20, 2, 1)
    assert two.total_processed == sum(counts) == len(engine_docs(engine, index_name)) == 40
    run = rows(
        db_engine,
        "SELECT inserted, updated, unchanged, failed, known_bad, total_processed "
        "FROM rtarf_sync_runs WHERE target_table = :t ORDER BY id",
        t=table_name,
    )[1]
    assert tuple(run) == (*counts, 40)
    service.close()
