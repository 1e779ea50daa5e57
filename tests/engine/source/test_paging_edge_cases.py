"""Paths no test reached before: scroll fallback, timed-out answers, a stuck cursor, several
engine URLs, the point-in-time keep-alive setting, and bad start-up settings.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from config import ConfigError, Settings, load_settings
from rtarf_sync.engine.source.clients import Json
from rtarf_sync.engine.errors import SourceError
from rtarf_sync.engine.source.reader import PitReader, ReadPlan
from rtarf_sync.engine.retry import RetryPolicy
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.sample import bulk_payload, make_event
from tests.infra.esserver import EsProtocolServer
from tests.infra.harness.http import EngineHttp
from tests.infra.harness.process import free_port
from tests.infra.oracle import engine_docs, scalar, table_docs
from tests.infra.support import target_locked, wait_for

ROOT = Path(__file__).resolve().parents[3]


def _load(engine: EngineHttp, index: str, count: int) -> None:
    engine.create_index(index)
    engine.bulk(bulk_payload(index, (make_event(n) for n in range(count))))
    engine.refresh(index)


def test_auto_mode_falls_back_to_scroll_on_an_engine_without_point_in_time(
    elasticsearch: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _load(elasticsearch, index_name, 75)
    es_server.faults.only_paths("/_pit")
    es_server.faults.fail_next(1, status=405)  # what an engine without the endpoint answers
    service = SyncService(
        make_settings(elasticsearch, index_name, RTARF_SYNC_READ_MODE="auto", RTARF_SYNC_BATCH_SIZE=20)
    )
    with caplog.at_level(logging.WARNING, logger="rtarf_sync.sync"):
        result = service.run()
    service.close()
    assert (result.status, result.read_mode, result.inserted, result.pages) == ("success", "scroll", 75, 4)
    assert "the engine has no point in time; reading with scroll" in caplog.text
    assert table_docs(db_engine, table_name) == engine_docs(elasticsearch, index_name)
    assert ("DELETE", "/_search/scroll") in es_server.request_log


def test_timed_out_answers_are_retried_not_taken_as_complete(
    elasticsearch: EngineHttp,
    es_server: EsProtocolServer,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    _load(elasticsearch, index_name, 90)
    es_server.faults.timed_out_next(2)
    result = SyncService(make_settings(elasticsearch, index_name, RTARF_SYNC_BATCH_SIZE=40)).run()
    assert (result.status, result.inserted, result.unchanged, result.pages) == ("success", 90, 0, 3)
    assert table_docs(db_engine, table_name) == engine_docs(elasticsearch, index_name)
    es_server.faults.timed_out_next(100)
    failed = SyncService(make_settings(elasticsearch, index_name, RTARF_SYNC_MAX_RETRIES=1)).run()
    assert failed.status == "failed"
    assert failed.error == "search page failed after 2 attempts: search page: the search timed out"


class StuckEngine:
    """An engine edge whose second page repeats the first page's sort values (a paging bug)."""

    kind = "elasticsearch"

    def __init__(self) -> None:
        self.searches = 0

    def info(self) -> Json:
        return {"version": {"number": "8.15.0"}}

    def open_pit(self, index: str, keep_alive: str) -> str:
        return "pit-1"

    def close_pit(self, pit_id: str) -> None:
        pass

    def search(self, body: Json, index: str | None = None, scroll: str | None = None) -> Json:
        self.searches += 1
        hit = {
            "_index": "rtarf-events-stuck",
            "_id": "one",
            "_seq_no": 1,
            "_primary_term": 1,
            "_source": {"@timestamp": "2025-11-14T10:00:00Z"},
            "sort": [1763114400000, 7],
        }
        return {"pit_id": "pit-1", "timed_out": False, "_shards": {"total": 1, "failed": 0}, "hits": {"hits": [hit]}}

    search_hits = search  # answered as dicts: the careful path

    def close(self) -> None:
        pass


def test_a_paging_cursor_that_does_not_advance_fails_clearly() -> None:
    plan = ReadPlan("rtarf-events-stuck", {"match_all": {}}, "@timestamp", 1, "1m")
    api = StuckEngine()
    with PitReader(api, plan, RetryPolicy(0)) as reader:  # type: ignore[arg-type]  # a stand-in for a SearchApi
        pages = reader.pages()
        assert len(next(pages)) == 1
        with pytest.raises(SourceError) as caught:
            next(pages)  # the repeated page is refused, not handed on
    assert str(caught.value) == "paging cursor did not advance past [1763114400000, 7]"
    assert api.searches == 2


