"""What the status page shows, as display strings: the headline, four cards, the chart and the panels.

Built from plain data (scheduler status, jobs, the PostgreSQL overview, the
webhook route's answer) so the template and the page's script only place
text; neither formats nor decides anything. A missing part (no database, a
route this version lacks) becomes a panel that says so, never an error page.
Every string here is data: the template escapes it and the script assigns it
with textContent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from rtarf_sync.api.page import formats as fmt
from rtarf_sync.api.page.chart import build_chart

NOT_AVAILABLE = "not available"
OK, WARN, BAD, NONE = "ok", "warn", "bad", "none"
COUNTS = ("total_processed", "inserted", "updated", "unchanged", "failed", "deleted")


def _panel(
    title: str,
    summary: str,
    level: str = NONE,
    *,
    available: bool = True,
    details: list[str] | None = None,
    columns: list[str] | None = None,
    rows: list[list[str]] | None = None,
) -> dict[str, Any]:
    return {
        "title": title,
        "available": available,
        "level": level,
        "summary": summary,
        "details": details or [],
        "columns": columns or [],
        "rows": rows or [],
    }


def last_finished_run(overview: dict[str, Any] | None, status: dict[str, Any]) -> dict[str, Any] | None:
    """The newest run that ended, from PostgreSQL (it survives restarts), else this process's last result."""
    for run in (overview or {}).get("runs", []):
        if run["status"] != "running":
            return cast("dict[str, Any]", run)
    return status.get("last_result")


def _state_card(status: dict[str, Any], now: datetime) -> dict[str, Any]:
    state = status.get("state") or ("running" if status.get("is_running") else "stopped")
    current = status.get("current_run")
    if current:
        since = fmt.clock_and_relative(current["started_at"], now)
        detail = f"a {current['trigger']} sync is in progress since {since}"
    elif state == "running":
        detail = f"next run {fmt.clock_and_relative(status.get('next_run_time'), now)}"
    else:
        detail = "no run is scheduled; sync now still works"
    every = fmt.duration(status.get("interval_seconds"))
    return {
        "key": "state",
        "label": "State",
        "value": state,
        "level": OK if state == "running" else WARN,
        "detail": f"{detail} · every {every}",
    }


