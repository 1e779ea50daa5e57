"""The same paging tests against the real OpenSearch node and the Elasticsearch protocol server.

If the protocol server drifts from how a real engine pages, sorts, isolates a
point in time or applies refresh, these tests fail on one engine and not the
other.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from config import Settings
from rtarf_sync.engine.source.clients import SearchApi, build_api
from rtarf_sync.engine.hits import Hit, as_dict
from rtarf_sync.engine.source.reader import PitReader, ReadPlan, ScrollReader
from rtarf_sync.engine.retry import RetryPolicy
from rtarf_sync.sample import bulk_payload, make_event
from tests.infra.harness.http import EngineHttp

MATCH_ALL: dict[str, Any] = {"match_all": {}}


@pytest.fixture
def api(engine: EngineHttp, make_settings: Callable[..., Settings], index_name: str) -> Iterator[SearchApi]:
    """The product's client adapter for the engine under test."""
    client = build_api(make_settings(engine, index_name))
    yield client
    client.close()


def _index_docs(engine: EngineHttp, index: str, docs: dict[str, dict[str, Any]]) -> None:
    lines = []
    for doc_id, source in docs.items():
        lines.append(f'{{"index": {{"_index": "{index}", "_id": "{doc_id}"}}}}')
        lines.append(__import__("json").dumps(source))
    answer = engine.bulk("\n".join(lines) + "\n")
    assert answer["errors"] is False


def _read_all(
    api: SearchApi, index: str, size: int, query: dict[str, Any] | None = None, reader: type = PitReader
) -> list[list[dict[str, Any]]]:
    plan = ReadPlan(index, query or MATCH_ALL, "@timestamp", size, "1m")
    with reader(api, plan, RetryPolicy(0)) as pages:
        return [_typed(page) for page in pages.pages()]


def _typed(page: list[Any]) -> list[dict[str, Any]]:
    """A page as dicts, after checking the reader decoded it the fast way (raw `_source`)."""
    assert all(isinstance(hit, Hit) for hit in page)
    return [as_dict(hit) for hit in page]


def test_every_document_exactly_once_and_in_order(engine: EngineHttp, api: SearchApi, index_name: str) -> None:
    engine.create_index(index_name)
    events = [make_event(n, seed=7) for n in range(257)]
    engine.bulk(bulk_payload(index_name, events))
    engine.refresh(index_name)
    pages = _read_all(api, index_name, size=50)
    hits = [hit for page in pages for hit in page]
    assert [len(page) for page in pages] == [50, 50, 50, 50, 50, 7]
    assert sorted(hit["_id"] for hit in hits) == sorted(e["event"]["id"] for e in events)
    assert len({hit["_id"] for hit in hits}) == 257
    stamps = [hit["_source"]["@timestamp"] for hit in hits]
    assert stamps == sorted(stamps)
    assert all(isinstance(hit["sort"][0], int) for hit in hits), "dates come back as epoch millis"
    assert all("_seq_no" in hit and "_primary_term" in hit for hit in hits)


def test_many_documents_sharing_one_cursor_value_cross_page_boundaries(
    engine: EngineHttp, api: SearchApi, index_name: str
) -> None:
    engine.create_index(index_name)
    same = {f"same-{n:04d}": {"@timestamp": "2025-11-14T10:00:00.000Z", "n": n} for n in range(230)}
    before = {"before": {"@timestamp": "2025-11-14T09:59:59.999Z", "n": -1}}
    after = {"after": {"@timestamp": "2025-11-14T10:00:00.001Z", "n": 999}}
    _index_docs(engine, index_name, {**same, **before, **after})
    engine.refresh(index_name)
    pages = _read_all(api, index_name, size=100)
    ids = [hit["_id"] for page in pages for hit in page]
    assert len(ids) == 232 and len(set(ids)) == 232
    assert ids[0] == "before" and ids[-1] == "after"


