"""Dates the way Elasticsearch reads and prints them.

Instants are integers: nanoseconds since the epoch, UTC. Calendar arithmetic
is done on integers (days from the civil date) rather than with `datetime`,
because Elasticsearch prints instants far outside `datetime`'s range, such as
the Long.MAX_VALUE milliseconds it uses for a missing sort value.
"""

from __future__ import annotations

import functools
import re

NANOS_PER_MILLI = 1_000_000
NANOS_PER_SECOND = 1_000_000_000
NANOS_PER_DAY = 86_400 * NANOS_PER_SECOND

_ISO = re.compile(
    r"(?P<year>[+-]\d{4,9}|\d{4})"
    r"(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?)?"
    r"(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?"
)
# The second dynamic date format: yyyy/MM/dd HH:mm:ss||yyyy/MM/dd.
_SLASHED = re.compile(r"(\d{4})/(\d{2})/(\d{2})(?: (\d{2}):(\d{2}):(\d{2}))?")
_EPOCH = re.compile(r"-?\d+(?:\.\d+)?")
_MATH_STEP = re.compile(r"([+-])(\d*)([yMwdhHms])|/([yMwdhHms])")
_TIME_VALUE = re.compile(r"(\d+(?:\.\d+)?)(nanos|micros|ms|s|m|h|d)")
_UNIT_NANOS = {
    "w": 7 * NANOS_PER_DAY,
    "d": NANOS_PER_DAY,
    "h": 3600 * NANOS_PER_SECOND,
    "H": 3600 * NANOS_PER_SECOND,
    "m": 60 * NANOS_PER_SECOND,
    "s": NANOS_PER_SECOND,
}
_SECONDS = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}


def days_from_civil(year: int, month: int, day: int) -> int:
    """Return days since 1970-01-01 for a proleptic Gregorian date."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def civil_from_days(days: int) -> tuple[int, int, int]:
    """Return (year, month, day) for a count of days since 1970-01-01."""
    days += 719468
    era = days // 146097
    day_of_era = days - era * 146097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + (3 if shifted_month < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


def days_in_month(year: int, month: int) -> int:
    """Return the number of days in a month."""
    following = (year + 1, 1) if month == 12 else (year, month + 1)
    return days_from_civil(*following, 1) - days_from_civil(year, month, 1)


def parse_offset(zone: str) -> int:
    """Return the offset in seconds of `Z`, `+07:00`, `-0500`, `+07` or `UTC`."""
    if zone in ("Z", "UTC", "GMT"):
        return 0
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})?", zone)
    if not match:
        raise ValueError(f"unsupported time zone [{zone}]")
    seconds = int(match.group(2)) * 3600 + int(match.group(3) or 0) * 60
    return -seconds if match.group(1) == "-" else seconds


def _civil_nanos(parts: tuple[int, ...], fraction: str, offset_seconds: int) -> int:
    year, month, day, hour, minute, second = parts
    if not (1 <= month <= 12 and 1 <= day <= days_in_month(year, month)):
        raise ValueError("day or month out of range")
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("time out of range")
    seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return (seconds - offset_seconds) * NANOS_PER_SECOND + int(fraction.ljust(9, "0"))


# The same stored strings are parsed again by every search over them.
@functools.lru_cache(maxsize=1 << 18)
def parse_iso(text: str, default_offset: int = 0) -> int:
    """Parse strict_date_optional_time (or yyyy/MM/dd) into epoch nanoseconds."""
    match = _ISO.fullmatch(text)
    if match:
        g = match.groupdict()
        parts = tuple(
            int(g[k] or d)
            for k, d in (("year", 0), ("month", 1), ("day", 1), ("hour", 0), ("minute", 0), ("second", 0))
        )
        offset = parse_offset(g["zone"]) if g["zone"] else default_offset
        return _civil_nanos(parts, g["fraction"] or "", offset)
    match = _SLASHED.fullmatch(text)
    if match:
        parts = tuple(int(v or 0) for v in match.groups())
        return _civil_nanos(parts, "", default_offset)
    raise ValueError(f"failed to parse date field [{text}]")


def parse_date(value: object, fmt: str | None = None, default_offset: int = 0) -> int:
    """Parse a date value (ISO string, epoch millis, or per `fmt`) into epoch nanoseconds."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"failed to parse date field [{value}]")
    if isinstance(value, (int, float)):
        return round(value * NANOS_PER_MILLI)
    text = str(value)
    names = (fmt or "strict_date_optional_time||epoch_millis").split("||")
    for name in names:
        try:
            return _parse_one(text, name, default_offset)
        except ValueError:
            continue
    raise ValueError(f"failed to parse date field [{text}] with format [{fmt}]")


