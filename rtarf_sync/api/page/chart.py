"""Geometry of the status page's run chart: one mark per run, events per second above, duration below.

The server computes every coordinate once; the template draws them as inline
SVG and the page's script redraws the same numbers on refresh, so the two can
never disagree about scale.
"""

from __future__ import annotations

from statistics import median
from typing import Any

from rtarf_sync.api.page import formats as fmt

WIDTH, HEIGHT = 600, 230
LEFT, RIGHT = 4, 4
RATE_TOP, RATE_HEIGHT = 22, 100
DURATION_TOP, DURATION_HEIGHT = 150, 60
SLOTS = 50
GAP = 2


def events_per_second(run: dict[str, Any]) -> float:
    """Events processed per second of the run, 0 when it has no duration yet."""
    seconds = run.get("duration_seconds") or 0
    return run.get("total_processed", 0) / seconds if seconds > 0 else 0.0


def _title(run: dict[str, Any], per_second: float) -> str:
    seconds = run.get("duration_seconds")
    took = fmt.duration(seconds) if seconds is not None else "still running"
    text = (
        f"run #{run['run_id']} {run['status']} ({run['trigger']}, {run.get('mode', 'incremental')}), "
        f"started {fmt.clock(run['started_at'])}: {fmt.count(run['total_processed'])} events in {took}, "
        f"{fmt.rate(per_second)} events/s"
    )
    return text + (f"; error: {run['error']}" if run.get("error") else "")


def _mark(run: dict[str, Any], slot: int, top_rate: float, top_seconds: float) -> dict[str, Any]:
    per_second = events_per_second(run)
    seconds = run.get("duration_seconds") or 0.0
    step = (WIDTH - LEFT - RIGHT) / SLOTS
    rate_height = round(RATE_HEIGHT * per_second / top_rate, 2) if top_rate else 0.0
    duration_height = round(DURATION_HEIGHT * seconds / top_seconds, 2) if top_seconds else 0.0
    return {
        "run_id": run["run_id"],
        "status": run["status"],
        "title": _title(run, per_second),
        "x": round(LEFT + slot * step + GAP / 2, 2),
        "width": round(step - GAP, 2),
        "rate_y": round(RATE_TOP + RATE_HEIGHT - max(rate_height, 1.0), 2),
        "rate_height": max(rate_height, 1.0),
        "duration_y": round(DURATION_TOP + DURATION_HEIGHT - max(duration_height, 1.0), 2),
        "duration_height": max(duration_height, 1.0),
        "failed": run["status"] == "failed",
    }


def build_chart(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The chart of `runs` (newest first, at most 50): marks oldest to newest, newest at the right edge."""
    ordered = list(reversed(runs[:SLOTS]))
    rates = [events_per_second(run) for run in ordered]
    durations = [run.get("duration_seconds") or 0.0 for run in ordered]
    top_rate, top_seconds = max(rates, default=0.0), max(durations, default=0.0)
    first_slot = SLOTS - len(ordered)
    marks = [_mark(run, first_slot + index, top_rate, top_seconds) for index, run in enumerate(ordered)]
    failed = sum(1 for run in ordered if run["status"] == "failed")
    finished = [
        (rate, seconds)
        for rate, seconds, run in zip(rates, durations, ordered, strict=True)
        if run.get("duration_seconds") is not None
    ]
    if ordered:
        typical_rate = median(rate for rate, _ in finished) if finished else 0.0
        typical_seconds = median(seconds for _, seconds in finished) if finished else 0.0
        summary = (
            f"{fmt.plural(len(ordered), 'run')}, {failed} failed; median {fmt.rate(typical_rate)} "
            f"events/s and {fmt.duration(typical_seconds)} per run"
        )
    else:
        summary = "No runs recorded yet."
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "rate_top": RATE_TOP,
        "rate_height": RATE_HEIGHT,
        "duration_top": DURATION_TOP,
        "duration_height": DURATION_HEIGHT,
        "marks": marks,
        "summary": summary,
        "rate_max": f"{fmt.rate(top_rate)} events/s",
        "duration_max": fmt.duration(top_seconds) if ordered else "",
        "first": fmt.clock(ordered[0]["started_at"]) if ordered else "",
        "last": fmt.clock(ordered[-1]["started_at"]) if ordered else "",
    }
