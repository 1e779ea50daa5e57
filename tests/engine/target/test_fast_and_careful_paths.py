"""The fast path and the careful path give the same rows, counts and dead letters on a tricky page.

Fast: the answer decoded the way the clients decode a reader's page (typed hits, each
`_source` kept raw), converted by `raw_row`, written in bulk (COPY and the guarded upsert).
Careful: the same bytes decoded into dicts, converted by `to_row` (which re-encodes each
document), written row by row with a savepoint each (the path taken when PostgreSQL refuses
a row of a page). Both land in tables of their own, each holding the same older version of
one document beforehand, and are compared by PostgreSQL: sources as jsonb values (the fast
path keeps the engine's number text, 1.10; the careful path re-encodes it, 1.1; jsonb
compares numbers by value), everything else exactly.

A page holding a lone surrogate escape is refused by the typed decoder as a whole, so
that page is decoded into dicts by both; the same page without it takes the typed decoder.

A page may also reach the writer unconverted (deferred, while pages bring no writes): then
PostgreSQL is asked first and only the documents it lacks are converted; the counts, rows,
dead letters, cursor and recorded keys are those of the same page converted up front.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from rtarf_sync.engine.target.documents import (
    CursorField,
    Deferred,
    EventRow,
    PageConverter,
    Rejected,
    convert_page,
    to_row,
)
from rtarf_sync.engine.target.versions import newest_per_key
from rtarf_sync.engine.fastjson import loads, typed_answers
from rtarf_sync.engine.hits import PAGE_DECODER, Hit, view
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.target.sink import PageCounts, PostgresSink, _PageContext
from tests.infra.oracle import rows, scalar
from tests.infra.support import held_sink

LIMIT = 10 * 1024 * 1024  # the default RTARF_SYNC_MAX_DOCUMENT_BYTES
INDEX = "rtarf-events-tricky"


def _hit(doc_id: str, seq_no: int, source: str, term: int = 1) -> str:
    """One hit as an engine writes it, `_source` spliced in as the raw text it was indexed with."""
    return (
        f'{{"_index":"{INDEX}","_id":"{doc_id}","_version":1,"_seq_no":{seq_no},'
        f'"_primary_term":{term},"_score":null,"_source":{source},"sort":[1763114400000,{seq_no}]}}'
    )


def _page(with_surrogate: bool) -> bytes:
    big = "x" * (9 * 1024 * 1024)
    hits = [
        _hit("plain", 1, '{"@timestamp":"2025-11-14T10:00:00.123456Z","n":1,"ratio":1.10,"name":"é"}'),
        # Indexed pretty-printed: the raw text holds a tab and newlines, which COPY must escape.
        _hit("pretty", 2, '{\n\t"@timestamp": "2025-11-14T10:00:01Z",\n\t"path": "C:\\\\temp\\\\a\\tb"\n}'),
        _hit("nul", 3, '{"@timestamp":"2025-11-14T10:00:02Z","cmd":"a\\u0000b"}'),
        _hit("escaped-not-nul", 4, '{"@timestamp":"2025-11-14T10:00:03Z","cmd":"a\\\\u0000b"}'),
        _hit("big", 5, f'{{"@timestamp":"2025-11-14T10:00:04Z","blob":"{big}"}}'),
        # Two versions of one document, the newer last; then an older version after a newer one.
        _hit("twice", 6, '{"@timestamp":"2025-11-14T10:00:05Z","v":"older"}'),
        _hit("twice", 9, '{"@timestamp":"2025-11-14T10:00:06Z","v":"newer"}'),
        _hit("newer-first", 12, '{"@timestamp":"2025-11-14T10:00:07Z","v":"newer"}'),
        _hit("newer-first", 7, '{"@timestamp":"2025-11-14T10:00:08Z","v":"older"}'),
        # Stored beforehand at seq_no 20: this older version must leave it alone.
        _hit("stored-newer", 10, '{"@timestamp":"2025-11-14T10:00:09Z","v":"older than stored"}'),
        _hit("nested", 11, '{"@timestamp":1763114410000,"a":{"b":[1,2,{"c":null}]}}'),
        _hit("no-stamp", 13, '{"message":"no cursor field"}'),
        _hit("bad-stamp", 14, '{"@timestamp":"yesterday"}'),
        _hit("null-source", 15, "null"),
    ]
    if with_surrogate:
        hits.append(_hit("surrogate", 16, '{"@timestamp":"2025-11-14T10:00:10Z","user":"\\ud800x"}'))
    return _answer(hits)


def _answer(hits: list[str]) -> bytes:
    return (
        '{"pit_id":"p","took":3,"timed_out":false,"_shards":{"total":1,"successful":1,"failed":0},'
        f'"hits":{{"total":{{"value":{len(hits)},"relation":"eq"}},"max_score":null,"hits":[' + ",".join(hits) + "]}}"
    ).encode()


def _typed_hits(raw: bytes) -> list[Hit]:
    with typed_answers(PAGE_DECODER):
        return view(loads(raw)).hits


def _sink(db_engine: sa.Engine, table: str) -> tuple[PostgresSink, Fence, int]:
    sink, fence, _, run_id = held_sink(db_engine, table, INDEX)
    stored = EventRow(INDEX, "stored-newer", datetime(2025, 11, 14, tzinfo=timezone.utc), b'{"v":"stored"}', 20, 1)
    assert sink.write_page([stored], [], fence, run_id, 1).inserted == 1
    return sink, fence, run_id


def _fast(raw: bytes, sink: PostgresSink, fence: Fence, run_id: int) -> tuple[PageCounts, bool]:
    with typed_answers(PAGE_DECODER):
        answer = loads(raw)
    hits = view(answer).hits
    good, bad = convert_page(hits, CursorField("@timestamp"), LIMIT)
    return sink.write_page(good, bad, fence, run_id, 2), all(isinstance(hit, Hit) for hit in hits)


def _careful(raw: bytes, sink: PostgresSink, fence: Fence, run_id: int) -> PageCounts:
    converted = [to_row(hit, "@timestamp", LIMIT) for hit in loads(raw)["hits"]["hits"]]
    good = [row for row in converted if isinstance(row, EventRow)]
    bad = [row for row in converted if isinstance(row, Rejected)]
    unique, duplicates = newest_per_key(good)
    return sink._commit_row_by_row(unique, duplicates, bad, fence, run_id, 2, _PageContext(True, None))


def _differences(db: sa.Engine, fast: str, careful: str) -> list[Any]:
    return rows(
        db,
        f'SELECT es_id FROM "{fast}" f FULL JOIN "{careful}" c USING (es_index, es_id) '
        "WHERE f.source IS DISTINCT FROM c.source OR f.event_timestamp IS DISTINCT FROM c.event_timestamp "
        "OR f.es_seq_no IS DISTINCT FROM c.es_seq_no "
        "OR f.es_primary_term IS DISTINCT FROM c.es_primary_term "
        "OR f.deleted_at IS DISTINCT FROM c.deleted_at",
    )


def _dead_letters(db: sa.Engine, table: str) -> list[Any]:
    return [
        tuple(row)
        for row in rows(
            db,
            "SELECT es_id, es_seq_no, reason, raw_document FROM rtarf_sync_dead_letters "
            "WHERE target_table = :t ORDER BY es_id",
            t=table,
        )
    ]


@pytest.mark.parametrize("with_surrogate", [False, True], ids=["typed-decoder", "lone-surrogate"])
def test_fast_and_careful_paths_store_the_same_rows_and_counts(
    db_engine: sa.Engine, table_name: str, with_surrogate: bool, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _page(with_surrogate)
    fast_table, careful_table = f"{table_name}_f", f"{table_name}_c"
    fast_counts, typed = _fast(raw, *_sink(db_engine, fast_table))
    assert "row by row" not in caplog.text, "the fast path wrote the page in bulk, without falling back"
    careful_counts = _careful(raw, *_sink(db_engine, careful_table))

    assert typed is not with_surrogate, "a lone surrogate sends the page to dicts; otherwise it stays typed"
    assert fast_counts == careful_counts
    # Seven new documents; unchanged: the older version of the stored one and the two older
    # versions dropped within the page; set aside: nul, no-stamp, bad-stamp, null-source (+ surrogate).
    assert fast_counts == PageCounts(inserted=7, updated=0, unchanged=3, failed=4 + with_surrogate, known_bad=0)
    assert _differences(db_engine, fast_table, careful_table) == []
    assert scalar(db_engine, f'SELECT count(*) FROM "{fast_table}"') == 8  # 7 inserted + the stored one
    assert _dead_letters(db_engine, fast_table) == _dead_letters(db_engine, careful_table)

    stored = {
        row.es_id: row
        for row in rows(db_engine, f'SELECT es_id, es_seq_no, source, event_timestamp FROM "{fast_table}"')
    }
    assert stored["twice"].es_seq_no == 9 and stored["twice"].source["v"] == "newer"
    assert stored["newer-first"].es_seq_no == 12 and stored["newer-first"].source["v"] == "newer"
    assert stored["stored-newer"].es_seq_no == 20 and stored["stored-newer"].source == {"v": "stored"}
    assert len(stored["big"].source["blob"]) == 9 * 1024 * 1024
    assert stored["pretty"].source["path"] == "C:\\temp\\a\tb"
    assert stored["escaped-not-nul"].source["cmd"] == "a\\u0000b"
    assert stored["plain"].event_timestamp == datetime(2025, 11, 14, 10, 0, 0, 123456, tzinfo=timezone.utc)
    assert stored["plain"].source["name"] == "é"
    assert scalar(db_engine, f'''SELECT source->>'ratio' FROM "{fast_table}" WHERE es_id = 'plain' ''') == (
        "1.1" if with_surrogate else "1.10"
    ), "the typed path stores the engine's number text"
    reasons = {row[0]: row[2] for row in _dead_letters(db_engine, fast_table)}
    assert reasons["nul"].startswith("document contains a NUL character")
    assert reasons["no-stamp"] == "missing cursor field @timestamp"
    assert reasons["bad-stamp"] == "cursor field @timestamp is not a date: 'yesterday'"
    assert reasons["null-source"] == "document has no _source"
    if with_surrogate:
        assert reasons["surrogate"] == "document contains invalid Unicode (a lone surrogate)"


def _seen_table(db: sa.Engine, name: str) -> str:
    with db.begin() as connection:
        connection.exec_driver_sql(f'CREATE TABLE "{name}" (es_index text, es_id text)')
    return f'"{name}"'


def test_a_deferred_page_converts_only_what_postgresql_lacks_and_counts_like_a_converted_one(
    db_engine: sa.Engine, table_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Read twice: once converted on the reader's thread, once deferred (looked up first)."""
    hits = _typed_hits(_page(with_surrogate=False))
    converter = PageConverter("@timestamp", LIMIT)
    converted_table, deferred_table = f"{table_name}_e", f"{table_name}_d"
    converted = _sink(db_engine, converted_table)
    deferred = _sink(db_engine, deferred_table)
    seen = {name: _seen_table(db_engine, f"{name}_seen") for name in (converted_table, deferred_table)}
    converted_calls: list[int] = []

    def convert_hits(changed: list[Hit]) -> tuple[list[EventRow], list[Rejected]]:
        converted_calls.append(len(changed))
        return converter.convert_hits(changed)

    for page_no in (2, 3):  # the page, then the same page again
        page_rows, rejects = convert_page(hits, CursorField("@timestamp"), LIMIT, prepare_copy=True)
        sink, fence, run_id = converted
        expected = sink.write_page(page_rows, rejects, fence, run_id, page_no, seen=seen[converted_table])
        sink, fence, run_id = deferred
        counts, newest = sink.write_hits(hits, convert_hits, fence, run_id, page_no, seen=seen[deferred_table])
        assert counts == expected
        assert newest == sink.load_cursor() == converted[0].load_cursor()
    # 14 hits, 12 documents. The first time every document but the stored one is converted; the
    # second time only those PostgreSQL still lacks at their version: the four set aside.
    assert converted_calls == [11, 4]
    assert expected == PageCounts(inserted=0, updated=0, unchanged=10, failed=0, known_bad=4)  # 8 + 2 older
    assert _differences(db_engine, converted_table, deferred_table) == []
    assert _dead_letters(db_engine, converted_table) == _dead_letters(db_engine, deferred_table)
    keys = [
        sorted(tuple(row) for row in rows(db_engine, f"SELECT es_index, es_id FROM {seen[name]}"))
        for name in (converted_table, deferred_table)
    ]
    assert keys[0] == keys[1] and len(keys[0]) == 2 * 12  # every document of the page, each time
    assert "row by row" not in caplog.text


