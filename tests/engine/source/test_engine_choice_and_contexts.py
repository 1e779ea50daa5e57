"""Engine choice, detection, the scroll fallback, and contexts closed on every path."""

from __future__ import annotations

from typing import Callable

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.source.clients import ElasticsearchApi, OpenSearchApi, build_api
from rtarf_sync.sample import bulk_payload, make_event
from rtarf_sync.engine.runs.sync import SyncService
from tests.infra.esserver import EsProtocolServer
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import engine_docs, table_docs


def _load(engine: EngineHttp, index: str, count: int) -> None:
    engine.create_index(index)
    engine.bulk(bulk_payload(index, (make_event(n) for n in range(count))))
    engine.refresh(index)


def _pit_ids(engine: EngineHttp) -> set[str]:
    """Points in time open on the OpenSearch node (other tests' may still be there)."""
    return {pit["pit_id"] for pit in engine.call("GET", "/_search/point_in_time/_all").get("pits", [])}


def _open_contexts(engine: EngineHttp, es_server: EsProtocolServer, since: int | set[str] = 0) -> int:
    """Points in time opened since a mark and never closed: a request number, or the PITs open then."""
    if engine.kind == "opensearch":
        assert isinstance(since, set)
        return len(_pit_ids(engine) - since)
    assert isinstance(since, int)
    log = es_server.request_log[since:]
    opened = sum(1 for m, p in log if m == "POST" and p.endswith("/_pit"))
    closed = sum(1 for m, p in log if m == "DELETE" and p == "/_pit")
    return opened - closed


def _scrolls_cleared(es_server: EsProtocolServer, since: int) -> int:
    return sum(1 for m, p in es_server.request_log[since:] if m == "DELETE" and p == "/_search/scroll")


def test_auto_detects_each_engine(engine: EngineHttp, index_name: str, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(engine, index_name, RTARF_SOURCE_ENGINE="auto")
    api = build_api(settings)
    expected = OpenSearchApi if engine.kind == "opensearch" else ElasticsearchApi
    assert isinstance(api, expected)
    api.close()


def test_scroll_mode_copies_everything_and_clears_its_scroll(
    engine: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    _load(engine, index_name, 230)
    mark = len(es_server.request_log)
    service = SyncService(make_settings(engine, index_name, RTARF_SYNC_READ_MODE="scroll", RTARF_SYNC_BATCH_SIZE=50))
    result = service.run()
    assert (result.status, result.read_mode, result.inserted, result.pages) == ("success", "scroll", 230, 5)
    service.close()
    if engine.kind == "opensearch":
        assert (
            engine.call("GET", "/_nodes/stats/indices/search")["nodes"].popitem()[1]["indices"]["search"][
                "scroll_current"
            ]
            == 0
        )
    else:
        assert _scrolls_cleared(es_server, mark) == 1
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)


def test_point_in_time_is_closed_after_success_and_failure(
    engine: EngineHttp, es_server: EsProtocolServer, index_name: str, make_settings: Callable[..., Settings]
) -> None:
    _load(engine, index_name, 60)
    mark: int | set[str] = _pit_ids(engine) if engine.kind == "opensearch" else len(es_server.request_log)
    ok = SyncService(make_settings(engine, index_name, RTARF_SYNC_BATCH_SIZE=25))
    assert ok.run().read_mode == "pit"
    ok.close()
    assert _open_contexts(engine, es_server, mark) == 0
    if engine.kind == "opensearch":
        # Sorting on a text field is refused by the engine, after the point in time is open.
        broken = SyncService(make_settings(engine, index_name, RTARF_CURSOR_FIELD="message"))
    else:
        es_server.faults.only_paths("_search")
        es_server.faults.fail_next(10, status=500)
        broken = SyncService(make_settings(engine, index_name, RTARF_SYNC_MAX_RETRIES=0))
    result = broken.run()
    broken.close()
    assert result.status == "failed", result
    assert _open_contexts(engine, es_server, mark) == 0


def test_refresh_makes_acknowledged_documents_searchable_on_both_engines(
    engine: EngineHttp, index_name: str, make_settings: Callable[..., Settings]
) -> None:
    engine.create_index(index_name)  # no automatic refresh
    engine.bulk(bulk_payload(index_name, (make_event(n) for n in range(3))))
    api = build_api(make_settings(engine, "rtarf-events-*"))
    try:

        def searchable() -> int:
            return len(api.search({"query": {"match_all": {}}, "size": 10}, index=index_name)["hits"]["hits"])

        assert searchable() == 0
        api.refresh("rtarf-events-*,rtarf-no-such-index")  # what a triggered run asks; a missing name is fine
        assert searchable() == 3
    finally:
        api.close()