def test_point_in_time_is_isolated_from_later_writes(engine: EngineHttp, api: SearchApi, index_name: str) -> None:
    engine.create_index(index_name)
    engine.bulk(bulk_payload(index_name, (make_event(n) for n in range(30))))
    engine.refresh(index_name)
    plan = ReadPlan(index_name, MATCH_ALL, "@timestamp", 10, "1m")
    with PitReader(api, plan, RetryPolicy(0)) as reader:
        pages = reader.pages()
        first = _typed(next(pages))
        engine.bulk(bulk_payload(index_name, (make_event(n) for n in range(30, 60))))
        engine.call("DELETE", f"/{index_name}/_doc/{first[0]['_id']}")
        engine.refresh(index_name)
        rest = [hit for page in pages for hit in page]
    assert len(first) + len(rest) == 30
    assert engine.count(index_name) == 59


def test_documents_are_not_searchable_until_refresh(engine: EngineHttp, api: SearchApi, index_name: str) -> None:
    engine.create_index(index_name)
    engine.bulk(bulk_payload(index_name, (make_event(n) for n in range(12))))
    assert engine.count(index_name) == 0
    assert _read_all(api, index_name, size=5) == []
    engine.refresh(index_name)
    assert engine.count(index_name) == 12
    assert sum(len(page) for page in _read_all(api, index_name, size=5)) == 12


@pytest.mark.parametrize(
    "bounds, expected",
    [
        ({"gte": "2025-11-14T10:00:01.000Z", "lte": "2025-11-14T10:00:03.000Z"}, ["t1", "t2", "t3"]),
        ({"gt": "2025-11-14T10:00:01.000Z", "lt": "2025-11-14T10:00:03.000Z"}, ["t2"]),
        ({"gte": "2025-11-14T17:00:02.000+07:00"}, ["t2", "t3", "t4"]),
        ({"lt": "2025-11-14T10:00:01.000Z"}, ["t0"]),
    ],
)
def test_range_bounds_inclusive_and_exclusive(
    engine: EngineHttp, api: SearchApi, index_name: str, bounds: dict[str, str], expected: list[str]
) -> None:
    engine.create_index(index_name)
    _index_docs(engine, index_name, {f"t{n}": {"@timestamp": f"2025-11-14T10:00:0{n}.000Z"} for n in range(5)})
    engine.refresh(index_name)
    pages = _read_all(api, index_name, size=10, query={"range": {"@timestamp": bounds}})
    assert [hit["_id"] for page in pages for hit in page] == expected


def test_documents_missing_the_cursor_field_sort_last(engine: EngineHttp, api: SearchApi, index_name: str) -> None:
    engine.create_index(index_name)
    docs = {f"d{n}": {"@timestamp": f"2025-11-14T10:00:0{n}.000Z"} for n in range(4)}
    docs.update({"no-ts-1": {"message": "no cursor"}, "no-ts-2": {"message": "no cursor either"}})
    _index_docs(engine, index_name, docs)
    engine.refresh(index_name)
    hits = [hit for page in _read_all(api, index_name, size=3) for hit in page]
    assert [hit["_id"] for hit in hits[:4]] == ["d0", "d1", "d2", "d3"]
    assert {hit["_id"] for hit in hits[4:]} == {"no-ts-1", "no-ts-2"}
    assert all(hit["sort"][0] == 9223372036854775807 for hit in hits[4:])


def test_mixed_time_zones_sort_by_instant(engine: EngineHttp, api: SearchApi, index_name: str) -> None:
    engine.create_index(index_name)
    _index_docs(
        engine,
        index_name,
        {
            "bangkok-11": {"@timestamp": "2025-01-01T11:00:00+07:00"},  # 04:00Z
            "utc-05": {"@timestamp": "2025-01-01T05:00:00Z"},
            "utc-03": {"@timestamp": "2025-01-01T03:00:00.000Z"},
        },
    )
    engine.refresh(index_name)
    hits = [hit for page in _read_all(api, index_name, size=10) for hit in page]
    assert [hit["_id"] for hit in hits] == ["utc-03", "bangkok-11", "utc-05"]
    assert hits[1]["sort"][0] == 1735704000000