def test_a_run_over_a_stuck_cursor_fails_with_that_message_and_keeps_its_first_page(
    make_settings: Callable[..., Settings], table_name: str, db_engine: sa.Engine
) -> None:
    settings = make_settings(RTARF_ES_INDEX="rtarf-events-stuck")
    service = SyncService(settings, api=StuckEngine())  # type: ignore[arg-type]  # a stand-in for a SearchApi
    result = service.run()
    assert (result.status, result.pages, result.inserted) == ("failed", 1, 1)
    assert result.error == "paging cursor did not advance past [1763114400000, 7]"
    assert scalar(db_engine, f'SELECT count(*) FROM "{table_name}"') == 1


def test_several_engine_urls_with_the_first_one_down(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    _load(engine, index_name, 50)
    urls = f"http://127.0.0.1:{free_port()},{engine.url}"
    result = SyncService(make_settings(engine, index_name, RTARF_ES_URL=urls)).run()
    assert (result.status, result.inserted) == ("success", 50), result.error
    assert table_docs(db_engine, table_name) == engine_docs(engine, index_name)


def _pits(opensearch: EngineHttp) -> dict[str, Any]:
    return {pit["pit_id"]: pit for pit in opensearch.call("GET", "/_search/point_in_time/_all").get("pits", [])}


def test_the_point_in_time_keep_alive_setting_reaches_the_engine(
    opensearch: EngineHttp,
    index_name: str,
    table_name: str,
    make_settings: Callable[..., Settings],
    db_engine: sa.Engine,
) -> None:
    # Twelve pages: while page 1 waits to be written, the reader holds pages 2-3 in its read-ahead
    # queue and page 4 in hand, so it cannot reach the end and close the point in time meanwhile.
    # (With three pages it read them all and closed it within milliseconds, and the test saw it
    # only when one of its polls happened to land in that window.)
    _load(opensearch, index_name, 60)
    settings = make_settings(opensearch, index_name, RTARF_PIT_KEEP_ALIVE="37s", RTARF_SYNC_BATCH_SIZE=5)
    before = set(_pits(opensearch))
    service = SyncService(settings)
    service.ensure_tables()  # so that the only thing the run waits for below is writing page 1
    outcome: dict[str, Any] = {}
    with target_locked(db_engine, table_name):  # the run reads ahead, then waits to write page 1
        worker = threading.Thread(target=lambda: outcome.update(result=service.run()))
        worker.start()

        def opened() -> list[str]:
            # Only a new one with this keep-alive: other tests' points in time (or one still being
            # created, which shows the node's creation keep-alive) may be listed meanwhile.
            return [
                pit_id
                for pit_id, pit in _pits(opensearch).items()
                if pit_id not in before and pit["keep_alive"] == 37_000
            ]

        (pit_id,) = wait_for(opened, timeout=30, what="the run's point in time with a 37 s keep-alive")
        assert worker.is_alive(), "the run still waits to write page 1"
    worker.join(60)
    service.close()
    assert outcome["result"].status == "success" and outcome["result"].inserted == 60
    assert pit_id not in _pits(opensearch), "the run released its point in time"


BAD_START = [
    ({"RTARF_ES_URL": "localhost:9200"}, "RTARF_ES_URL"),
    ({"RTARF_ES_URL": "ftp://engine:9200"}, "RTARF_ES_URL"),
    ({"RTARF_ES_INDEX": "events with space"}, "RTARF_ES_INDEX"),
    ({"RTARF_ES_INDEX": "a,,b"}, "RTARF_ES_INDEX"),
    ({"RTARF_ES_USERNAME": "elastic"}, "RTARF_ES_PASSWORD"),
    ({"RTARF_LEASE_TTL_SECONDS": "4"}, "RTARF_LEASE_TTL_SECONDS"),
    ({"RTARF_LEASE_TTL_SECONDS": "61"}, "RTARF_LEASE_TTL_SECONDS"),
]


@pytest.mark.parametrize(("environ", "name"), BAD_START)
def test_bad_start_up_settings_name_the_variable(environ: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    assert name in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("environ", "name"), [BAD_START[0], BAD_START[2], BAD_START[4], BAD_START[5]])
def test_bad_start_up_settings_stop_the_command_line(environ: dict[str, str], name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rtarf_sync", "sync"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **environ},
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], done.stderr
