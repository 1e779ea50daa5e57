"""The command-line commands; each takes the parsed arguments and returns an exit status.

A command that cannot go on raises `CommandFailed` with a message that says
what happened and what to do next; `cli.main` prints it. Secrets never appear:
URLs are masked and error texts pass through `errors.redact`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from config import ConfigError, Settings, load_settings, mask_url
from rtarf_sync.pipelines_file import load_pipelines, pick_pipeline
from rtarf_sync.engine.errors import RtarfSyncError, TransientError, redact
from rtarf_sync.cli.progress import ProgressLine, RunWatcher
from rtarf_sync.engine.runs.lease import process_owners
from rtarf_sync.engine.runs.result import FAILED, SKIPPED
from rtarf_sync.sample import BASE_TIME, load_events
from rtarf_sync.logs import secret_values
from rtarf_sync.engine.views.state import MissingTables, format_state, read_state, running_run
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.tables import CURSOR_TABLE, DEAD_LETTER_TABLE, LEASE_TABLE, RUNS_TABLE

PROG = "python -m rtarf_sync"
NAME = "rtarf-sync"  # the prefix wsgi.py and gunicorn.conf.py use for their own errors
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_SKIPPED = 0, 1, 2, 3
ROOT = Path(__file__).resolve().parent.parent
_CLASS_PREFIX = re.compile(r"^(?:\w+(?:Error|Exception): )?(?:\([\w.]+\) )?")


class CommandFailed(Exception):
    """A command cannot go on; the message says what happened and what to do next."""


def say(message: str) -> None:
    """Print one line for a person on stderr, prefixed like the service's own start-up errors."""
    print(f"{NAME}: {message}", file=sys.stderr, flush=True)


_chosen_pipeline: list[str | None] = [None]  # --pipeline NAME, set by main() before the command runs


def use_pipeline(name: str | None) -> None:
    """Make every command of this process act on pipeline `name` (None: default, or the only one)."""
    _chosen_pipeline[0] = name


def _settings() -> Settings:
    """The chosen pipeline's settings (the environment's without a pipelines file); ConfigError if unknown."""
    # Read here, not at import, so `--help` works whatever the environment holds.
    settings = load_settings(os.environ)
    return pick_pipeline(load_pipelines(os.environ, settings), _chosen_pipeline[0])


def _first_line(error: BaseException, service: SyncService) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return redact(text.splitlines()[0] if text else type(error).__name__, service.secrets())[:300]


def _plain_reason(reason: str) -> str:
    """The reason without the exception class names that probes put in front of it."""
    return _CLASS_PREFIX.sub("", reason.strip())


def database_hint(settings: Settings, reason: str) -> str:
    """What went wrong with PostgreSQL and what to do next; never shows the password."""
    where, reason = settings.database_url_masked, _plain_reason(reason)
    if "does not exist" in reason:
        database = sa.engine.make_url(settings.database_url.reveal()).database
        return (
            f"cannot use PostgreSQL at {where}: {reason}; create the database "
            f"(createdb {database}) or set RTARF_DATABASE_URL"
        )
    return f"cannot reach PostgreSQL at {where}: {reason}; start it or set RTARF_DATABASE_URL"


def engine_hint(settings: Settings, reason: str) -> str:
    """What went wrong with the search engine and what to do next."""
    urls, reason = ", ".join(mask_url(url) for url in settings.es_urls), _plain_reason(reason)
    return (
        f"cannot reach the search engine at {urls}: {reason}; start it or set RTARF_ES_URL "
        "(and RTARF_ES_USERNAME/RTARF_ES_PASSWORD or RTARF_ES_API_KEY if it needs credentials)"
    )


def _diagnose(service: SyncService) -> list[str]:
    """Hints for a failed run, from probing both ends."""
    checks = service.check_ready()
    hints = []
    if checks["database"]:
        hints.append(database_hint(service.settings, checks["database"]))
    if checks["engine"]:
        hints.append(engine_hint(service.settings, checks["engine"]))
    return hints or [f'the sync failed (see "error" above); `{PROG} status` lists recent runs']