def _parse_one(text: str, name: str, default_offset: int) -> int:
    if name in ("epoch_millis", "epoch_second"):
        if not _EPOCH.fullmatch(text):
            raise ValueError(text)
        scale = NANOS_PER_MILLI if name == "epoch_millis" else NANOS_PER_SECOND
        return round(float(text) * scale)
    # Named ISO formats and custom patterns alike get the ISO reader: good
    # enough for the formats this project uses.
    return parse_iso(text, default_offset)


def looks_like_date(text: str) -> bool:
    """Tell whether dynamic mapping would detect this string as a date."""
    if not (_ISO.fullmatch(text) or _SLASHED.fullmatch(text)) or len(text) < 10:
        return False
    try:
        parse_iso(text)
    except ValueError:
        return False
    return True


def format_iso(nanos: int, max_fraction_digits: int = 3) -> str:
    """Print an instant like Elasticsearch's strict_date_optional_time printers."""
    days, rest = divmod(nanos, NANOS_PER_DAY)
    year, month, day = civil_from_days(days)
    seconds, fraction = divmod(rest, NANOS_PER_SECOND)
    digits = f"{fraction:09d}"[:max_fraction_digits].rstrip("0").ljust(3, "0")
    if year < 0:
        year_text = f"-{-year:04d}"
    elif year > 9999:
        year_text = f"+{year}"
    else:
        year_text = f"{year:04d}"
    hour, minute, second = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{year_text}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{digits}Z"


def _add_months(nanos: int, months: int) -> int:
    days, rest = divmod(nanos, NANOS_PER_DAY)
    year, month, day = civil_from_days(days)
    year, month0 = divmod(year * 12 + month - 1 + months, 12)
    day = min(day, days_in_month(year, month0 + 1))
    return days_from_civil(year, month0 + 1, day) * NANOS_PER_DAY + rest


def _round_down(nanos: int, unit: str) -> int:
    days = nanos // NANOS_PER_DAY
    if unit in ("y", "M"):
        year, month, _ = civil_from_days(days)
        return days_from_civil(year, 1 if unit == "y" else month, 1) * NANOS_PER_DAY
    if unit == "w":
        # 1970-01-01 was a Thursday; weeks start on Monday.
        return (days - (days + 3) % 7) * NANOS_PER_DAY
    return nanos - nanos % _UNIT_NANOS[unit]


def _round(nanos: int, unit: str, round_up: bool, offset: int) -> int:
    local = nanos + offset * NANOS_PER_SECOND
    start = _round_down(local, unit)
    if round_up:
        # Rounding up means the last millisecond of the unit, as in ES.
        following = _add_months(start, 12 if unit == "y" else 1) if unit in ("y", "M") else start + _UNIT_NANOS[unit]
        start = following - NANOS_PER_MILLI
    return start - offset * NANOS_PER_SECOND


def resolve_date_math(
    value: object, now_nanos: int, round_up: bool = False, fmt: str | None = None, offset: int = 0
) -> int:
    """Evaluate `now-5m`, `now/d`, `2025-01-01||+1M` or a plain date into epoch nanoseconds."""
    text = value if isinstance(value, str) else None
    if text is None or not (text.startswith("now") or "||" in text):
        return parse_date(value, fmt, offset)
    anchor, steps = ("now", text[3:]) if text.startswith("now") else text.split("||", 1)
    nanos = now_nanos if anchor == "now" else parse_date(anchor, fmt, offset)
    position = 0
    while position < len(steps):
        match = _MATH_STEP.match(steps, position)
        if not match:
            raise ValueError(f"failed to parse date math [{text}]")
        sign, amount, unit, rounding = match.groups()
        if rounding:
            nanos = _round(nanos, rounding, round_up, offset)
        else:
            count = int(amount or 1) * (-1 if sign == "-" else 1)
            if unit in ("y", "M"):
                nanos = _add_months(nanos, count * (12 if unit == "y" else 1))
            else:
                nanos += count * _UNIT_NANOS[unit]
        position = match.end()
    return nanos


def parse_time_value(text: str) -> float:
    """Return the seconds of an Elasticsearch time value such as `1m` or `500ms`."""
    match = _TIME_VALUE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"failed to parse [{text}], unit is missing or unrecognized")
    return float(match.group(1)) * _SECONDS[match.group(2)]
