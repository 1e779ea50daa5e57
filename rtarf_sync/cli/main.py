"""Command line: `python -m rtarf_sync COMMAND`, the service's jobs without the HTTP server.

    init-db      create the target table and the state tables
    sync         run one sync and print its result as JSON (--full, --from/--to, --force)
    status       the state in PostgreSQL (rows, cursor, lease, recent runs), or a service's status (--url)
    runs         the run history, newest first (a table, or --json)
    dead-letters list, show or replay the documents set aside
    check        say whether the search engine and PostgreSQL can be reached
    load-sample  index sample RTARF events into the search engine
    verify       compare per-bucket counts of the engine and PostgreSQL (--repair re-reads drift)
    cursor       show, set or reset the stored cursor
    serve        run the HTTP service under gunicorn

Settings come from the same RTARF_ environment variables as the service.
Exit status: 0 done (sync: success or partial), 1 failed, 2 bad configuration
or usage, 3 sync skipped because another process holds the lease.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from typing import Callable, Sequence

from config import PARTITION_KINDS, ConfigError
from rtarf_sync.cli import commands, history, verification
from rtarf_sync.cli.commands import EXIT_CONFIG, EXIT_FAILED, PROG, CommandFailed
from rtarf_sync.engine.runs.history import MAX_LIMIT, RUN_MODES, RUN_STATUSES, RUN_TRIGGERS
from rtarf_sync.engine.runs.plan import parse_bound

Command = Callable[[argparse.Namespace], int]

_DESCRIPTION = """\
Copy Elasticsearch/OpenSearch security events into PostgreSQL, one command at a time.
Settings come from the RTARF_ environment variables (see README.md), the same as the service.

exit status: 0 done, 1 failed, 2 bad configuration or usage, 3 sync skipped (another run holds the lease)"""

_SYNC_HELP = """\
Run one sync now, by default the same run the scheduler makes: read the events that are new or changed
since the stored cursor (minus RTARF_SYNC_OVERLAP_SECONDS, up to now minus RTARF_SYNC_SETTLE_SECONDS)
from RTARF_ES_URL / RTARF_ES_INDEX and upsert them into RTARF_TABLE in PostgreSQL, one transaction
per page. The first run copies the whole history. Creates the tables when missing.

--full reads every document (up to now minus the settle lag) and --from/--to a range of the cursor
field [from, to); both then reconcile deletes (RTARF_DELETE_MODE) over what they read, and a range
run never moves the stored cursor. --force lets the deletes go past RTARF_DELETE_MAX_FRACTION.

Prints the result as JSON on stdout (status, total_processed, inserted, updated, unchanged,
failed, duration_seconds, cursor, error ...); the service's log lines and progress go to stderr.
exit status: 0 success or partial (some documents set aside as dead letters), 1 failed,
3 skipped because another process holds the lease"""

_STATUS_HELP = """\
Without --url: read the sync state from PostgreSQL (RTARF_DATABASE_URL): rows in the target table,
the stored cursor, who holds the lease, dead letters, and the most recent runs with their counts.
With --url: print GET <url>/scheduler/status of a running service as JSON."""

_LOAD_HELP = """\
Index COUNT realistic RTARF security events (about 1 KB each, deterministic from --seed) into the
search engine at RTARF_ES_URL with bulk requests, then refresh the index. Event ids are stable,
so loading the same numbers again updates them instead of adding duplicates; use --first to add
new ones. The default index is derived from RTARF_ES_INDEX (rtarf-events* -> rtarf-events-sample)."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _limit(text: str) -> int:
    value = _positive(text)
    if value > MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{text} is over the maximum of {MAX_LIMIT}")
    return value


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    command: Command,
    summary: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name, help=summary, description=description or summary, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(command=command)
    return parser


