"""The sync-now body and the CLI's run flags: a bad one answers 400 naming the field, and nothing runs."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from flask import Flask

from rtarf_sync import create_app
from rtarf_sync.cli.main import build_parser, run_arguments
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.service.scheduler import RtarfEventScheduler
from tests.infra.support import offline_settings


@pytest.fixture
def app() -> Iterator[Flask]:
    """The real app and service over ports where nothing listens: a run that started would fail."""
    settings = offline_settings()
    app = create_app(settings, scheduler=RtarfEventScheduler(settings=settings))
    yield app
    scheduler_of(app).shutdown(timeout=5)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "sometimes"}, "mode"),
        ({"mode": "range", "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"mode": "range", "from": "yesterday", "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"mode": "range", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00"}, "to"),
        ({"mode": "range", "from": "2026-01-01T00:00:00Z"}, "to"),
        ({"mode": "full", "from": "2026-01-01T00:00:00Z"}, "from"),
        ({"mode": "full", "force": "yes"}, "force"),
        ({"mode": "full", "slices": 4}, "slices"),
        (["full"], "body"),
    ],
)
def test_a_bad_body_answers_400_naming_the_field_and_runs_nothing(app: Flask, body: Any, field: str) -> None:
    answer = app.test_client().post("/scheduler/sync-now", json=body)
    assert answer.status_code == 400
    assert answer.get_json()["field"] == field and field in answer.get_json()["message"]
    assert scheduler_of(app).get_status()["total_syncs"] == 0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ("incremental", None, False)),
        (["--full", "--force"], ("full", None, True)),
        (
            ["--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z"],
            ("range", "2026-01-01T00:00:00+00:00", False),
        ),
    ],
)
def test_cli_sync_flags_choose_the_run(argv: list[str], expected: tuple[Any, ...]) -> None:
    run = run_arguments(build_parser().parse_args(["sync", *argv]))
    start = run["start"].isoformat() if run["start"] else None  # type: ignore[attr-defined]  # a datetime here
    assert (run["mode"], start, run["force"]) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["--from", "2026-01-01T00:00:00Z"],
        ["--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"],
    ],
)
def test_cli_sync_refuses_half_a_range(argv: list[str]) -> None:
    with pytest.raises(ValueError, match="--from"):
        run_arguments(build_parser().parse_args(["sync", *argv]))