def _last_run_card(run: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    if run is None:
        return {
            "key": "last_run",
            "label": "Last run",
            "value": "none yet",
            "level": NONE,
            "detail": "no run has finished",
        }
    counts = (
        f"{fmt.count(run.get('total_processed'))} processed, {fmt.count(run.get('inserted'))} inserted, "
        f"{fmt.count(run.get('updated'))} updated, {fmt.count(run.get('unchanged'))} unchanged, "
        f"{fmt.count(run.get('failed'))} set aside, {fmt.count(run.get('deleted'))} deleted"
    )
    took = fmt.duration(run.get("duration_seconds"))
    detail = (
        f"run #{run.get('run_id')} ({run.get('trigger')}, {run.get('mode', 'incremental')}) finished "
        f"{fmt.clock_and_relative(run.get('finished_at'), now)} in {took}: {counts}"
    )
    if run.get("error"):
        detail += f". Error: {run['error']}"
    level = {"success": OK, "partial": WARN, "failed": BAD}.get(run["status"], NONE)
    return {"key": "last_run", "label": "Last run", "value": run["status"], "level": level, "detail": detail}


def _lag_card(overview: dict[str, Any] | None) -> dict[str, Any]:
    if overview is None:
        return {
            "key": "lag",
            "label": "Lag",
            "value": "unknown",
            "level": NONE,
            "detail": "PostgreSQL could not be read",
        }
    lag = overview.get("lag_seconds")
    if lag is None:
        return {
            "key": "lag",
            "label": "Lag",
            "value": "no cursor yet",
            "level": NONE,
            "detail": "the next run reads the whole history",
        }
    value = fmt.duration(lag) if lag >= 0 else f"cursor {fmt.duration(-lag)} ahead"
    return {
        "key": "lag",
        "label": "Lag",
        "value": value,
        "level": NONE,
        "detail": f"now minus the cursor {fmt.clock(overview.get('cursor'))} (the newest event time copied)",
    }


def _rate_card(status: dict[str, Any], overview: dict[str, Any] | None) -> dict[str, Any]:
    runs = [run for run in (overview or {}).get("runs", []) if run["status"] != "running"]
    good = sum(1 for run in runs if run["status"] != "failed")
    recent = f"; {good} of the last {fmt.plural(len(runs), 'recorded run')} did not fail" if runs else ""
    detail = (
        f"since this process started: {fmt.plural(status.get('total_syncs', 0), 'run')}, "
        f"{status.get('failed_syncs', 0)} failed{recent}"
    )
    failed = status.get("failed_syncs", 0) or len(runs) - good
    return {
        "key": "success_rate",
        "label": "Success rate",
        "value": status.get("success_rate", "0.0%"),
        "level": WARN if failed else (OK if status.get("total_syncs") else NONE),
        "detail": detail,
    }


def verification_panel(overview: dict[str, Any] | None, verify_route: bool, now: datetime) -> dict[str, Any]:
    """The latest verification: in step, or the buckets that differ."""
    title = "Latest verification"
    check = (overview or {}).get("verification")
    if check is None:
        if not verify_route:
            return _panel(title, NOT_AVAILABLE, available=False, details=["this version has no POST /scheduler/verify"])
        return _panel(title, "no verification recorded yet" if overview else "PostgreSQL could not be read")
    window = (
        f"{fmt.clock(check['from'])} to {fmt.clock(check['to'])} by {check['bucket']}; "
        f"checked {fmt.clock_and_relative(check['checked_at'], now)}"
    )
    totals = f"engine {fmt.count(check['source_total'])} documents, PostgreSQL {fmt.count(check['target_total'])} rows"
    if check["in_step"]:
        return _panel(title, "in step", OK, details=[totals, window])
    rows = [
        [
            fmt.clock(bucket.get("from")),
            fmt.clock(bucket.get("to")),
            fmt.count(bucket.get("source")),
            fmt.count(bucket.get("target")),
        ]
        for bucket in check["differing"]
    ]
    summary = fmt.plural(check["buckets_differing"], "bucket differs", "buckets differ")
    return _panel(
        title, summary, WARN, details=[totals, window], columns=["from", "to", "engine", "PostgreSQL"], rows=rows
    )


def dead_letter_panel(overview: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The unresolved dead letters and the five newest reasons."""
    title = "Dead letters"
    if overview is None:
        return _panel(title, "PostgreSQL could not be read")
    dead = overview["dead_letters"]
    if not dead["unresolved"]:
        return _panel(title, "none set aside", OK)
    rows = [
        [fmt.clock_and_relative(letter["created_at"], now), letter["es_index"], letter["es_id"], letter["reason"]]
        for letter in dead["newest"]
    ]
    return _panel(
        title,
        f"{fmt.count(dead['unresolved'])} unresolved",
        WARN,
        details=["the newest five, newest first"],
        columns=["set aside", "index", "_id", "reason"],
        rows=rows,
    )


def webhook_panel(webhooks: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    """Webhook endpoints and how the latest deliveries went; "not available" when the route is missing."""
    title = "Webhook deliveries"
    if webhooks is None:
        return _panel(title, NOT_AVAILABLE, available=False, details=["this version has no GET /scheduler/webhooks"])
    if "unavailable" in webhooks:
        return _panel(title, "unavailable", available=False, details=[webhooks["unavailable"]])
    endpoints, deliveries = webhooks.get("endpoints", []), webhooks.get("deliveries", [])
    if not endpoints and not deliveries:
        return _panel(title, "no webhook endpoints configured")
    by_status: dict[str, int] = {}
    for delivery in deliveries:
        by_status[delivery.get("status", "?")] = by_status.get(delivery.get("status", "?"), 0) + 1
    disabled = sum(1 for endpoint in endpoints if endpoint.get("disabled"))
    counts = ", ".join(f"{number} {name}" for name, number in sorted(by_status.items())) or "no deliveries yet"
    bad = by_status.get("failed", 0) + by_status.get("abandoned", 0) + disabled
    rows = [
        [
            fmt.clock_and_relative(item.get("created_at"), now),
            str(item.get("event_type", "")),
            str(item.get("url", "")),
            str(item.get("status", "")),
            fmt.count(item.get("attempts")),
            str(item.get("last_error") or ""),
        ]
        for item in deliveries[:5]
    ]
    return _panel(
        title,
        f"latest {len(deliveries)}: {counts}",
        WARN if bad else OK,
        details=[f"{fmt.plural(len(endpoints), 'endpoint')}, {disabled} disabled"],
        columns=["created", "event", "url", "status", "attempts", "last error"],
        rows=rows,
    )


def jobs_panel(jobs: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The APScheduler jobs with their next run times."""
    rows = [
        [
            str(job["id"]),
            str(job.get("name", "")),
            str(job.get("trigger", "")),
            "paused" if job.get("next_run_time") is None else fmt.clock_and_relative(job["next_run_time"], now),
        ]
        for job in jobs
    ]
    return _panel(
        "Scheduled jobs", fmt.plural(len(jobs), "job"), columns=["id", "name", "trigger", "next run"], rows=rows
    )


def pipelines_panel(pipelines: dict[str, dict[str, Any]], now: datetime) -> dict[str, Any]:
    """One row per pipeline: its table, schedule state, last run, lag and dead letters."""
    rows = [
        [
            name,
            f"{item.get('source_index')} → {item.get('table')}",
            "syncing" if item.get("sync_in_progress") else str(item.get("state")),
            f"{item.get('last_sync_status') or 'none yet'} {fmt.relative(item.get('last_sync_time'), now)}".strip(),
            "unknown" if item.get("lag_seconds") is None else fmt.duration(item["lag_seconds"]),
            fmt.count(item.get("dead_letters_unresolved")),
        ]
        for name, item in pipelines.items()
    ]
    failing = [name for name, item in pipelines.items() if item.get("last_sync_status") == "failed"]
    summary = fmt.plural(len(rows), "pipeline") + (f", failing: {', '.join(failing)}" if failing else "")
    return _panel(
        "Pipelines",
        summary,
        WARN if failing else NONE,
        columns=["pipeline", "index → table", "state", "last run", "lag", "dead letters"],
        rows=rows,
    )


def _stale_success(overview: dict[str, Any] | None, status: dict[str, Any], now: datetime) -> str | None:
    runs = (overview or {}).get("runs", [])
    if status.get("state") != "running" or not runs:
        return None
    finished = [fmt.parse_time(run["finished_at"]) for run in runs if run["status"] in ("success", "partial")]
    newest = max((moment for moment in finished if moment), default=None)
    allowed = timedelta(seconds=3 * int(status.get("interval_seconds") or 0) + 60)
    if newest is None or now - newest > allowed:
        return "no successful run within three intervals"
    return None


def headline(
    cards: list[dict[str, Any]], panels: dict[str, dict[str, Any]], database_error: str | None, stale: str | None
) -> dict[str, Any]:
    """The one line an operator reads first: the worst problem, or that all is well."""
    by_key = {card["key"]: card for card in cards}
    bad, warn = [], []
    if database_error:
        bad.append(f"PostgreSQL could not be read: {database_error}")
    if by_key["last_run"]["level"] == BAD:
        bad.append("the last run failed")
    if by_key["state"]["value"] != "running":
        warn.append(f"the scheduler is {by_key['state']['value']}")
    if by_key["last_run"]["level"] == WARN:
        warn.append("the last run set events aside")
    if stale:
        warn.append(stale)
    warn += [f"{panel['title'].lower()}: {panel['summary']}" for panel in panels.values() if panel["level"] == WARN]
    if bad:
        return {"level": BAD, "text": "Attention: " + "; ".join(bad + warn)}
    if warn:
        return {"level": WARN, "text": "Check: " + "; ".join(warn)}
    return {"level": OK, "text": "All well: running, the last run succeeded, nothing set aside"}


def build_view(
    status: dict[str, Any],
    jobs: list[dict[str, Any]],
    overview: dict[str, Any] | None,
    database_error: str | None,
    webhooks: dict[str, Any] | None,
    verify_route: bool,
    now: datetime,
) -> dict[str, Any]:
    """Everything the page shows, as strings and chart coordinates."""
    cards = [
        _state_card(status, now),
        _last_run_card(last_finished_run(overview, status), now),
        _lag_card(overview),
        _rate_card(status, overview),
    ]
    panels = {
        "verification": verification_panel(overview, verify_route, now),
        "dead_letters": dead_letter_panel(overview, now),
        "webhooks": webhook_panel(webhooks, now),
        "jobs": jobs_panel(jobs, now),
    }
    if status.get("pipelines"):
        panels = {"pipelines": pipelines_panel(status["pipelines"], now), **panels}
    return {
        "headline": headline(cards, panels, database_error, _stale_success(overview, status, now)),
        "cards": cards,
        "chart": build_chart((overview or {}).get("runs", [])),
        "panels": panels,
        "actions": {"verify": verify_route},
        "updated": fmt.clock(now.isoformat()),
    }