def test_scroll_reads_every_document_once(engine: EngineHttp, api: SearchApi, index_name: str) -> None:
    engine.create_index(index_name)
    engine.bulk(bulk_payload(index_name, (make_event(n) for n in range(45))))
    engine.refresh(index_name)
    pages = _read_all(api, index_name, size=20, reader=ScrollReader)
    ids = [hit["_id"] for page in pages for hit in page]
    assert [len(page) for page in pages] == [20, 20, 5]
    assert len(set(ids)) == 45


def test_slices_of_one_point_in_time_partition_it(engine: EngineHttp, api: SearchApi, index_name: str) -> None:
    engine.create_index(index_name, shards=2)
    engine.bulk(bulk_payload(index_name, (make_event(n) for n in range(90))))
    engine.refresh(index_name)
    plan = ReadPlan(index_name, MATCH_ALL, "@timestamp", 7, "1m")
    pit_id = api.open_pit(index_name, "1m")
    try:
        slices = []
        for number in range(3):
            with PitReader(api, plan, RetryPolicy(0), pit_id=pit_id, slice_of=(number, 3)) as reader:
                slices.append([hit["_id"] for page in reader.pages() for hit in _typed(page)])
    finally:
        api.close_pit(pit_id)
    every = [doc_id for ids in slices for doc_id in ids]
    assert len(every) == len(set(every)) == 90
    assert all(ids for ids in slices)
    pit_id = api.open_pit(index_name, "1m")
    try:
        with pytest.raises(Exception, match=r"x_content_parse_exception .*\[slice\] failed to parse field \[max\]"):
            api.search({"size": 1, "slice": {"id": 0, "max": 1}, "pit": {"id": pit_id}})
    finally:
        api.close_pit(pit_id)


def test_ids_lookup_restricted_to_one_index(engine: EngineHttp, api: SearchApi, index_name: str) -> None:
    for suffix in ("a", "b"):
        engine.create_index(f"{index_name}-{suffix}")
        _index_docs(
            engine,
            f"{index_name}-{suffix}",
            {"same": {"@timestamp": "2025-11-14T10:00:00Z"}, f"only-{suffix}": {"@timestamp": "2025-11-14T10:00:00Z"}},
        )
        engine.refresh(f"{index_name}-{suffix}")
    query = {
        "bool": {
            "filter": [
                {"ids": {"values": ["same", "only-a", "only-b", "never"]}},
                {"term": {"_index": f"{index_name}-a"}},
            ]
        }
    }
    answer = api.search({"size": 10, "_source": False, "query": query}, index=f"{index_name}-*")
    assert sorted((hit["_index"], hit["_id"]) for hit in answer["hits"]["hits"]) == [
        (f"{index_name}-a", "only-a"),
        (f"{index_name}-a", "same"),
    ]
    assert api.resolve_indices(f"{index_name}-a,{index_name}-gone") == {f"{index_name}-a": True}


def test_index_expressions_resolve_to_concrete_indices(engine: EngineHttp, api: SearchApi, index_name: str) -> None:
    a, b, c = (f"{index_name}-{suffix}" for suffix in "abc")
    for name in (a, b, c):
        engine.create_index(name)
    engine.call(
        "POST",
        "/_aliases",
        {
            "actions": [
                {"add": {"index": b, "alias": f"{index_name}-al"}},
                {"add": {"index": c, "alias": f"{index_name}-al"}},
            ]
        },
    )
    assert api.resolve_indices(f"{index_name}-al") == {b: True, c: True}  # an alias alone: its members
    assert api.resolve_indices(f"{index_name}-*,-{c}") == {a: True, b: True}
    assert api.resolve_indices(f"{a},{index_name}-al,{index_name}-none") == {a: True, b: True, c: True}
    assert api.resolve_indices(f"{index_name}-nothing-*") == {}
