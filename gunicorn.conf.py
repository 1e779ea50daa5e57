"""gunicorn settings: one worker with a few threads; the scheduler lives in the worker only.

The settings are validated here, in the master, so a bad value stops start-up
with one line naming the variable before any worker forks. The scheduler
starts in `post_worker_init` (after the fork, never in the master) and stops in
`worker_exit`; SIGTERM first asks a running sync to stop after its page.
"""

import os
import signal
import sys
from types import FrameType
from typing import Any

from config import ConfigError, load_settings
from rtarf_sync.logs import gunicorn_formatter, unlocked_line
from rtarf_sync.pipelines_file import load_pipelines

try:
    _settings = load_settings(os.environ)
    load_pipelines(os.environ, _settings)  # a bad pipelines file stops start-up here too, before any fork
except ConfigError as _error:
    print(f"rtarf-sync: configuration error: {_error}", file=sys.stderr)
    sys.exit(2)

bind = _settings.bind
workers = 1  # one scheduler per process; more workers are safe (the lease) but only one syncs at a time
worker_class = "rtarf_sync.server.http_worker.GuardedThreadWorker"  # gthread that never waits on a client
threads = 4  # status and health answer while a sync-now request runs
graceful_timeout = _settings.graceful_timeout_seconds
timeout = 60
accesslog = "-"
errorlog = "-"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    # The app installs the one root handler itself (with the secret filter); a second here would
    # print every line twice.
    "root": {"level": "INFO", "handlers": []},
    "formatters": {"rtarf": gunicorn_formatter(_settings)},  # RTARF_LOG_FORMAT: text or json
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "rtarf", "stream": "ext://sys.stderr"}},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
}


def _check_exposure(server: Any) -> None:
    """Stop before any worker serves if the sockets really bound are reachable without a token."""
    from rtarf_sync.server.exposure import allowed_to_listen, gunicorn_addresses

    if not allowed_to_listen(_settings, gunicorn_addresses(_settings, server), server.log.warning):
        server.halt(exit_status=2)


def when_ready(server: Any) -> None:
    """The sockets are bound and no worker exists yet: judge what gunicorn really listens on."""
    _check_exposure(server)


def on_reload(server: Any) -> None:
    """A reload (SIGHUP) may have bound new sockets: judge them again."""
    _check_exposure(server)


def post_worker_init(worker: Any) -> None:  # gunicorn has no type hints: its Worker is Any here
    """Start the scheduler in this worker, and make SIGTERM interrupt a running sync at once."""
    from rtarf_sync.service import extension

    schedulers = [pipeline.scheduler for pipeline in extension.pipelines_of(worker.wsgi)]
    gunicorn_handler = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: FrameType | None) -> None:
        for scheduler in schedulers:  # every pipeline's running sync stops after its page
            scheduler.request_stop()  # only sets flags: safe inside a signal handler
        # os.write, not logging: a handler that takes the logging lock could deadlock the worker.
        os.write(
            2,
            unlocked_line(
                "rtarf_sync.scheduler",
                f"SIGTERM received (pid {os.getpid()}): a running sync stops after its current page",
            ),
        )
        if callable(gunicorn_handler):
            gunicorn_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
    extension.start(worker.wsgi)


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the scheduler, letting a running sync finish or roll back its page first."""
    from rtarf_sync.service import extension

    app = getattr(worker, "wsgi", None)
    if app is not None and extension.EXTENSION_KEY in getattr(app, "extensions", {}):
        extension.shutdown(app, timeout=graceful_timeout * 0.6)
