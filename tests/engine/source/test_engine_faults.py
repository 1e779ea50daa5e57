"""Engine faults injected by a proxy in front of the real engines, and a real point-in-time expiry.

The fault proxy (tests/infra/harness/faultproxy.py) sits in front of the real
OpenSearch node and of the protocol server alike. Each retry test ends with
the table equal to the engine by an oracle query made straight to the engine,
past the proxy, and with exact counts (a page written twice would show as
`unchanged`). The point-in-time test uses the node's own expiry: a keep-alive
of two seconds and a page that the proxy holds back for five.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from datetime import timedelta
from typing import Callable, Iterator

import pytest
import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.sample import BASE_TIME, bulk_payload, event_id, make_event
from tests.infra.harness.faultproxy import Fault, FaultProxy
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import engine_docs, index_docs, scalar, table_docs

EVENTS, BATCH = 120, 40  # three pages


@pytest.fixture
def proxy(engine: EngineHttp) -> Iterator[FaultProxy]:
    """A fault proxy in front of the engine under test."""
    running = FaultProxy(engine.url).start()
    yield running
    running.stop()


def _load(engine: EngineHttp, index: str) -> None:
    engine.create_index(index)
    engine.bulk(bulk_payload(index, (make_event(n) for n in range(EVENTS))))
    engine.refresh(index)


FAULTS = {
    "429 with the engine's body": Fault("status", status=429, path="_search", times=2),
    "502 from a gateway": Fault("status", status=502, path="_search"),
    "503 with the engine's body": Fault("status", status=503, path="_search", times=2),
    "504 from a gateway": Fault("status", status=504, path="_search"),
    "reset mid-response": Fault("reset", path="_search", times=2),
    "stall past the request timeout": Fault("stall", seconds=4, path="_search"),
    "only the 3rd search page fails": Fault("status", status=503, path="_search", nth=3, times=1),
    "point in time open refused once": Fault("status", status=503, path="_pit|/_search/point_in_time"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_faults_are_retried_and_nothing_is_lost_or_written_twice(
    name: str,
    engine: EngineHttp,
    proxy: FaultProxy,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    _load(engine, index_name)
    template = FAULTS[name]
    fault = proxy.add(
        Fault(template.kind, template.status, template.seconds, template.path, template.nth, template.times)
    )
    service = SyncService(
        make_settings(
            engine,
            index_name,
            RTARF_ES_URL=proxy.url,
            RTARF_SYNC_BATCH_SIZE=BATCH,
            RTARF_ES_REQUEST_TIMEOUT_SECONDS=1.5,
            RTARF_SYNC_MAX_RETRIES=4,
        )
    )
    result = service.run()
    service.close()
    assert fault.applied == fault.times, "the fault really happened"
    assert result.status == "success", result.error
    assert (result.inserted, result.updated, result.unchanged, result.pages) == (EVENTS, 0, 0, 3)
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)
    if name == "only the 3rd search page fails":
        searches = [seen.fault for seen in proxy.requests if seen.path.endswith("_search")]
        assert searches[:4] == [None, None, "status", None], "pages 1 and 2 were not asked again"


def test_retries_exhausted_on_the_real_node_fail_clearly_and_the_next_run_completes(
    opensearch: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    _load(opensearch, index_name)
    proxy = FaultProxy(opensearch.url).start()
    try:
        proxy.add(Fault("status", status=429, path="_search", nth=2, times=100))
        settings = make_settings(
            opensearch, index_name, RTARF_ES_URL=proxy.url, RTARF_SYNC_BATCH_SIZE=BATCH, RTARF_SYNC_MAX_RETRIES=2
        )
        failed = SyncService(settings).run()
        assert failed.status == "failed" and failed.pages == 1
        assert failed.error is not None and failed.error.startswith(
            "search page failed after 3 attempts: search: HTTP 429 rejected_execution_exception"
        )
        proxy.clear()
        done = SyncService(settings).run()
    finally:
        proxy.stop()
    assert (done.status, done.inserted, done.unchanged) == ("success", EVENTS - BATCH, BATCH)
    assert table_docs(db_engine, table_name) == engine_docs(opensearch, index_name)


def _expiring_after_page_one(proxy: FaultProxy) -> dict[str, object]:
    """Settings reading pages of BATCH through `proxy`, which holds the second page back past the keep-alive."""
    proxy.add(Fault("delay", seconds=5, path="_search", nth=2))  # the node drops the context meanwhile
    return {
        "RTARF_ES_URL": proxy.url,
        "RTARF_SYNC_BATCH_SIZE": BATCH,
        "RTARF_PIT_KEEP_ALIVE": "2s",
        "RTARF_ES_REQUEST_TIMEOUT_SECONDS": 30,
    }


def test_a_point_in_time_that_really_expires_is_reopened_and_nothing_is_lost(
    opensearch: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _load(opensearch, index_name)
    proxy = FaultProxy(opensearch.url).start()
    try:
        service = SyncService(make_settings(opensearch, index_name, **_expiring_after_page_one(proxy)))
        with caplog.at_level(logging.WARNING, logger="rtarf_sync.reader"):
            result = service.run()
        service.close()
    finally:
        proxy.stop()
    assert result.status == "success", result.error
    assert (result.inserted, result.updated, result.unchanged) == (EVENTS, 0, 0)
    assert len(result.warnings) == 1 and result.warnings[0].startswith(
        "the point in time expired after page 1 (search: HTTP 404 search_context_missing_exception"
    )
    assert "reopened it and resumed after sort values" in result.warnings[0]
    assert result.warnings[0] in caplog.text
    opened = [seen for seen in proxy.requests if seen.method == "POST" and seen.path.endswith("/point_in_time")]
    assert len(opened) == 2, "the point in time was opened again once"
    assert table_docs(db_engine, table_name) == engine_docs(opensearch, index_name)


def test_a_document_read_again_after_a_reopen_stays_one_row_in_a_fresh_partitioned_target(
    opensearch: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    """A fresh partitioned target skips the key lookup only while each document is read once."""
    _load(opensearch, index_name)
    moved = make_event(5)
    moved["@timestamp"] = engine_time(BASE_TIME + timedelta(days=2))  # read again after the reopen
    proxy = FaultProxy(opensearch.url).start()

    def move_while_page_two_waits() -> None:
        deadline = time.monotonic() + 60
        while sum(seen.path.endswith("_search") for seen in proxy.requests) < 2:
            assert time.monotonic() < deadline, "the second page was never asked for"
            time.sleep(0.05)
        index_docs(opensearch, index_name, {event_id(moved): moved})
        opensearch.refresh(index_name)

    try:
        settings = make_settings(opensearch, index_name, **_expiring_after_page_one(proxy))
        service = SyncService(dataclasses.replace(settings, partition="day"))
        mover = threading.Thread(target=move_while_page_two_waits)
        mover.start()
        result = service.run()
        mover.join()
        service.close()
    finally:
        proxy.stop()
    assert result.status == "success", result.error
    assert result.reopens == 1 and (result.inserted, result.updated) == (EVENTS, 1)
    assert scalar(db_engine, f'SELECT count(*) FROM "{table_name}"') == EVENTS
    stored = scalar(db_engine, f'SELECT event_timestamp FROM "{table_name}" WHERE es_id = :id', id=event_id(moved))
    assert stored == BASE_TIME + timedelta(days=2)
    assert table_docs(db_engine, table_name) == engine_docs(opensearch, index_name)
