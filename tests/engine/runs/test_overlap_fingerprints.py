"""An incremental run reads only the seconds of its overlap that changed, on both engines.

Fingerprints per second and index (count, sum, least and greatest `_seq_no`, sum of
the cursor values) are compared before the read; the seconds that agree are counted
as unchanged without being read. What must hold: late arrivals, newer versions and
documents PostgreSQL lacks are all still copied, the counts are those of a run that
read everything, and the run asks the engine for the changed seconds only.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.checks.fingerprints import (
    Comparison,
    Fingerprint,
    compare_prints,
    source_fingerprints,
    target_fingerprints,
)
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.source.clients import build_api
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.engine.target.tables import build_tables, create_tables
from tests.infra.harness.faultproxy import FaultProxy, Seen
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import engine_docs, index_docs, table_docs

BASE = datetime(2026, 3, 1, tzinfo=timezone.utc)
LONG_OVERLAP = {"RTARF_SYNC_OVERLAP_SECONDS": 86400 * 3650}  # every test document is inside the overlap


@pytest.fixture
def proxy(engine: EngineHttp) -> Iterator[FaultProxy]:
    running = FaultProxy(engine.url).start()
    yield running
    running.stop()


def _doc(millis: int, rev: int = 1) -> dict[str, Any]:
    return {"@timestamp": engine_time(BASE + timedelta(milliseconds=millis)), "rev": rev}


def _load(engine: EngineHttp, index: str, docs: dict[str, dict[str, Any]]) -> None:
    assert index_docs(engine, index, docs)["errors"] is False
    engine.refresh(index)


def _read_ranges(proxy: FaultProxy) -> list[tuple[str, str]]:
    """The [gte, lt) cursor ranges below the stored cursor that the run's page requests asked for."""
    ranges: set[tuple[str, str]] = set()
    for seen in proxy.requests:
        if not seen.path.endswith("_search") or not seen.body:
            continue
        body = json.loads(seen.body)
        if "pit" not in body or "sort" not in body:
            continue
        ranges.update(_ranges_in(body["query"]))
    return sorted(ranges)


def _ranges_in(node: Any) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        bounds = node.get("range", {}).get("@timestamp")
        if isinstance(bounds, dict) and "gte" in bounds and "lt" in bounds:
            yield bounds["gte"], bounds["lt"]
        for value in node.values():
            yield from _ranges_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _ranges_in(value)


def _second(second: int) -> str:
    return engine_time(BASE + timedelta(seconds=second))


def _prints_of(versions: dict[tuple[str, int], list[tuple[int, int]]]) -> dict[tuple[str, int], Fingerprint]:
    """The fingerprints that (sequence number, milliseconds) pairs give per key: exact sums, rounded once."""
    return {
        key: Fingerprint(
            len(pairs),
            float(sum(seq for seq, _ in pairs)),
            float(min(seq for seq, _ in pairs)),
            float(max(seq for seq, _ in pairs)),
            float(sum(millis for _, millis in pairs)),
        )
        for key, pairs in versions.items()
    }


