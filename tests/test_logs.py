"""Log lines in the original format: `2025-11-14 10:25:00 | rtarf_sync.scheduler | INFO | message`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rtarf_sync.logs import configure_logging
from rtarf_sync.engine.runs.result import SyncResult
from rtarf_sync.service.scheduler import RtarfEventScheduler
from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.support import GatedJob, offline_settings, wait_for

LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} "
    r"\| (?P<logger>[\w.]+) \| (?P<level>[A-Z]+) \| (?P<message>.*)$"
)


def _lines(text: str) -> list[dict[str, str]]:
    return [match.groupdict() for match in map(LINE.match, text.splitlines()) if match]


def test_scheduler_lines_use_the_original_format(capsys: pytest.CaptureFixture[str]) -> None:
    settings = offline_settings(RTARF_SYNC_INTERVAL_SECONDS=300)
    configure_logging(settings)
    result = SyncResult(total_processed=150, inserted=10, updated=140)
    scheduler = RtarfEventScheduler(settings=settings, job=GatedJob(result, gated=False))
    try:
        scheduler.start()
        wait_for(lambda: scheduler.get_status()["total_syncs"] == 1, what="the first run")
    finally:
        scheduler.shutdown(timeout=5)
    lines = _lines(capsys.readouterr().err)
    assert {
        "logger": "rtarf_sync.scheduler",
        "level": "INFO",
        "message": "RTARF Event Scheduler started (interval: 300s)",
    } in lines
    assert {
        "logger": "rtarf_sync.scheduler",
        "level": "INFO",
        "message": "Sync completed successfully: 150 events processed, 10 inserted, 140 updated",
    } in lines


def test_configuring_twice_installs_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(offline_settings())
    configure_logging(offline_settings())
    import logging

    logging.getLogger("rtarf_sync.test").info("once")
    assert capsys.readouterr().err.count("| rtarf_sync.test | INFO | once") == 1


def test_the_level_comes_from_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    configure_logging(offline_settings(RTARF_LOG_LEVEL="warning"))
    try:
        logging.getLogger("rtarf_sync.test").info("hidden")
        logging.getLogger("rtarf_sync.test").warning("shown")
        err = capsys.readouterr().err
        assert "hidden" not in err
        assert "| WARNING | shown" in err
    finally:
        configure_logging(offline_settings())


def test_a_failed_scheduled_run_logs_one_line_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    settings = offline_settings(RTARF_SYNC_INTERVAL_SECONDS=3600)
    configure_logging(settings)
    failing = SyncResult(status="failed", error="PostgreSQL: connection refused")
    scheduler = RtarfEventScheduler(settings=settings, job=GatedJob(failing, gated=False))
    try:
        scheduler.start()
        wait_for(lambda: scheduler.get_status()["failed_syncs"] == 1, what="the failed run")
    finally:
        scheduler.shutdown(timeout=5)
    err = capsys.readouterr().err
    assert "| rtarf_sync.scheduler | ERROR | Sync failed: PostgreSQL: connection refused" in err
    assert "| apscheduler.executors.default | ERROR | Job " in err
    assert "Traceback" not in err


@pytest.mark.e2e
def test_gunicorn_text_access_lines_mask_a_token_sent_in_a_query_string(tmp_path: Path, database_url: str) -> None:
    token = "planted-Text-token-4Rz8k1Qp"
    env = {"RTARF_DATABASE_URL": database_url, "RTARF_SYNC_ENABLED": "false", "RTARF_API_TOKEN": token}
    server = GunicornProcess(tmp_path, env)
    try:
        server.start()
        assert server.get(f"/healthz?token={token}").status_code == 200
        wait_for(lambda: "/healthz?token=" in server.log(), what="the access line")
    finally:
        server.close()
    access = [line for line in _lines(server.log()) if line["logger"] == "gunicorn.access"]
    assert any("/healthz?token=***" in line["message"] for line in access), server.log()
    assert token not in server.log()