def _add_load_sample(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = _add(sub, "load-sample", commands.cmd_load_sample, "index sample RTARF events into the engine", _LOAD_HELP)
    load.add_argument("--count", type=_positive, default=1000, help="number of events (default 1000)")
    load.add_argument("--seed", type=int, default=42, help="stream of events to draw from (default 42)")
    load.add_argument("--first", type=int, default=0, help="number of the first event (default 0)")
    load.add_argument("--index", help="index to write (default: derived from RTARF_ES_INDEX)")
    load.add_argument("--batch", type=_positive, default=2000, help="events per bulk request (default 2000)")
    load.add_argument(
        "--recent",
        action="store_true",
        help="stamp the events so the last one is about now (default: from 2025-11-14T00:00Z)",
    )
    load.add_argument(
        "--spacing-ms",
        type=_positive,
        default=1000,
        help="milliseconds between consecutive events' timestamps (default 1000)",
    )


def _instant(text: str) -> datetime:
    try:
        return parse_bound(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_run_modes(sync: argparse.ArgumentParser) -> None:
    modes = sync.add_mutually_exclusive_group()
    modes.add_argument(
        "--full", action="store_true", help="read every document up to now minus the settle lag and reconcile deletes"
    )
    modes.add_argument(
        "--from",
        dest="start",
        type=_instant,
        metavar="ISO",
        help="a range run from this time (inclusive, with a time zone); needs --to",
    )
    sync.add_argument(
        "--to", dest="end", type=_instant, metavar="ISO", help="end of the range run (exclusive); needs --from"
    )
    sync.add_argument(
        "--force", action="store_true", help="let the delete reconciliation go past RTARF_DELETE_MAX_FRACTION"
    )


def run_arguments(args: argparse.Namespace) -> dict[str, object]:
    """SyncService.run's mode, start, end and force from `sync`'s flags; ValueError names a bad one."""
    if (args.start is None) != (args.end is None):
        raise ValueError("--from and --to go together: a range run needs both")
    if args.start is not None and args.start >= args.end:
        raise ValueError(f"--from {args.start.isoformat()} is not before --to {args.end.isoformat()}")
    mode = "full" if args.full else "range" if args.start is not None else "incremental"
    return {"mode": mode, "start": args.start, "end": args.end, "force": args.force}


def _add_records(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runs = _add(
        sub,
        "runs",
        history.cmd_runs,
        "list the run history, newest first",
        "The runs recorded in PostgreSQL for RTARF_TABLE, newest first, as a table (or --json,\n"
        "the same objects as GET /scheduler/runs). Runs older than RTARF_RUN_HISTORY_DAYS are pruned.",
    )
    runs.add_argument("--limit", type=_limit, default=20, help="runs to list (default 20, at most 200)")
    runs.add_argument("--status", choices=RUN_STATUSES, help="only runs that ended so")
    runs.add_argument("--trigger", choices=RUN_TRIGGERS, help="only runs started so")
    runs.add_argument("--mode", choices=RUN_MODES, help="only runs of this mode")
    runs.add_argument("--before", type=_positive, help="only runs older than this run id (paging)")
    runs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    dead = _add(
        sub,
        "dead-letters",
        history.cmd_dead_letters,
        "list, show or replay the documents set aside",
        "list              dead letters newest first (without their documents)\n"
        "show ID           one dead letter with its raw document, as JSON\n"
        "replay [ID ...]   fetch each document again from the engine and write those that now\n"
        "                  convert (all unresolved ones without IDs); prints replayed,\n"
        "                  still_failing, gone. Takes the lease like a sync (exit 3 if held).",
    )
    dead.add_argument("action", choices=("list", "show", "replay"))
    dead.add_argument("ids", nargs="*", type=_positive, metavar="ID")
    dead.add_argument("--limit", type=_limit, default=50, help="list: how many (default 50, at most 200)")
    dead.add_argument("--before", type=_positive, help="list: only ids below this one (paging)")
    dead.add_argument("--reason", help="list: only reasons containing this text")
    dead.add_argument("--unresolved", action="store_true", help="list: only the unresolved ones")
    dead.add_argument("--json", action="store_true", help="list: print JSON instead of a table")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per job."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    init = _add(
        sub,
        "init-db",
        commands.cmd_init_db,
        "create the target table and the state tables",
        "Create the target table (RTARF_TABLE) and the state tables rtarf_sync_cursor, rtarf_sync_lease,\n"
        "rtarf_sync_runs and rtarf_sync_dead_letters in RTARF_DATABASE_URL when they are missing.\n"
        "Safe to run again, and while the service runs. The service and `sync` also do this on their own.\n"
        "--convert-partitioned converts an existing plain table into a partitioned one (docs/partitions.md):\n"
        "online, in batches, rows kept; runs wait for it (the lease), readers keep reading.",
    )
    init.add_argument(
        "--convert-partitioned",
        action="store_true",
        help="convert the existing table into one range-partitioned on event_timestamp, rows kept",
    )
    init.add_argument(
        "--partition", choices=PARTITION_KINDS, help="day or month (default: the pipeline's partition setting)"
    )
    init.add_argument("--batch", type=_positive, help="rows copied per transaction (default 50000)")
    sync = _add(sub, "sync", commands.cmd_sync, "run one sync now and print its result as JSON", _SYNC_HELP)
    sync.add_argument(
        "--progress-every",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="report committed pages on stderr this often during the run (0: never; default 2)",
    )
    _add_run_modes(sync)
    status = _add(sub, "status", commands.cmd_status, "show the sync state and recent runs", _STATUS_HELP)
    status.add_argument("--url", help="a running service, e.g. http://localhost:8000")
    status.add_argument("--limit", type=_positive, default=10, help="recent runs to list (default 10)")
    status.add_argument("--json", action="store_true", help="print the PostgreSQL state as JSON")
    status.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for --url (default 10)")
    _add_records(sub)
    _add(
        sub,
        "check",
        commands.cmd_check,
        "check that the search engine and PostgreSQL can be reached",
        "Probe RTARF_ES_URL (GET /) and RTARF_DATABASE_URL (SELECT 1), as GET /readyz does.\n"
        "Prints one line for each and what to do about an unreachable one; exit status 1 if any is.",
    )
    _add_load_sample(sub)
    verification.add_parsers(sub)
    serve = _add(
        sub,
        "serve",
        commands.cmd_serve,
        "run the HTTP service under gunicorn (port from RTARF_BIND or PORT)",
        "Validate the settings, then replace this process with\n"
        "  python -m gunicorn -c gunicorn.conf.py wsgi:app\n"
        "which serves the /scheduler routes, /healthz, /readyz and /metrics and runs the interval job.",
    )
    for parser_ in (parser, *(p for p in sub.choices.values() if p is not serve)):
        parser_.add_argument(
            "--pipeline",
            metavar="NAME",
            # SUPPRESS: given before the command, a subcommand's own default must not erase it.
            default=None if parser_ is parser else argparse.SUPPRESS,
            help="the pipeline of RTARF_PIPELINES_FILE to act on (default: `default`, or the only one)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run one command, and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    commands.use_pipeline(args.pipeline)
    if args.command is commands.cmd_sync:
        try:
            args.run = run_arguments(args)
        except ValueError as error:
            parser.error(str(error))
    try:
        return int(args.command(args))
    except ConfigError as error:
        commands.say(f"configuration error: {error}")
        return EXIT_CONFIG
    except CommandFailed as error:
        commands.say(str(error))
        return EXIT_FAILED
    except KeyboardInterrupt:
        commands.say("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): not a failure of the command.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
