"""One rule per setting, checked the same way for an environment variable's text and a pipelines-file value.

`SETTING_RULES` holds the rule of every per-pipeline setting, by its variable; `PIPELINE_KEYS`
maps each key of a pipelines file to that variable, so the two ways of setting a value can never
disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from config.settings import STATE_TABLE_PREFIX, WEBHOOK_EVENTS

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_FIELD_PATH = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9_@.\-]*$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_READ_MODES = ("auto", "pit", "scroll")
_DELETE_MODES = ("soft", "hard", "off")


class Invalid(ValueError):
    """A value breaks its rule; `expected` says what the rule wants (the caller names the variable or key)."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


class Rule:
    """One setting's rule, checked the same way for an environment variable (text) and a pipelines-file key
    (a TOML value): `from_text` parses the variable's text, `from_value` takes a value already typed."""

    @property
    def expected(self) -> str:
        """What a valid value looks like, for messages."""
        return "a valid value"

    def from_text(self, text: str) -> Any:
        """The value of an environment variable's text; raises Invalid."""
        return self.from_value(text)

    def from_value(self, value: object) -> Any:
        """The value of a typed (TOML) value; raises Invalid, also for a value of the wrong type."""
        raise NotImplementedError


@dataclass(frozen=True)
class Integer(Rule):
    """A whole number in [low, high]."""

    low: int
    high: int

    @property
    def expected(self) -> str:
        return f"an integer from {self.low} to {self.high}"

    def from_text(self, text: str) -> int:
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise Invalid(self.expected)
        return self.from_value(int(text))

    def from_value(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise Invalid(self.expected)
        return value


@dataclass(frozen=True)
class Number(Rule):
    """A real number in [low, high]."""

    low: float
    high: float

    @property
    def expected(self) -> str:
        return f"a number from {self.low:g} to {self.high:g}"

    def from_text(self, text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise Invalid(self.expected) from None
        return self.from_value(number)

    def from_value(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            raise Invalid(self.expected)
        return float(value)


class Boolean(Rule):
    """Strict true or false."""

    @property
    def expected(self) -> str:
        return "true or false"

    def from_text(self, text: str) -> bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise Invalid(self.expected)

    def from_value(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise Invalid(self.expected)
        return value


@dataclass(frozen=True)
class Choice(Rule):
    """One of a few words."""

    choices: tuple[str, ...]
    normalize: Callable[[str], str] = str.lower

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(self.choices)

    def from_value(self, value: object) -> str:
        if not isinstance(value, str) or self.normalize(value) not in self.choices:
            raise Invalid(self.expected)
        return self.normalize(value)


@dataclass(frozen=True)
class Matching(Rule):
    """Text matching a pattern, at most `max_bytes` long."""

    pattern: re.Pattern[str]
    description: str
    max_bytes: int | None = None

    @property
    def expected(self) -> str:
        return self.description

    def from_value(self, value: object) -> str:
        if not isinstance(value, str) or not self.pattern.fullmatch(value):
            raise Invalid(self.expected)
        if self.max_bytes is not None and len(value.encode()) > self.max_bytes:
            raise Invalid(self.expected)
        return value


class IndexSetting(Rule):
    """An index, alias, pattern or comma list of them (RTARF_ES_INDEX, key `index`)."""

    @property
    def expected(self) -> str:
        return "an index, alias, pattern or comma-separated list of them"

    def from_value(self, value: object) -> str:
        if not isinstance(value, str):
            raise Invalid(self.expected)
        parts = [part.strip() for part in value.split(",")]
        if any(not part or re.search(r"[\s\"\\/?#<>|]", part) for part in parts):
            raise Invalid(self.expected)
        return ",".join(parts)


class TableName(Rule):
    """A target table: a plain identifier that is not one of the service's own (RTARF_TABLE, key `table`)."""

    @property
    def expected(self) -> str:
        return "a plain lowercase identifier ([a-z_][a-z0-9_]*) of at most 63 bytes"

    def from_value(self, value: object) -> str:
        table = Matching(_IDENTIFIER, self.expected, max_bytes=63).from_value(value)
        if table.startswith(STATE_TABLE_PREFIX):
            raise Invalid(
                f"a name that does not start with {STATE_TABLE_PREFIX} "
                "(the service's own state and work tables use that prefix)"
            )
        return table


class WebhookEvents(Rule):
    """`*` or a list of webhook event types (RTARF_WEBHOOK_EVENTS, key `webhook_events`)."""

    @property
    def expected(self) -> str:
        return "* or a comma-separated list of " + ", ".join(WEBHOOK_EVENTS)

    def from_text(self, text: str) -> tuple[str, ...]:
        return self.from_value(text if text == "*" else [part.strip() for part in text.split(",")])

    def from_value(self, value: object) -> tuple[str, ...]:
        if value == "*":
            return WEBHOOK_EVENTS
        if not isinstance(value, list) or not value or any(event not in WEBHOOK_EVENTS for event in value):
            raise Invalid(self.expected)
        return tuple(value)


# The rule of every per-pipeline setting, by its variable: load_settings reads the variable with it and
# a pipelines file's key (PIPELINE_KEYS) goes through the same rule, so the two can never disagree.
SETTING_RULES: dict[str, Rule] = {
    "RTARF_ES_INDEX": IndexSetting(),
    "RTARF_TABLE": TableName(),
    "RTARF_CURSOR_FIELD": Matching(_FIELD_PATH, "a field name such as @timestamp or event.ingested"),
    "RTARF_SYNC_ENABLED": Boolean(),
    "RTARF_SYNC_INTERVAL_SECONDS": Integer(1, 86400),
    "RTARF_SYNC_SETTLE_SECONDS": Integer(0, 3600),
    "RTARF_SYNC_OVERLAP_SECONDS": Integer(0, 3650 * 86400),
    "RTARF_SYNC_BATCH_SIZE": Integer(1, 10000),
    "RTARF_SYNC_SLICES": Integer(1, 16),
    "RTARF_SYNC_READ_MODE": Choice(_READ_MODES),
    "RTARF_DELETE_MODE": Choice(_DELETE_MODES),
    "RTARF_DELETE_MAX_FRACTION": Number(0.0, 1.0),
    "RTARF_DELETE_VANISHED_INDICES": Boolean(),
    "RTARF_VERIFY_INTERVAL_SECONDS": Integer(0, 7 * 86400),
    "RTARF_VERIFY_LOOKBACK_HOURS": Integer(1, 24 * 3660),
    "RTARF_VERIFY_REPAIR": Boolean(),
    "RTARF_TRIGGER_DEBOUNCE_SECONDS": Number(0.0, 60),
    "RTARF_WEBHOOK_EVENTS": WebhookEvents(),
}

# Pipelines-file key -> (its variable, where it lives in Settings: a field, or a group and its field).
PIPELINE_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "index": ("RTARF_ES_INDEX", ("es_index",)),
    "table": ("RTARF_TABLE", ("table",)),
    "cursor_field": ("RTARF_CURSOR_FIELD", ("cursor_field",)),
    "enabled": ("RTARF_SYNC_ENABLED", ("sync_enabled",)),
    "interval_seconds": ("RTARF_SYNC_INTERVAL_SECONDS", ("sync_interval_seconds",)),
    "settle_seconds": ("RTARF_SYNC_SETTLE_SECONDS", ("settle_seconds",)),
    "overlap_seconds": ("RTARF_SYNC_OVERLAP_SECONDS", ("overlap_seconds",)),
    "batch_size": ("RTARF_SYNC_BATCH_SIZE", ("batch_size",)),
    "slices": ("RTARF_SYNC_SLICES", ("reconcile", "slices")),
    "read_mode": ("RTARF_SYNC_READ_MODE", ("read_mode",)),
    "delete_mode": ("RTARF_DELETE_MODE", ("reconcile", "delete_mode")),
    "delete_max_fraction": ("RTARF_DELETE_MAX_FRACTION", ("reconcile", "delete_max_fraction")),
    "delete_vanished_indices": ("RTARF_DELETE_VANISHED_INDICES", ("reconcile", "delete_vanished_indices")),
    "verify_interval_seconds": ("RTARF_VERIFY_INTERVAL_SECONDS", ("verify", "interval_seconds")),
    "verify_lookback_hours": ("RTARF_VERIFY_LOOKBACK_HOURS", ("verify", "lookback_hours")),
    "verify_repair": ("RTARF_VERIFY_REPAIR", ("verify", "repair")),
    "trigger_debounce_seconds": ("RTARF_TRIGGER_DEBOUNCE_SECONDS", ("trigger_debounce_seconds",)),
    "webhook_events": ("RTARF_WEBHOOK_EVENTS", ("webhooks", "events")),
}