def _quiet_clients() -> None:
    # Both clients log every request (INFO) and every failed one with a traceback (WARNING);
    # the sync's own retry and failure lines already say what matters, in one line each.
    for name in ("elastic_transport", "opensearch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _logging(settings: Settings) -> None:
    from rtarf_sync.logs import configure_logging  # the service's format, with secrets masked

    configure_logging(settings)
    _quiet_clients()


# -- commands ---------------------------------------------------------------------------------


def cmd_init_db(args: argparse.Namespace) -> int:
    """Create the target table and the state tables when missing."""
    settings = _settings()
    _logging(settings)
    if args.convert_partitioned:
        return _convert(settings, args)
    service = SyncService(settings)
    try:
        service.ensure_tables()
    except (sa.exc.DBAPIError, RtarfSyncError) as error:
        raise CommandFailed(database_hint(settings, _first_line(error, service))) from None
    finally:
        service.close()
    names = (settings.table, CURSOR_TABLE, LEASE_TABLE, RUNS_TABLE, DEAD_LETTER_TABLE)
    print(f"tables ready in {settings.database_url_masked}: {', '.join(names)}")
    return EXIT_OK


def _convert(settings: Settings, args: argparse.Namespace) -> int:
    from rtarf_sync.cli.conversion import convert_table

    try:
        print(convert_table(settings, args))
    except (ValueError, RtarfSyncError) as error:
        raise CommandFailed(str(error)) from None
    except sa.exc.DBAPIError as error:
        first = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise CommandFailed(database_hint(settings, redact(first, secret_values(settings))[:300])) from None
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    """Run one sync, print its result as JSON, and exit by its status."""
    settings = _settings()
    _logging(settings)
    service = SyncService(settings)
    # A run's owner id starts with this process's, so it finds its own run row.
    owner = process_owners()
    try:
        if args.progress_every > 0:
            with RunWatcher(lambda: running_run(service.engine, service.tables, owner), args.progress_every):
                result = service.run(trigger="cli", **getattr(args, "run", {}))
        else:
            result = service.run(trigger="cli", **getattr(args, "run", {}))
        hints = _diagnose(service) if result.status == FAILED else []
    finally:
        service.close()
    print(json.dumps(result.to_dict(), indent=2), flush=True)
    for hint in hints:
        say(hint)
    if result.status == SKIPPED:
        say(f"skipped: {result.error}; try again when that run ends")
    return {FAILED: EXIT_FAILED, SKIPPED: EXIT_SKIPPED}.get(result.status, EXIT_OK)


def _service_status(url: str, timeout: float) -> dict[str, Any]:
    if not url.startswith(("http://", "https://")):
        raise CommandFailed(f"--url {url!r} is not an http:// or https:// URL")
    name = _chosen_pipeline[0]
    address = url.rstrip("/") + (f"/pipelines/{urllib.parse.quote(name)}/status" if name else "/scheduler/status")
    request = urllib.request.Request(address, headers={"Accept": "application/json"})  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
            return dict(json.load(response))
    except urllib.error.HTTPError as error:
        if error.code == 404 and name:
            raise ConfigError(f"--pipeline {name!r}: the service at {url} has no such pipeline") from None
        raise CommandFailed(
            f"{address} answered HTTP {error.code}: {error.read()[:300].decode(errors='replace')}; "
            "is --url the RTARF Event Sync service?"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise CommandFailed(
            f"cannot reach the service at {url}: {reason}; start it "
            f"(`make demo` or `{PROG} serve`) or pass the right --url"
        ) from None


def cmd_status(args: argparse.Namespace) -> int:
    """Print the sync state from PostgreSQL, or a running service's /scheduler/status."""
    if args.url:
        print(json.dumps(_service_status(args.url, args.timeout), indent=2))
        return EXIT_OK
    settings = _settings()
    service = SyncService(settings)
    try:
        state = read_state(service.engine, service.tables, args.limit)
    except MissingTables as missing:
        raise CommandFailed(
            f"no sync state for table {settings.table} in {settings.database_url_masked} yet "
            f"(missing: {missing}); run `{PROG} init-db` or `{PROG} sync`"
        ) from None
    except sa.exc.DBAPIError as error:
        raise CommandFailed(database_hint(settings, _first_line(error, service))) from None
    finally:
        service.close()
    print(json.dumps(state, indent=2) if args.json else format_state(state, settings.database_url_masked))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Probe the search engine and PostgreSQL; exit 1 if either cannot be reached."""
    settings = _settings()
    _logging(settings)
    service = SyncService(settings)
    try:
        checks = service.check_ready()
    finally:
        service.close()
    urls = ", ".join(mask_url(url) for url in settings.es_urls)
    print(f"search engine at {urls}: {'reachable' if not checks['engine'] else 'UNREACHABLE'}")
    print(f"PostgreSQL at {settings.database_url_masked}: {'reachable' if not checks['database'] else 'UNREACHABLE'}")
    if checks["engine"]:
        say(engine_hint(settings, checks["engine"]))
    if checks["database"]:
        say(database_hint(settings, checks["database"]))
    return EXIT_FAILED if checks["engine"] or checks["database"] else EXIT_OK


def sample_index(pattern: str) -> str:
    """A concrete index for sample events that the RTARF_ES_INDEX setting reads."""
    first = pattern.split(",")[0]
    if "*" not in first and "?" not in first:
        return first
    prefix = first.rstrip("*")
    if "*" in prefix or "?" in prefix or not prefix:
        raise CommandFailed(f"RTARF_ES_INDEX={pattern!r} has no plain prefix to name a sample index; pass --index NAME")
    return prefix + ("sample" if prefix[-1] in "-_." else "-sample")


def _refresh(api: Any, index: str) -> None:
    # SearchApi has no refresh (the sync never needs one); loading does, so the next
    # command sees the events at once. Both adapters expose their client as `.client`.
    try:
        api.client.indices.refresh(index=index)
    except Exception as error:  # noqa: BLE001 - the events are loaded; they become visible later
        say(
            f"warning: refresh of {index} failed ({type(error).__name__}); "
            "the events become searchable at the index's next refresh"
        )


def cmd_load_sample(args: argparse.Namespace) -> int:
    """Index sample RTARF events into the configured search engine, with progress."""
    settings = _settings()
    index = args.index or sample_index(settings.es_index)
    start = BASE_TIME
    if args.recent:  # event number first+count-1 lands at about now, like live traffic
        start = datetime.now(timezone.utc) - timedelta(milliseconds=(args.first + args.count) * args.spacing_ms)
    _logging(settings)
    service = SyncService(settings)
    try:
        api = service.api
        line = ProgressLine(f"loading sample events into {index}")
        loaded = load_events(
            api.bulk,
            index,
            args.count,
            seed=args.seed,
            first=args.first,
            batch=args.batch,
            progress=line.update,
            start=start,
            spacing_ms=args.spacing_ms,
        )
        _refresh(api, index)
        kind = api.kind
    except TransientError as error:
        raise CommandFailed(engine_hint(settings, redact(str(error), service.secrets()))) from None
    except (RtarfSyncError, RuntimeError) as error:
        raise CommandFailed(
            f"the search engine refused the sample events: {redact(str(error), service.secrets())}; "
            "check RTARF_ES_INDEX or pass another --index"
        ) from None
    finally:
        service.close()
    print(
        f"loaded {loaded:,} sample events into {index} ({kind}); "
        f"event numbers {args.first}..{args.first + args.count - 1}, seed {args.seed}"
    )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """Replace this process with gunicorn serving the app, configured by gunicorn.conf.py."""
    settings = load_settings(os.environ)  # the same one-line errors gunicorn.conf.py would give, before exec
    load_pipelines(os.environ, settings)  # the service runs every pipeline: check the file, pick none
    argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--chdir", str(ROOT), "wsgi:app"]
    say(f"starting gunicorn on {settings.bind}: python {' '.join(argv[1:])}")
    os.execv(sys.executable, argv)
    return EXIT_FAILED  # not reached: execv only returns by raising
