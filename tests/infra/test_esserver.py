"""The Elasticsearch protocol server, driven by the real `elasticsearch` 8 client."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import elastic_transport
import pytest
import requests
from elasticsearch import ApiError, BadRequestError, ConflictError, Elasticsearch, NotFoundError

from tests.infra.support import wait_for
from tests.infra.esserver import EsProtocolServer

LONG_MAX = 9223372036854775807
LONG_MIN = -9223372036854775808
COMPAT_JSON = "application/vnd.elasticsearch+json;compatible-with=8"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[EsProtocolServer]:
    srv = EsProtocolServer(host="127.0.0.1", port=0).start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def clean(server: EsProtocolServer) -> None:
    server.reset()


@pytest.fixture()
def es(server: EsProtocolServer) -> Iterator[Elasticsearch]:
    client = Elasticsearch(server.url, max_retries=0, retry_on_status=(), request_timeout=10)
    yield client
    client.close()


def millis(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 instant, computed independently of the server."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def load(es: Elasticsearch, index: str, docs: dict[str, dict[str, Any]], refresh: bool = True) -> dict[str, Any]:
    operations: list[dict[str, Any]] = []
    for doc_id, source in docs.items():
        operations += [{"index": {"_index": index, "_id": doc_id}}, source]
    result = es.bulk(operations=operations, refresh=refresh)
    assert result["errors"] is False
    return dict(result)


def ids_of(response: Any) -> list[str]:
    return [hit["_id"] for hit in response["hits"]["hits"]]


def pit_pages(es: Elasticsearch, index: str, sort: list[Any], size: int) -> list[dict[str, Any]]:
    """Read a whole index through a PIT with search_after; return every hit."""
    pit_id = es.open_point_in_time(index=index, keep_alive="1m")["id"]
    hits: list[dict[str, Any]] = []
    after = None
    while True:
        page = es.search(pit={"id": pit_id, "keep_alive": "1m"}, sort=sort, size=size, search_after=after)
        pit_id = page["pit_id"]
        if not page["hits"]["hits"]:
            break
        hits += page["hits"]["hits"]
        assert page["hits"]["hits"][-1]["sort"] != after, "search_after did not move the cursor"
        after = page["hits"]["hits"][-1]["sort"]
    assert es.close_point_in_time(id=pit_id)["succeeded"] is True
    return hits


# Product check and protocol


def test_client_accepts_server_as_elasticsearch_without_warnings(es: Elasticsearch) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = es.info()
    assert info["version"]["number"] == "8.15.0"
    assert info["version"]["build_flavor"] == "default"
    assert info["tagline"] == "You Know, for Search"
    assert info.meta.headers["x-elastic-product"] == "Elasticsearch"
    assert info.meta.headers["content-type"] == COMPAT_JSON
    assert es.ping() is True


def test_plain_json_clients_get_plain_json_and_product_header(server: EsProtocolServer) -> None:
    response = requests.get(server.url + "/", timeout=5)
    assert response.headers["X-Elastic-Product"] == "Elasticsearch"
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["version"]["number"] == "8.15.0"


def test_unknown_route_wrong_method_and_bad_json_answer_like_es(server: EsProtocolServer) -> None:
    unknown = requests.get(server.url + "/_nothing_here", timeout=5)
    assert unknown.status_code == 400
    assert unknown.json()["error"].startswith("no handler found for uri [/_nothing_here]")
    wrong = requests.get(server.url + "/events/_doc", timeout=5)
    assert wrong.status_code == 405
    assert "Incorrect HTTP method for uri [/events/_doc] and method [GET], allowed: [POST]" in wrong.json()["error"]
    bad = requests.post(
        server.url + "/events/_search", data="{not json", timeout=5, headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "x_content_parse_exception"
    assert bad.headers["X-Elastic-Product"] == "Elasticsearch"


def test_standalone_module_prints_url_and_serves() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "tests.infra.esserver", "--port", "0"], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            assert requests.get(url, timeout=5).json()["tagline"] == "You Know, for Search"
        finally:
            process.terminate()


# Indices, documents, refresh


def test_index_lifecycle_and_mapping(es: Elasticsearch) -> None:
    es.indices.create(index="events", mappings={"properties": {"event.ingested": {"type": "date"}}})
    assert es.indices.exists(index="events")
    assert not es.indices.exists(index="other")
    with pytest.raises(BadRequestError) as exists:
        es.indices.create(index="events")
    assert exists.value.error == "resource_already_exists_exception"
    es.index(index="events", id="1", document={"host": {"name": "a"}, "count": 3, "@timestamp": "2025-01-01"})
    properties = es.indices.get_mapping(index="events")["events"]["mappings"]["properties"]
    assert properties["event"]["properties"]["ingested"]["type"] == "date"
    assert properties["@timestamp"]["type"] == "date"
    assert properties["count"]["type"] == "long"
    assert properties["host"]["properties"]["name"]["fields"]["keyword"]["type"] == "keyword"
    es.indices.delete(index="events")
    assert not es.indices.exists(index="events")


def test_resolve_index_lists_indices_and_aliases_like_elasticsearch_8(es: Elasticsearch) -> None:
    for name in ("logs-a", "logs-b", "other"):
        es.indices.create(index=name)
    es.indices.put_alias(index="logs-b,other", name="current")
    answer = es.indices.resolve_index(name="logs-*,current")
    assert answer["indices"] == [
        {"name": "logs-a", "attributes": ["open"]},
        {"name": "logs-b", "aliases": ["current"], "attributes": ["open"]},
    ]
    assert answer["aliases"] == [{"name": "current", "indices": ["logs-b", "other"]}]
    assert answer["data_streams"] == []
    assert es.indices.resolve_index(name="logs-*,-logs-a")["indices"] == [
        {"name": "logs-b", "aliases": ["current"], "attributes": ["open"]}
    ]
    with pytest.raises(NotFoundError) as missing:
        es.indices.resolve_index(name="logs-a,nothing")
    assert missing.value.error == "index_not_found_exception"
    assert [i["name"] for i in es.indices.resolve_index(name="logs-a,nothing", ignore_unavailable=True)["indices"]] == [
        "logs-a"
    ]


def test_writes_are_searchable_only_after_refresh_but_get_is_realtime(es: Elasticsearch) -> None:
    for n in range(5):
        es.index(index="events", id=str(n), document={"n": n})
    assert es.count(index="events")["count"] == 0
    assert es.search(index="events")["hits"]["total"]["value"] == 0
    assert es.get(index="events", id="3")["_source"] == {"n": 3}
    es.indices.refresh(index="events")
    assert es.count(index="events")["count"] == 5
    es.delete(index="events", id="0")
    assert es.count(index="events")["count"] == 5
    es.indices.refresh()
    assert es.count(index="events")["count"] == 4


def test_refresh_parameter_makes_one_write_visible(es: Elasticsearch) -> None:
    created = es.index(index="events", id="a", document={"n": 1}, refresh=True)
    assert created["result"] == "created"
    assert es.count(index="events")["count"] == 1
    es.index(index="events", id="b", document={"n": 2}, refresh="wait_for")
    assert es.count(index="events")["count"] == 2


def test_refresh_interval_refreshes_without_being_asked() -> None:
    with EsProtocolServer(refresh_interval=0.5) as srv, Elasticsearch(srv.url, max_retries=0) as client:
        client.indices.create(index="events")
        client.indices.create(index="manual", settings={"refresh_interval": "-1"})
        for index in ("events", "manual"):
            client.index(index=index, id="1", document={"n": 1})
        assert client.count(index="events")["count"] == 0
        wait_for(lambda: client.count(index="events")["count"] == 1, timeout=10, what="the automatic refresh")
        assert client.count(index="manual")["count"] == 0


def test_index_refresh_interval_setting_is_honoured(es: Elasticsearch) -> None:
    es.indices.create(index="events", settings={"index": {"refresh_interval": "500ms"}})
    es.index(index="events", id="1", document={"n": 1})
    assert es.count(index="events")["count"] == 0
    wait_for(lambda: es.count(index="events")["count"] == 1, timeout=10, what="the index's own refresh")
    settings = es.indices.get(index="events")["events"]["settings"]["index"]
    assert settings["refresh_interval"] == "500ms"


def test_document_versions_seq_no_and_conflicts(es: Elasticsearch) -> None:
    first = es.index(index="events", id="x", document={"n": 1})
    second = es.index(index="events", id="x", document={"n": 2})
    assert (first["_version"], first["_seq_no"], first["result"]) == (1, 0, "created")
    assert (second["_version"], second["_seq_no"], second["result"]) == (2, 1, "updated")
    assert second["_primary_term"] == 1
    auto = es.index(index="events", document={"n": 3})
    assert auto["result"] == "created" and len(auto["_id"]) >= 16
    with pytest.raises(ConflictError) as conflict:
        es.create(index="events", id="x", document={"n": 9})
    assert conflict.value.error == "version_conflict_engine_exception"
    gone = es.delete(index="events", id="x")
    assert (gone["result"], gone["_version"], gone["_seq_no"]) == ("deleted", 3, 3)
    with pytest.raises(NotFoundError):
        es.get(index="events", id="x")


def test_bulk_reports_seq_no_primary_term_and_item_errors(es: Elasticsearch) -> None:
    result = es.bulk(
        operations=[
            {"index": {"_index": "events", "_id": "1"}},
            {"n": 1},
            {"create": {"_index": "events", "_id": "2"}},
            {"n": 2},
            {"update": {"_index": "events", "_id": "1"}},
            {"doc": {"extra": True}},
            {"create": {"_index": "events", "_id": "2"}},
            {"n": 22},
            {"delete": {"_index": "events", "_id": "2"}},
        ],
        refresh=True,
    )
    items = [next(iter(item.values())) for item in result["items"]]
    assert result["errors"] is True
    assert [i["status"] for i in items] == [201, 201, 200, 409, 200]
    assert [i.get("_seq_no") for i in items] == [0, 1, 2, None, 3]
    assert [i.get("_primary_term") for i in items] == [1, 1, 1, None, 1]
    assert [i.get("_version") for i in items] == [1, 1, 2, None, 2]
    assert items[3]["error"]["type"] == "version_conflict_engine_exception"
    hits = es.search(index="events", seq_no_primary_term=True, version=True)["hits"]["hits"]
    assert [(h["_id"], h["_seq_no"], h["_primary_term"], h["_version"]) for h in hits] == [("1", 2, 1, 2)]
    assert hits[0]["_source"] == {"n": 1, "extra": True}


# Sorting and paging


def test_dates_sort_by_instant_and_come_back_as_epoch_millis(es: Elasticsearch) -> None:
    stamps = {
        "bangkok": "2025-01-01T10:00:00+07:00",  # 03:00Z: first, though its text sorts last
        "utc": "2025-01-01T04:00:00Z",
        "millis": "2025-01-01T03:30:00.250Z",
        "offset": "2025-01-01T00:45:00-03:00",  # 03:45Z
    }
    load(es, "events", {name: {"@timestamp": stamp} for name, stamp in stamps.items()})
    ascending = es.search(index="events", sort=[{"@timestamp": {"order": "asc"}}])["hits"]["hits"]
    assert [h["_id"] for h in ascending] == ["bangkok", "millis", "offset", "utc"]
    assert [h["sort"] for h in ascending] == [[millis(stamps[h["_id"]])] for h in ascending]
    assert all(h["_score"] is None for h in ascending)
    descending = es.search(index="events", sort=[{"@timestamp": "desc"}])
    assert ids_of(descending) == ["utc", "offset", "millis", "bangkok"]
    formatted = es.search(
        index="events", sort=[{"@timestamp": {"order": "asc", "format": "strict_date_optional_time_nanos"}}]
    )
    assert [h["sort"][0] for h in formatted["hits"]["hits"]] == [
        "2025-01-01T03:00:00.000Z",
        "2025-01-01T03:30:00.250Z",
        "2025-01-01T03:45:00.000Z",
        "2025-01-01T04:00:00.000Z",
    ]


def test_explicit_date_mapping_on_nested_field_sorts_epoch_numbers_too(es: Elasticsearch) -> None:
    es.indices.create(
        index="events", mappings={"properties": {"event": {"properties": {"ingested": {"type": "date"}}}}}
    )
    load(
        es,
        "events",
        {
            "iso": {"event": {"ingested": "2025-03-01T00:00:01Z"}},
            "epoch": {"event": {"ingested": millis("2025-03-01T00:00:00Z")}},
        },
    )
    hits = es.search(index="events", sort=[{"event.ingested": "asc"}])["hits"]["hits"]
    assert [(h["_id"], h["sort"]) for h in hits] == [
        ("epoch", [millis("2025-03-01T00:00:00Z")]),
        ("iso", [millis("2025-03-01T00:00:01Z")]),
    ]


def test_missing_cursor_field_sorts_last_with_long_sentinels(es: Elasticsearch) -> None:
    load(
        es,
        "events",
        {
            "late": {"@timestamp": "2025-01-02T00:00:00Z"},
            "none": {"other": 1},
            "early": {"@timestamp": "2025-01-01T00:00:00Z"},
        },
    )
    asc = es.search(index="events", sort=[{"@timestamp": "asc"}])["hits"]["hits"]
    assert [(h["_id"], h["sort"][0]) for h in asc][1:] == [("late", millis("2025-01-02T00:00:00Z")), ("none", LONG_MAX)]
    desc = es.search(index="events", sort=[{"@timestamp": "desc"}])["hits"]["hits"]
    assert [(h["_id"], h["sort"][0]) for h in desc][2:] == [("none", LONG_MIN)]
    first = es.search(index="events", sort=[{"@timestamp": {"order": "asc", "missing": "_first"}}])
    assert ids_of(first) == ["none", "early", "late"]
    page = es.search(index="events", sort=[{"@timestamp": "asc"}], search_after=[LONG_MAX - 1])
    assert ids_of(page) == ["none"]


def test_pit_search_after_returns_every_document_once_across_ties(es: Elasticsearch) -> None:
    tie = "2025-06-01T12:00:00Z"
    docs = {f"tie-{n}": {"@timestamp": tie, "n": n} for n in range(2500)}
    docs |= {f"before-{n}": {"@timestamp": f"2025-05-{n % 28 + 1:02d}T00:00:00Z"} for n in range(300)}
    docs |= {f"after-{n}": {"@timestamp": f"2025-07-{n % 28 + 1:02d}T00:00:00+07:00"} for n in range(300)}
    load(es, "events", docs)
    hits = pit_pages(es, "events", [{"@timestamp": {"order": "asc"}}, {"_shard_doc": "asc"}], 1000)
    seen = [h["_id"] for h in hits]
    assert len(seen) == len(set(seen)) == len(docs)
    instants = [h["sort"][0] for h in hits]
    assert instants == sorted(instants)
    assert next(h["sort"][0] for h in hits if h["_id"].startswith("tie-")) == millis(tie)
    tiebreakers = [h["sort"][1] for h in hits]
    assert all(isinstance(t, int) for t in tiebreakers)


def test_pit_adds_implicit_shard_doc_tiebreaker(es: Elasticsearch) -> None:
    load(es, "events", {str(n): {"@timestamp": "2025-01-01T00:00:00Z"} for n in range(30)})
    hits = pit_pages(es, "events", [{"@timestamp": "asc"}], 7)
    assert sorted(h["_id"] for h in hits) == sorted(str(n) for n in range(30))
    assert all(len(h["sort"]) == 2 for h in hits)


def test_pit_is_isolated_from_later_writes_refreshes_and_deletes(es: Elasticsearch) -> None:
    load(es, "events", {"a": {"v": 1}, "b": {"v": 1}, "c": {"v": 1}})
    pit_id = es.open_point_in_time(index="events", keep_alive="1m")["id"]
    load(es, "events", {"a": {"v": 2}, "d": {"v": 2}})
    es.delete(index="events", id="b", refresh=True)
    in_pit = es.search(pit={"id": pit_id, "keep_alive": "1m"}, size=100, sort=["_shard_doc"])
    assert in_pit["pit_id"] == pit_id
    assert sorted((h["_id"], h["_source"]["v"]) for h in in_pit["hits"]["hits"]) == [("a", 1), ("b", 1), ("c", 1)]
    assert sorted(ids_of(es.search(index="events"))) == ["a", "c", "d"]
    closed = es.close_point_in_time(id=pit_id)
    assert (closed["succeeded"], closed["num_freed"]) == (True, 1)
    with pytest.raises(NotFoundError) as again:
        es.close_point_in_time(id=pit_id)
    assert again.value.body == {"succeeded": False, "num_freed": 0}


def test_unknown_pit_is_404_search_context_missing(es: Elasticsearch) -> None:
    with pytest.raises(NotFoundError) as missing:
        es.search(pit={"id": "bm90LWEtcGl0", "keep_alive": "1m"})
    assert missing.value.error == "search_phase_execution_exception"
    assert missing.value.body["error"]["root_cause"][0]["type"] == "search_context_missing_exception"
    assert "No search context found for id" in missing.value.body["error"]["root_cause"][0]["reason"]


def test_pit_keep_alive_expires_and_searching_extends_it(es: Elasticsearch) -> None:
    load(es, "events", {"a": {"v": 1}})
    short = es.open_point_in_time(index="events", keep_alive="300ms")["id"]
    kept = es.open_point_in_time(index="events", keep_alive="300ms")["id"]
    es.search(pit={"id": kept, "keep_alive": "5s"})
    # A lower bound, not a race: the short context is gone after 300 ms however slow the machine,
    # and the kept one lives 5 s after its last use, which is far past this.
    time.sleep(0.5)
    with pytest.raises(NotFoundError):
        es.search(pit={"id": short, "keep_alive": "1m"})
    assert es.search(pit={"id": kept, "keep_alive": "5s"})["hits"]["total"]["value"] == 1


def test_scroll_pages_a_snapshot_then_clears(es: Elasticsearch) -> None:
    load(es, "events", {f"{n:02d}": {"n": n} for n in range(25)})
    first = es.search(index="events", scroll="1m", size=10, sort=[{"n": "asc"}])
    load(es, "events", {"late": {"n": 99}})
    pages = [ids_of(first)]
    scroll_id = first["_scroll_id"]
    for _ in range(3):
        page = es.scroll(scroll_id=scroll_id, scroll="1m")
        scroll_id = page["_scroll_id"]
        pages.append(ids_of(page))
    assert [len(p) for p in pages] == [10, 10, 5, 0]
    assert [doc_id for page in pages for doc_id in page] == [f"{n:02d}" for n in range(25)]
    assert es.clear_scroll(scroll_id=scroll_id)["num_freed"] == 1
    with pytest.raises(NotFoundError) as expired:
        es.scroll(scroll_id=scroll_id, scroll="1m")
    assert expired.value.body["error"]["root_cause"][0]["type"] == "search_context_missing_exception"
    with pytest.raises(NotFoundError) as cleared:
        es.clear_scroll(scroll_id=scroll_id)
    assert cleared.value.body["num_freed"] == 0


# Queries


def test_range_bounds_are_inclusive_or_exclusive_on_dates_and_numbers(es: Elasticsearch) -> None:
    load(es, "events", {f"t{n}": {"@timestamp": f"2025-01-01T00:0{n}:00Z", "n": n} for n in range(5)})

    def between(**bounds: Any) -> list[str]:
        return sorted(ids_of(es.search(index="events", query={"range": {"@timestamp": bounds}})))

    assert between(gte="2025-01-01T00:01:00Z", lt="2025-01-01T00:03:00Z") == ["t1", "t2"]
    assert between(gt="2025-01-01T00:01:00Z", lte="2025-01-01T00:03:00Z") == ["t2", "t3"]
    assert between(gt="2025-01-01T07:01:00+07:00") == ["t2", "t3", "t4"]
    assert between(lte=millis("2025-01-01T00:00:00Z")) == ["t0"]
    assert between(gte="2025-01-01T00:02:00.001Z") == ["t3", "t4"]
    numbers = es.search(index="events", query={"range": {"n": {"gt": 1, "lte": 3}}})
    assert sorted(ids_of(numbers)) == ["t2", "t3"]


def test_range_with_date_math_relative_to_now(es: Elasticsearch) -> None:
    now = time.time()

    def stamp(seconds_ago: float) -> str:
        return datetime.fromtimestamp(now - seconds_ago, UTC).isoformat()

    load(
        es,
        "events",
        {
            "old": {"@timestamp": stamp(7200)},
            "recent": {"@timestamp": stamp(600)},
            "future": {"@timestamp": stamp(-3600)},
        },
    )
    recent = es.search(index="events", query={"range": {"@timestamp": {"gte": "now-1h", "lte": "now"}}})
    assert ids_of(recent) == ["recent"]
    today = es.count(index="events", query={"range": {"@timestamp": {"gte": "now-3h/h"}}})
    assert today["count"] == 3


def test_term_terms_bool_exists_ids_and_dotted_paths(es: Elasticsearch) -> None:
    load(
        es,
        "events",
        {
            "1": {"source": {"ip": "10.0.0.1"}, "event": {"action": "login"}, "severity": 3},
            "2": {"source.ip": "10.0.0.2", "event": {"action": "logout"}, "severity": 5},
            "3": {"event": {"action": "login"}, "severity": 7, "tags": ["a", "b"]},
        },
    )

    def found(query: dict[str, Any]) -> list[str]:
        return sorted(ids_of(es.search(index="events", query=query)))

    assert found({"term": {"source.ip": "10.0.0.2"}}) == ["2"]
    assert found({"term": {"event.action.keyword": {"value": "login"}}}) == ["1", "3"]
    assert found({"terms": {"severity": [3, 7]}}) == ["1", "3"]
    assert found({"term": {"tags": "b"}}) == ["3"]
    assert found({"exists": {"field": "source.ip"}}) == ["1", "2"]
    assert found({"ids": {"values": ["2", "3", "404"]}}) == ["2", "3"]
    assert found(
        {"bool": {"filter": [{"term": {"event.action": "login"}}], "must_not": [{"exists": {"field": "source"}}]}}
    ) == ["3"]
    assert found({"bool": {"should": [{"term": {"severity": 3}}, {"term": {"severity": 5}}]}}) == ["1", "2"]
    assert found({"bool": {"must": [{"match_all": {}}], "should": [{"term": {"severity": 99}}]}}) == ["1", "2", "3"]
    assert found(
        {
            "bool": {
                "should": [{"term": {"severity": 3}}, {"range": {"severity": {"gte": 3}}}],
                "minimum_should_match": 2,
            }
        }
    ) == ["1"]


def test_unknown_query_and_unmapped_sort_are_400(es: Elasticsearch) -> None:
    load(es, "events", {"1": {"n": 1}})
    with pytest.raises(BadRequestError) as unknown:
        es.search(index="events", query={"fuzzy_magic": {"n": 1}})
    assert unknown.value.error == "parsing_exception"
    assert unknown.value.body["error"]["reason"] == "unknown query [fuzzy_magic]"
    with pytest.raises(BadRequestError) as unmapped:
        es.search(index="events", sort=[{"@timestamp": "asc"}])
    assert "No mapping found for [@timestamp]" in unmapped.value.body["error"]["root_cause"][0]["reason"]
    lenient = es.search(index="events", sort=[{"@timestamp": {"order": "asc", "unmapped_type": "date"}}])
    assert lenient["hits"]["hits"][0]["sort"] == [LONG_MAX]


def test_total_hits_tracking_and_source_filtering(es: Elasticsearch) -> None:
    load(es, "events", {str(n): {"keep": n, "drop": "x", "nested": {"a": 1, "b": 2}} for n in range(12)})
    assert "total" not in es.search(index="events", track_total_hits=False)["hits"]
    capped = es.search(index="events", track_total_hits=5)["hits"]["total"]
    assert capped == {"value": 5, "relation": "gte"}
    filtered = es.search(index="events", source={"includes": ["keep", "nested.a"]}, size=1)
    source = filtered["hits"]["hits"][0]["_source"]
    assert set(source) == {"keep", "nested"} and source["nested"] == {"a": 1}
    excluded = es.search(index="events", source_excludes=["drop", "nested.*"], size=1)
    assert excluded["hits"]["hits"][0]["_source"] == {"keep": 0, "nested": {}}
    assert "_source" not in es.search(index="events", source=False, size=1)["hits"]["hits"][0]


def test_index_patterns_and_missing_index_errors(es: Elasticsearch) -> None:
    load(es, "events-2025.01", {"a": {"n": 1}})
    load(es, "events-2025.02", {"b": {"n": 2}})
    load(es, "other", {"c": {"n": 3}})
    assert sorted(ids_of(es.search(index="events-*"))) == ["a", "b"]
    assert es.count(index="events-2025.01,other")["count"] == 2
    assert es.search(index="nothing-*")["hits"]["total"]["value"] == 0
    with pytest.raises(NotFoundError) as missing:
        es.search(index="missing")
    error = missing.value.body["error"]
    assert missing.value.error == "index_not_found_exception"
    assert (error["reason"], error["index"]) == ("no such index [missing]", "missing")
    assert missing.value.body["status"] == 404
    assert error["root_cause"][0]["type"] == "index_not_found_exception"
    assert es.count(index="missing,other", ignore_unavailable=True)["count"] == 1
    with pytest.raises(NotFoundError):
        es.search(index="nothing-*", allow_no_indices=False)


# Faults


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(429, "es_rejected_execution_exception"), (500, "exception"), (503, "unavailable_shards_exception")],
)
def test_fail_next_answers_status_with_es_error_body(
    server: EsProtocolServer, es: Elasticsearch, status: int, error_type: str
) -> None:
    server.faults.fail_next(1, status=status)
    with pytest.raises(ApiError) as failed:
        es.info()
    assert failed.value.meta.status == status
    assert failed.value.error == error_type
    assert failed.value.meta.headers["x-elastic-product"] == "Elasticsearch"
    assert es.info()["tagline"] == "You Know, for Search"


def test_delay_beyond_client_timeout_is_connection_timeout(server: EsProtocolServer) -> None:
    with Elasticsearch(server.url, max_retries=0, retry_on_status=(), request_timeout=0.3) as client:
        server.faults.delay_next(1, 1.0)
        with pytest.raises(elastic_transport.ConnectionTimeout):
            client.info()
        server.faults.delay_next(1, 0.1)
        assert client.info()["version"]["number"] == "8.15.0"


def test_drop_closes_connection_without_answer(server: EsProtocolServer, es: Elasticsearch) -> None:
    server.faults.drop_next(1)
    with pytest.raises(elastic_transport.ConnectionError):
        es.info()
    assert es.info()["tagline"] == "You Know, for Search"


def test_shard_failure_answers_200_with_failed_shard_and_no_hits(server: EsProtocolServer, es: Elasticsearch) -> None:
    load(es, "events", {"a": {"n": 1}})
    server.faults.shard_failure_next(1)
    assert es.count(index="events")["count"] == 1  # not a search: the fault waits
    failed = es.search(index="events")
    assert failed.meta.status == 200
    assert failed["_shards"]["failed"] == 1 and failed["_shards"]["successful"] == 0
    assert failed["_shards"]["failures"][0]["reason"]["type"]
    assert failed["hits"]["hits"] == []
    assert ids_of(es.search(index="events")) == ["a"]


def test_expire_pits_makes_next_pit_search_404(server: EsProtocolServer, es: Elasticsearch) -> None:
    load(es, "events", {"a": {"n": 1}})
    pit_id = es.open_point_in_time(index="events", keep_alive="1m")["id"]
    assert es.search(pit={"id": pit_id})["hits"]["total"]["value"] == 1
    server.faults.expire_pits()
    with pytest.raises(NotFoundError) as expired:
        es.search(pit={"id": pit_id, "keep_alive": "1m"})
    assert expired.value.body["error"]["root_cause"][0]["type"] == "search_context_missing_exception"


def test_only_paths_limits_faults_and_request_log_records(server: EsProtocolServer, es: Elasticsearch) -> None:
    load(es, "events", {"a": {"n": 1}})
    server.faults.only_paths("_search")
    server.faults.fail_next(1, status=500)
    assert es.count(index="events")["count"] == 1
    with pytest.raises(ApiError) as failed:
        es.search(index="events")
    assert failed.value.meta.status == 500
    server.faults.only_paths(None)
    assert ("POST", "/events/_count") in server.request_log
    assert server.request_log[-1] == ("POST", "/events/_search")
    server.faults.fail_next(3, status=429)
    server.faults.reset()
    assert es.search(index="events")["hits"]["total"]["value"] == 1


def test_reset_forgets_indices_and_pits(server: EsProtocolServer, es: Elasticsearch) -> None:
    load(es, "events", {"a": {"n": 1}})
    pit_id = es.open_point_in_time(index="events", keep_alive="1m")["id"]
    server.reset()
    assert not es.indices.exists(index="events")
    with pytest.raises(NotFoundError):
        es.search(pit={"id": pit_id})


def test_ignore_malformed_keeps_the_document_but_not_the_value(es: Elasticsearch) -> None:
    es.indices.create(
        index="lenient", mappings={"properties": {"@timestamp": {"type": "date", "ignore_malformed": True}}}
    )
    es.index(index="lenient", id="bad", document={"@timestamp": "yesterday"}, refresh=True)
    es.index(index="lenient", id="good", document={"@timestamp": "2025-01-01T00:00:00Z"}, refresh=True)
    assert es.get(index="lenient", id="bad")["_source"] == {"@timestamp": "yesterday"}
    exists = es.search(index="lenient", query={"exists": {"field": "@timestamp"}})
    assert [hit["_id"] for hit in exists["hits"]["hits"]] == ["good"]
    strict = "strict-dates"
    es.indices.create(index=strict, mappings={"properties": {"@timestamp": {"type": "date"}}})
    with pytest.raises(BadRequestError):
        es.index(index=strict, id="bad", document={"@timestamp": "yesterday"})
