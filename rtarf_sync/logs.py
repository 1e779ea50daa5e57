"""Logging in the original format (or JSON, RTARF_LOG_FORMAT=json), with every secret from Settings replaced by ***.

    2025-11-14 10:25:00 | rtarf_sync.scheduler | INFO | RTARF Event Scheduler started (interval: 300s)

The redaction is a handler filter, so it sees every record that reaches the
handler, whichever logger (ours, APScheduler's, SQLAlchemy's, a driver's)
wrote it, and it also cleans the traceback text of exceptions.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from typing import Any, Iterable, TextIO
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy.engine import make_url

from config import Settings, mask_url
from rtarf_sync.log_json import JsonLineFormatter

LOG_FORMAT = "%(asctime)s | %(name)s | %(levelname)s | %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
MASK = "***"
_HANDLER_NAME = "rtarf_sync"
# Client libraries that log every HTTP request (opensearchpy.trace even logs each body as a curl
# command) at INFO; they speak only at WARNING unless RTARF_LOG_LEVEL=DEBUG.
_CHATTY_LOGGERS = ("opensearchpy.trace", "opensearch", "elastic_transport.transport", "urllib3.connectionpool")
# botocore's DEBUG lines print each SigV4 canonical request, the AWS session token in it: never below WARNING.
_SIGNING_LOGGERS = ("botocore",)


def secret_values(settings: Settings) -> set[str]:
    """Every secret string in `settings`, with the URL-encoded and decoded forms of the database password."""
    values = {
        secret.reveal()
        for secret in (settings.es_password, settings.es_api_key, settings.api_token, settings.webhooks.secret)
        if secret is not None
    }
    if settings.webhooks.secret is not None:
        # The key without its whsec_ prefix is what signing libraries print in their errors.
        values.add(settings.webhooks.secret.reveal().removeprefix("whsec_"))
    if settings.es_proxy is not None:
        # The proxy's user name and password, raw and as percent-decoded (the form a client sends).
        userinfo = urlsplit(settings.es_proxy.reveal()).netloc.rpartition("@")[0]
        proxy_parts = [part for part in userinfo.split(":", 1) if len(part) >= 3]
        values.update(proxy_parts + [unquote(part) for part in proxy_parts])
    for url in settings.webhooks.urls:
        parts = urlsplit(url.reveal())
        userinfo = parts.netloc.rpartition("@")[0]
        values.update(part for part in userinfo.split(":") if len(part) >= 3)
        # A chat webhook's secret is its path: masked wherever it shows (a short path such as /hook is
        # left alone, it would mask ordinary words and carries no secret).
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        values.update(value for value in (url.reveal(), tail) if len(value) >= 8)
    database_url = settings.database_url.reveal()
    values.add(database_url)
    password = make_url(database_url).password
    if password:
        values.update({password, quote(password, safe=""), unquote(password)})
    return {value for value in values if value}


class Redactor:
    """Replaces known secret values (and any password inside a URL) with ***; thread-safe."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Learn more secret values; longest first so a password inside a URL cannot leave a tail."""
        with self._lock:
            merged = set(self._secrets) | {value for value in secrets if value}
            self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        """Return `text` with every secret masked."""
        for value in self._secrets:
            if value in text:
                text = text.replace(value, MASK)
        return mask_url(text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message and traceback through a Redactor; never drops a record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg = self.redactor(record.getMessage())
            record.args = None
            if record.exc_info:
                # Render the traceback now so the handler's formatter prints the cleaned text.
                record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
                record.exc_info = None
            if record.exc_text:
                record.exc_text = self.redactor(record.exc_text)
            if record.stack_info:
                record.stack_info = self.redactor(record.stack_info)
        except Exception:  # noqa: BLE001 - a log line must never break the code that writes it
            record.msg, record.args = "(log message could not be rendered safely)", None
        return True


class ExpectedFailureFilter(logging.Filter):
    """Drops the traceback APScheduler attaches to a failed run: the run's error line already says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        from rtarf_sync.service.jobs import SyncRunFailed  # imported late: logs must not pull in APScheduler

        if record.exc_info and isinstance(record.exc_info[1], SyncRunFailed):
            record.exc_info, record.exc_text = None, None
        return True


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is now, so captured or redirected stderr gets the lines."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


_redactor = Redactor()


def redactor() -> Redactor:
    """The process-wide Redactor that log handlers and API responses share."""
    return _redactor


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of RTARF_LOG_FORMAT: the original text lines, or JSON objects masked field by field."""
    return JsonLineFormatter(_redactor) if log_format == "json" else logging.Formatter(LOG_FORMAT, DATE_FORMAT)


class RedactingTextFormatter(logging.Formatter):
    """The text format with every known secret masked in the finished line.

    gunicorn's own handlers do not pass through the root handler's filter, and an access line
    quotes the request line, where a careless client may have put the token.
    """

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT, DATE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return _redactor(super().format(record))


def gunicorn_formatter(settings: Settings) -> dict[str, Any]:
    """gunicorn's logconfig_dict entry for its access and error lines, in the format `settings` names."""
    _redactor.add(secret_values(settings))  # the master logs before any worker configures the app
    if settings.log_format == "json":
        return {"()": "rtarf_sync.log_json.json_formatter"}
    return {"()": "rtarf_sync.logs.RedactingTextFormatter"}


def unlocked_line(name: str, message: str, level: int = logging.INFO) -> bytes:
    """One line in the configured format, built without the logging locks (for signal handlers)."""
    handler = next((h for h in logging.getLogger().handlers if h.get_name() == _HANDLER_NAME), None)
    line_formatter = handler.formatter if handler is not None and handler.formatter else formatter("text")
    record = logging.LogRecord(name, level, __file__, 0, message, None, None)
    return (line_formatter.format(record) + "\n").encode()


def quiet_expected_failures(logger_name: str) -> None:
    """Keep an APScheduler executor's logger from printing a traceback for a run that failed as expected."""
    executor_logger = logging.getLogger(logger_name)
    if not any(isinstance(f, ExpectedFailureFilter) for f in executor_logger.filters):
        executor_logger.addFilter(ExpectedFailureFilter())


def configure_logging(settings: Settings) -> Redactor:
    """Install (once) the stderr handler in the configured format and teach it the secrets of `settings`."""
    _redactor.add(secret_values(settings))
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = _StderrHandler()
        handler.set_name(_HANDLER_NAME)
        handler.addFilter(RedactingFilter(_redactor))
        root.addHandler(handler)
    handler.setFormatter(formatter(settings.log_format))
    root.setLevel(settings.log_level)
    quiet_expected_failures("apscheduler.executors.default")
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if settings.log_level == "DEBUG" else logging.WARNING)
    for name in _SIGNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return _redactor