def test_the_converter_defers_typed_pages_only_after_a_page_without_writes() -> None:
    with typed_answers(PAGE_DECODER):
        typed = view(loads(_page(with_surrogate=False))).hits
    dicts = loads(_page(with_surrogate=True))["hits"]["hits"]
    converter = PageConverter("@timestamp", LIMIT)
    assert isinstance(converter(typed), tuple) and not isinstance(converter(typed), Deferred)
    converter.convert_ahead = False
    assert isinstance(converter(typed), Deferred)
    assert not isinstance(converter(dicts), Deferred), "a page decoded into dicts is always converted"


def test_a_deferred_page_with_a_row_postgresql_refuses_is_written_row_by_row_and_records_each_key_once(
    db_engine: sa.Engine, table_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The lookup records the page's keys in its own statement; when the page falls back to row by
    row, that statement is rolled back with the page and the careful write records them instead."""
    converter = PageConverter("@timestamp", LIMIT)
    sink, fence, run_id = _sink(db_engine, table_name)
    seen = _seen_table(db_engine, f"{table_name}_seen")
    first = _typed_hits(
        _answer(
            [
                _hit("a", 1, '{"@timestamp":"2025-11-14T10:00:00Z","v":"a1"}'),
                _hit("b", 2, '{"@timestamp":"2025-11-14T10:00:01Z","v":"b1"}'),
                _hit("c", 3, '{"@timestamp":"2025-11-14T10:00:02Z","v":"c1"}'),
            ]
        )
    )
    counts, _ = sink.write_hits(first, converter.convert_hits, fence, run_id, 2, seen=seen)
    assert counts.inserted == 3
    with db_engine.begin() as connection:
        connection.exec_driver_sql(
            f"ALTER TABLE \"{table_name}\" ADD CONSTRAINT no_refused CHECK (source->>'v' IS DISTINCT FROM 'refused')"
        )
    second = _typed_hits(
        _answer(
            [
                _hit("a", 1, '{"@timestamp":"2025-11-14T10:00:00Z","v":"a1"}'),
                _hit("b", 5, '{"@timestamp":"2025-11-14T10:00:03Z","v":"refused"}'),
                _hit("c", 6, '{"@timestamp":"2025-11-14T10:00:04Z","v":"c2"}'),
            ]
        )
    )
    counts, newest = sink.write_hits(second, converter.convert_hits, fence, run_id, 3, seen=seen)
    assert "row by row" in caplog.text
    assert counts == PageCounts(inserted=0, updated=1, unchanged=1, failed=1, known_bad=0)
    assert newest == datetime(2025, 11, 14, 10, 0, 4, tzinfo=timezone.utc)
    assert rows(
        db_engine,
        f"SELECT es_id, es_seq_no, source->>'v' FROM \"{table_name}\" WHERE es_id IN ('a', 'b', 'c') ORDER BY es_id",
    ) == [("a", 1, "a1"), ("b", 2, "b1"), ("c", 6, "c2")]
    (reason,) = [row[2] for row in _dead_letters(db_engine, table_name) if row[0] == "b"]
    assert reason.startswith("PostgreSQL refused the row")
    recorded = sorted(row[0] for row in rows(db_engine, f"SELECT es_id FROM {seen}"))
    assert recorded == ["a", "a", "b", "b", "c", "c"]  # each page's three documents, once each
