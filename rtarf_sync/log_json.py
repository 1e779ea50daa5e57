"""Log lines as JSON objects (RTARF_LOG_FORMAT=json), one a line, through python-json-logger.

Each line has timestamp, level, logger and message, the run's fields inside a run, then the
thread's name, any exception text (exc_info) and extra fields; every string in it, keys included, passes the Redactor.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from pythonjsonlogger.json import JsonEncoder, JsonFormatter

from rtarf_sync.run_context import run_fields

_FIRST = ("timestamp", "level", "logger", "message")


def _clean(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_clean(item, redact) for item in value]
    if isinstance(value, dict):
        return {redact(str(key)): _clean(item, redact) for key, item in value.items()}
    return value


class JsonLineFormatter(JsonFormatter):
    """One JSON object a record: the fixed fields first, the run's next, then the rest; secrets masked."""

    def __init__(self, redact: Callable[[str], str] | None = None) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s %(threadName)s",
            timestamp=True,
            rename_fields={"levelname": "level", "name": "logger", "threadName": "thread"},
        )
        if redact is None:
            from rtarf_sync.logs import redactor  # late: logs imports this module

            redact = redactor()
        self.redact = redact

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """Order the fields, add the run's, and mask secrets in every value."""
        # Through the encoder first: an extra field holding an object becomes the text the line
        # would show, so the Redactor sees exactly what gets written.
        data = json.loads(json.dumps(log_data, cls=JsonEncoder))
        ordered = {key: data.pop(key) for key in _FIRST if key in data}
        ordered.update(run_fields() or {})
        ordered.update((key, value) for key, value in data.items() if key not in ordered)
        cleaned: dict[str, Any] = _clean(ordered, self.redact)
        return cleaned


def json_formatter() -> logging.Formatter:
    """The JSON formatter sharing the process-wide Redactor (gunicorn's logconfig_dict builds it by this name)."""
    return JsonLineFormatter()
