"""How the status page writes times, durations and numbers: UTC, human units, thousands separators."""

from __future__ import annotations

from datetime import datetime, timezone


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 time as the API writes it, or None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def duration(seconds: float | None) -> str:
    """Seconds in the two largest human units: "45 s", "3 min 12 s", "2 h 5 min", "4 d 3 h"."""
    if seconds is None:
        return "unknown"
    whole = int(round(abs(seconds)))
    if abs(seconds) < 10 and whole < 10:
        return f"{abs(seconds):.1f} s"
    units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
    for index, (name, size) in enumerate(units[:-1]):
        if whole >= size:
            next_name, next_size = units[index + 1]
            rest = (whole % size) // next_size
            return f"{whole // size} {name}" + (f" {rest} {next_name}" if rest else "")
    return f"{whole} s"


def clock(value: str | None) -> str:
    """A time as "2026-11-30 03:12:05 UTC"; "never" for None."""
    moment = parse_time(value)
    if moment is None:
        return "never"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(value: str | None, now: datetime) -> str:
    """A time relative to now: "in 4 min 10 s", "2 min ago", "now"."""
    moment = parse_time(value)
    if moment is None:
        return ""
    seconds = (moment - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    return f"in {duration(seconds)}" if seconds > 0 else f"{duration(-seconds)} ago"


def clock_and_relative(value: str | None, now: datetime) -> str:
    """ "2026-11-30 03:12:05 UTC (2 min ago)", or "never"."""
    if parse_time(value) is None:
        return "never"
    return f"{clock(value)} ({relative(value, now)})"


def count(value: int | float | None) -> str:
    """A whole number with thousands separators."""
    return f"{int(value or 0):,}"


def rate(value: float) -> str:
    """Events per second, rounded to what a person reads."""
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def plural(number: int, word: str, words: str | None = None) -> str:
    """ "1 run", "2 runs": the number with thousands separators and the right form of the word."""
    return f"{number:,} {word if number == 1 else (words or word + 's')}"