def test_only_changed_seconds_of_the_overlap_are_read_and_every_change_lands(
    engine: EngineHttp,
    proxy: FaultProxy,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    engine.create_index(index_name, shards=2)
    # Three documents a second for 100 seconds, on two shards.
    _load(engine, index_name, {f"d{n:04d}": _doc(n * 333) for n in range(300)})
    settings = make_settings(engine, index_name, RTARF_ES_URL=proxy.url, RTARF_SYNC_BATCH_SIZE=50, **LONG_OVERLAP)
    service = SyncService(settings)
    assert service.run().inserted == 300

    # Nothing changed: nothing below the cursor is read, and every document counts as unchanged.
    proxy.requests.clear()
    quiet = service.run()
    assert (quiet.status, quiet.inserted, quiet.updated, quiet.unchanged, quiet.total_processed) == (
        "success",
        0,
        0,
        300,
        300,
    )
    assert _read_ranges(proxy) == []

    # A late arrival in second 10, a newer version in second 40 (same time, same count), and a
    # document PostgreSQL lost in second 70 (a row deleted by hand): three seconds differ.
    _load(engine, index_name, {"late": _doc(10_500), "d0120": _doc(120 * 333, rev=2)})
    with db_engine.begin() as connection:
        connection.execute(sa.text(f"DELETE FROM \"{table_name}\" WHERE es_id = 'd0210'"))
    proxy.requests.clear()
    run = service.run()
    assert (run.status, run.inserted, run.updated, run.unchanged, run.total_processed) == (
        "success",
        2,
        1,
        298,
        301,
    )
    assert _read_ranges(proxy) == [
        (_second(10), _second(11)),
        (_second(39), _second(40)),
        (_second(69), _second(70)),
    ]
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
    with db_engine.connect() as connection:
        row = connection.execute(
            sa.text(f"SELECT unchanged, total_processed FROM rtarf_sync_runs WHERE id = {run.run_id}")
        ).one()
    assert tuple(row) == (298, 301), "the run's row counts the confirmed documents too"
    service.close()


@pytest.mark.parametrize("cursor_type", ["date", "date_nanos"])
def test_the_engine_answers_fingerprints_as_the_documents_say(
    engine: EngineHttp, index_name: str, make_settings: Callable[..., Settings], cursor_type: str
) -> None:
    """The aggregation request of fingerprints.py, answered by each engine, against sums taken from the documents
    themselves (the test server's answer is held to the same expectations as OpenSearch's)."""
    for name in (f"{index_name}-a", f"{index_name}-b"):
        engine.create_index(name, shards=2, cursor_type=cursor_type)
        stamps = {f"d{n}": f"2026-03-01T00:00:{n % 3:02d}.{n * 7:03d}123Z" for n in range(20)}
        _load(engine, name, {doc_id: {"@timestamp": at} for doc_id, at in stamps.items()})
    _load(engine, f"{index_name}-b", {"d1": {"@timestamp": "2026-03-01T00:00:01.007123Z"}})  # a second version

    window = (BASE, BASE + timedelta(seconds=2))  # seconds 0 and 1; second 2 is outside
    api = build_api(make_settings(engine, f"{index_name}-*"))
    prints = source_fingerprints(api, f"{index_name}-*", "@timestamp", *window, timedelta(seconds=1), None)
    expected: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for (name, _), (_, seq_no, source) in engine_docs(engine, f"{index_name}-*").items():
        moment = datetime.fromisoformat(source["@timestamp"].replace("Z", "+00:00"))
        millis = (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)
        if window[0] <= moment < window[1]:
            expected.setdefault((name, millis // 1000 * 1000), []).append((seq_no, millis))
    assert prints == _prints_of(expected)
    assert len(prints) == 4  # two indices, two seconds


def test_postgresql_answers_fingerprints_as_the_rows_say(db_engine: sa.Engine, table_name: str) -> None:
    """PostgreSQL's side, in exact integers: whole milliseconds of each time, however close to a millisecond's
    edge and however far from the epoch (before it too), summed per index and second; deleted rows left out.

    A busy second (6,000 events in 2026) sums its times past 2^53, where doubles added one by one drift;
    the sum must be the exact one, rounded once, as the engine's compensated sum gives it."""
    tables = build_tables(table_name)
    create_tables(db_engine, tables)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    seconds = [
        datetime(*when, tzinfo=timezone.utc)
        for when in [(1901, 12, 14), (1969, 12, 31, 23, 59, 59), (1970, 1, 1), (2026, 3, 1, 12, 0, 59), (2105, 12, 31)]
    ]
    fractions = [0, 1, 999, 1_000, 123_000, 123_999, 999_000, 999_999]  # microseconds into the second
    rows = [
        {
            "es_index": f"i{n % 2}",
            "es_id": f"d{n}",
            "event_timestamp": second + timedelta(microseconds=micros),
            "source": {},
            "es_seq_no": n * 7 + 3,
            "es_primary_term": 1,
        }
        for n, (second, micros) in enumerate((second, micros) for second in seconds for micros in fractions)
    ]
    busy = seconds[3] - timedelta(seconds=1)
    rows += [
        {**rows[0], "es_index": "busy", "es_id": f"b{n}", "event_timestamp": busy + timedelta(microseconds=n * 166 + 7)}
        for n in range(6_000)
    ]
    with db_engine.begin() as connection:
        connection.execute(tables.target.insert(), rows)
        gone = {**rows[0], "es_id": "gone", "es_seq_no": 10**6}
        connection.execute(tables.target.insert(), [{**gone, "deleted_at": datetime.now(timezone.utc)}])
    expected: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for row in rows:
        millis = (row["event_timestamp"] - epoch) // timedelta(milliseconds=1)
        expected.setdefault((row["es_index"], millis // 1000 * 1000), []).append((row["es_seq_no"], millis))
    with db_engine.connect() as connection:
        prints = target_fingerprints(
            connection, tables, seconds[0], seconds[-1] + timedelta(seconds=1), timedelta(seconds=1)
        )
    assert prints == _prints_of(expected)
    assert len(prints) == 11  # two indices, five seconds; the busy second


@pytest.mark.parametrize(
    ("engine_sum", "stored_sum", "same"),
    [
        (2.0**52, 2.0**52 + 1, False),  # exact sums: one millisecond apart is a difference
        (2.0**53 + 1024, 2.0**53 + 1028, True),  # past 2^53: two units in the last place of rounding, no more
        (1.0634198750984544e16, 1.063419875098454e16, True),  # the engine's compensated sum, doubles added in turn
        (2.0**53 + 1024, 2.0**53 + 2048, False),  # past 2^53 and a second apart: a difference still
    ],
)
def test_sums_past_a_doubles_exact_range_match_within_their_rounding(
    engine_sum: float, stored_sum: float, same: bool
) -> None:
    """A busy second (more than about 5,100 events of 2026 in one index) sums its milliseconds past 2^53,
    where the engine's sum and PostgreSQL's exact one rounded once may differ in the last place: were that
    a difference, the second would be read again by every run for as long as it is in the overlap."""
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    key = ("events", 1772323200000)
    engine_side = {key: Fingerprint(5200, 13_522_600.0, 1.0, 5200.0, engine_sum)}
    stored = {key: Fingerprint(5200, 13_522_600.0, 1.0, 5200.0, stored_sum)}
    comparison = compare_prints(
        Comparison(start, start + timedelta(seconds=1), timedelta(seconds=1)),
        engine_side,
        stored,
        target_only_differs=False,
    )
    assert (comparison.confirmed, comparison.differing) == ((5200, []) if same else (0, [key[1]]))


def test_an_engine_that_refuses_fingerprints_gets_its_whole_overlap_read(
    engine: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def no_aggregations(seen: Seen) -> str | None:
        return "aggregations are not allowed for this user" if b'"seq_sum"' in seen.body else None

    refusing = FaultProxy(engine.url, gate=no_aggregations).start()
    try:
        engine.create_index(index_name)
        _load(engine, index_name, {f"d{n:04d}": _doc(n * 500) for n in range(40)})
        settings = make_settings(engine, index_name, RTARF_ES_URL=refusing.url, **LONG_OVERLAP)
        service = SyncService(settings)
        assert service.run().inserted == 40
        _load(engine, index_name, {"late": _doc(3_250)})
        refusing.requests.clear()
        with caplog.at_level("WARNING", logger="rtarf_sync.fingerprints"):
            run = service.run()
        assert (run.status, run.inserted, run.unchanged, run.total_processed) == ("success", 1, 40, 41)
        assert [seen.refused for seen in refusing.requests if seen.refused]  # the fingerprints were asked, and refused
        assert _read_ranges(refusing) == [] and "Reading the whole overlap" in caplog.text
        assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
        service.close()
    finally:
        refusing.stop()
