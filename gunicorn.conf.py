"""gunicorn settings: one worker with a few threads; the scheduler lives in the worker only.

The settings are validated here, in the master, so a bad value stops start-up
with one line naming the variable before any worker forks. The scheduler
starts in `post_worker_init` (after the fork, never in the master) and stops in
`worker_exit`; SIGTERM first asks a running sync to stop after its page.
"""

import os
import signal
import sys
import time

from config import ConfigError, load_settings

try:
    _settings = load_settings(os.environ)
except ConfigError as _error:
    print(f"rtarf-sync: configuration error: {_error}", file=sys.stderr)
    sys.exit(2)

bind = _settings.bind
workers = 1  # one scheduler per process; more workers are safe (the lease) but only one syncs at a time
worker_class = "rtarf_sync.service.http_worker.GuardedThreadWorker"  # gthread that never waits on a client
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
    "formatters": {"rtarf": {"format": "%(asctime)s | %(name)s | %(levelname)s | %(message)s",
                             "datefmt": "%Y-%m-%d %H:%M:%S"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "rtarf",
                             "stream": "ext://sys.stderr"}},
    "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
                "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False}},
}


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """Start the scheduler in this worker, and make SIGTERM interrupt a running sync at once."""
    from rtarf_sync.service import extension

    scheduler = extension.scheduler_of(worker.wsgi)
    gunicorn_handler = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):  # type: ignore[no-untyped-def]
        scheduler.request_stop()  # only sets flags: safe inside a signal handler
        # os.write, not logging: a handler that takes the logging lock could deadlock the worker.
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(2, f"{stamp} | rtarf_sync.scheduler | INFO | SIGTERM received (pid {os.getpid()}): "
                    "a running sync stops after its current page\n".encode())
        if callable(gunicorn_handler):
            gunicorn_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
    extension.start(worker.wsgi)


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    """Stop the scheduler, letting a running sync finish or roll back its page first."""
    from rtarf_sync.service import extension

    app = getattr(worker, "wsgi", None)
    if app is not None and extension.EXTENSION_KEY in getattr(app, "extensions", {}):
        extension.shutdown(app, timeout=graceful_timeout * 0.6)
