"""What the status page says, decided in Python: units, the chart's geometry, panels and the headline.

Plus the read of PostgreSQL behind it (runs, dead letters, the latest verification)
against the real database, and the page and its JSON through the app.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from config import Settings
from rtarf_sync import create_app
from rtarf_sync.api.page import formats as fmt
from rtarf_sync.api.page.chart import RATE_HEIGHT, RATE_TOP, WIDTH, build_chart
from rtarf_sync.api.page.view import build_view, verification_panel, webhook_panel
from rtarf_sync.engine.views.overview import read_overview
from rtarf_sync.engine.target.tables import build_tables
from tests.infra.support import prepare_tables

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc)


def run(
    run_id: int, status: str = "success", processed: int = 100, seconds: float | None = 2.0, error: str | None = None
) -> dict[str, Any]:
    """A run object as the runs table gives it."""
    started = NOW - timedelta(minutes=60 - run_id)
    finished = None if seconds is None else started + timedelta(seconds=seconds)
    return {
        "run_id": run_id,
        "trigger": "scheduled",
        "mode": "incremental",
        "status": status,
        "started_at": started.isoformat(),
        "finished_at": finished and finished.isoformat(),
        "duration_seconds": seconds,
        "total_processed": processed,
        "inserted": processed,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
        "deleted": 0,
        "error": error,
    }


STATUS = {
    "state": "running",
    "is_running": True,
    "interval_seconds": 300,
    "current_run": None,
    "next_run_time": (NOW + timedelta(minutes=4)).isoformat(),
    "total_syncs": 3,
    "failed_syncs": 0,
    "success_rate": "100.0%",
    "last_result": None,
}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "0.4 s"),
        (45, "45 s"),
        (192, "3 min 12 s"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (356_400, "4 d 3 h"),
        (None, "unknown"),
    ],
)
def test_durations_read_in_the_two_largest_units(seconds: float | None, text: str) -> None:
    assert fmt.duration(seconds) == text


def test_times_are_utc_with_a_relative_hint() -> None:
    assert (
        fmt.clock_and_relative((NOW - timedelta(seconds=130)).isoformat(), NOW)
        == "2026-11-30 02:57:50 UTC (2 min 10 s ago)"
    )
    assert fmt.relative((NOW + timedelta(minutes=5)).isoformat(), NOW) == "in 5 min"
    assert fmt.clock(None) == "never"


def test_the_chart_has_one_mark_per_run_oldest_left_newest_at_the_right_edge() -> None:
    runs = [
        run(3, processed=400, seconds=2.0),
        run(2, "failed", processed=0, seconds=0.5, error="boom"),
        run(1, processed=100, seconds=1.0),
    ]
    chart = build_chart(runs)
    assert [mark["run_id"] for mark in chart["marks"]] == [1, 2, 3]
    assert [mark["failed"] for mark in chart["marks"]] == [False, True, False]
    newest = chart["marks"][-1]
    assert newest["x"] + newest["width"] < WIDTH and newest["x"] > WIDTH * 0.9
    assert newest["rate_height"] == RATE_HEIGHT  # 200 events/s is the top of the scale
    assert chart["marks"][0]["rate_height"] == RATE_HEIGHT / 2
    assert chart["marks"][0]["rate_y"] == RATE_TOP + RATE_HEIGHT / 2
    assert "error: boom" in chart["marks"][1]["title"]
    assert chart["summary"].startswith("3 runs, 1 failed; median")
    assert build_chart([])["summary"] == "No runs recorded yet." and build_chart([])["marks"] == []


def test_fifty_runs_fill_the_chart_and_older_ones_are_left_out() -> None:
    chart = build_chart([run(number) for number in range(60, 0, -1)])
    assert [mark["run_id"] for mark in chart["marks"]] == list(range(11, 61))
    assert chart["marks"][0]["x"] < 10


def test_verification_panel_lists_differing_buckets_or_says_in_step_or_not_available() -> None:
    check = {
        "checked_at": NOW.isoformat(),
        "from": (NOW - timedelta(days=7)).isoformat(),
        "to": NOW.isoformat(),
        "bucket": "1h",
        "in_step": False,
        "source_total": 10,
        "target_total": 8,
        "buckets_differing": 1,
        "differing": [{"from": "2026-11-29T10:00:00Z", "to": "2026-11-29T11:00:00Z", "source": 5, "target": 3}],
    }
    drift = verification_panel({"verification": check}, True, NOW)
    assert (drift["summary"], drift["level"]) == ("1 bucket differs", "warn")
    assert drift["rows"] == [["2026-11-29 10:00:00 UTC", "2026-11-29 11:00:00 UTC", "5", "3"]]
    in_step = verification_panel({"verification": {**check, "in_step": True}}, True, NOW)
    assert (in_step["summary"], in_step["level"]) == ("in step", "ok")
    assert verification_panel({"verification": None}, False, NOW)["summary"] == "not available"
    assert verification_panel({"verification": None}, True, NOW)["summary"] == "no verification recorded yet"


def test_webhook_panel_counts_deliveries_and_says_not_available_without_the_route() -> None:
    assert webhook_panel(None, NOW)["summary"] == "not available"
    answer = {
        "endpoints": [{"url": "https://hooks.example/in", "events": ["sync.failed"], "disabled": False}],
        "deliveries": [
            {"status": "delivered", "created_at": NOW.isoformat()},
            {"status": "abandoned", "created_at": NOW.isoformat(), "last_error": "HTTP 500"},
        ],
    }
    panel = webhook_panel(answer, NOW)
    assert (panel["summary"], panel["level"]) == ("latest 2: 1 abandoned, 1 delivered", "warn")


def test_the_headline_names_the_worst_problem_first() -> None:
    failed = build_view(
        STATUS,
        [],
        {
            "runs": [run(2, "failed", error="engine down"), run(1)],
            "dead_letters": {"unresolved": 3, "newest": []},
            "verification": None,
            "lag_seconds": 30,
            "cursor": NOW.isoformat(),
        },
        None,
        None,
        True,
        NOW,
    )
    assert failed["headline"]["level"] == "bad"
    assert failed["headline"]["text"] == (
        "Attention: the last run failed; no successful run within three intervals; dead letters: 3 unresolved"
    )  # run 1 ended 59 minutes ago
    assert "Error: engine down" in failed["cards"][1]["detail"]
    healthy = build_view(
        STATUS,
        [],
        {
            "runs": [run(59)],
            "dead_letters": {"unresolved": 0, "newest": []},
            "verification": None,
            "lag_seconds": 192,
            "cursor": NOW.isoformat(),
        },
        None,
        None,
        True,
        NOW,
    )
    assert healthy["headline"]["level"] == "ok"
    assert [card["value"] for card in healthy["cards"]] == ["running", "success", "3 min 12 s", "100.0%"]
    down = build_view(STATUS, [], None, "OperationalError: connection refused", None, True, NOW)
    assert down["headline"]["text"].startswith("Attention: PostgreSQL could not be read")


def test_the_overview_reads_runs_dead_letters_and_the_latest_verification(
    make_settings: Callable[..., Settings], db_engine: sa.Engine, table_name: str
) -> None:
    settings = make_settings(index="rtarf-events-x")
    prepare_tables(settings)
    tables = build_tables(table_name)
    with db_engine.begin() as connection:
        for number in range(3):
            connection.execute(
                sa.insert(tables.runs).values(
                    target_table=table_name,
                    source_index="rtarf-events-x",
                    trigger="scheduled",
                    owner="test",
                    status="success",
                    started_at=NOW - timedelta(minutes=number),
                    finished_at=NOW,
                    total_processed=9,
                )
            )
        for number in range(7):
            connection.execute(
                sa.insert(tables.dead_letters).values(
                    target_table=table_name,
                    es_index="rtarf-events-x",
                    es_id=f"doc-{number}",
                    es_seq_no=number,
                    es_primary_term=1,
                    reason=f"reason {number}",
                    raw_document="{}",
                    resolved_at=NOW if number == 0 else None,
                )
            )
        for checked, in_step in ((NOW - timedelta(hours=1), True), (NOW, False)):
            connection.execute(
                sa.insert(tables.verifications).values(
                    target_table=table_name,
                    source_index="rtarf-events-x",
                    checked_at=checked,
                    range_from=NOW,
                    range_to=NOW,
                    bucket="1h",
                    source_total=5,
                    target_total=4,
                    buckets_differing=int(not in_step),
                    in_step=in_step,
                    result={"differing": [{"from": "a", "to": "b", "source": 5, "target": 4}]},
                )
            )
        connection.execute(
            sa.insert(tables.cursor).values(
                target_table=table_name, source_index="rtarf-events-x", cursor_value=NOW - timedelta(seconds=90)
            )
        )
    overview = read_overview(db_engine, tables, "rtarf-events-x", now=NOW)
    assert [item["run_id"] for item in overview["runs"]] == sorted(
        (r["run_id"] for r in overview["runs"]), reverse=True
    )
    assert len(overview["runs"]) == 3 and overview["lag_seconds"] == 90
    assert overview["dead_letters"]["unresolved"] == 6
    assert [letter["es_id"] for letter in overview["dead_letters"]["newest"]] == [f"doc-{n}" for n in (6, 5, 4, 3, 2)]
    assert overview["verification"]["in_step"] is False
    assert overview["verification"]["differing"] == [{"from": "a", "to": "b", "source": 5, "target": 4}]

    client = create_app(settings).test_client()
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    body = page.get_data(as_text=True)
    assert "6 unresolved" in body and "1 bucket differs" in body and "doc-6" in body
    assert body.count('class="mark status-success"') == 3
    data = client.get("/scheduler/overview").get_json()
    assert data["dead_letters"]["unresolved"] == 6
    assert data["view"]["panels"]["jobs"]["summary"] == "2 jobs"  # sync, verify


def test_a_page_without_tables_yet_shows_no_runs_rather_than_an_error(
    make_settings: Callable[..., Settings], db_engine: sa.Engine, table_name: str
) -> None:
    overview = read_overview(db_engine, build_tables(f"{table_name}_none"), "rtarf-events-x", now=NOW)
    assert (overview["runs"], overview["lag_seconds"], overview["dead_letters"]["unresolved"]) == ([], None, 0)


def test_panels_read_the_real_routes_and_a_database_outage_is_a_headline() -> None:
    from tests.infra.support import offline_settings

    settings = offline_settings(
        RTARF_WEBHOOK_URLS="https://user:pw@hooks.example/in",
        RTARF_WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    client = create_app(settings).test_client()
    view = client.get("/scheduler/overview").get_json()["view"]
    # GET /scheduler/webhooks needs PostgreSQL, which is down here: the panel says so instead of guessing.
    assert view["panels"]["webhooks"]["summary"] == "unavailable"
    assert view["panels"]["webhooks"]["details"] == ["GET /scheduler/webhooks answered 503"]
    assert view["actions"]["verify"] is True
    assert view["headline"]["text"].startswith("Attention: PostgreSQL could not be read: OperationalError")
    body = client.get("/").get_data(as_text=True)
    assert "GET /scheduler/webhooks answered 503" in body and "pw@" not in body
