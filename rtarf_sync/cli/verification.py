"""The `verify` and `cursor` commands: verification, self-repair and cursor control without the server.

    python -m rtarf_sync verify [--from ISO] [--to ISO] [--bucket 1h|1d] [--repair]
    python -m rtarf_sync cursor show | set ISO [--force] | reset

`verify` prints the same JSON as POST /scheduler/verify and exits 0 when in
step (after its repairs, with --repair), 1 when not, 3 when a run of another
process holds the lease. `cursor` prints the same JSON as GET/PUT /scheduler/cursor.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from rtarf_sync.cli.commands import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SKIPPED,
    PROG,
    CommandFailed,
    _logging,
    _settings,
    database_hint,
    engine_hint,
    say,
)
from rtarf_sync.engine.runs.cursor import CursorControl, CursorRefused
from rtarf_sync.engine.errors import RtarfSyncError, redact
from rtarf_sync.engine.runs.lease import LeaseHeld
from rtarf_sync.engine.checks.repair import verify_and_repair
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.checks.verify import WindowError

_VERIFY_HELP = """\
Compare, per UTC bucket of the cursor field, how many documents the engine holds (one date_histogram
aggregation over RTARF_ES_INDEX) with how many live rows RTARF_TABLE holds (one SQL query), plus the
documents without the cursor field on both sides. Reads no documents. Default window: the last
RTARF_VERIFY_LOOKBACK_HOURS ending at now minus settle minus overlap (never past the stored cursor).
With --repair, every differing bucket is re-read by a range run (trigger "repair"), then the window
is verified again ("after_repair").
exit status: 0 in step (after the repairs, with --repair), 1 not in step or failed,
3 skipped because another process holds the lease"""

_CURSOR_HELP = """\
show   print the stored cursor of (RTARF_ES_INDEX, RTARF_TABLE)
set    store another cursor. An earlier one means re-reading (re-read events count as unchanged);
       a later one could skip events and is refused unless --force; one in the future always is.
reset  forget the cursor: the next incremental run reads the whole history
Refused while a sync holds the lease (exit 3)."""


def _instant(text: str) -> datetime:
    """An ISO-8601 argument; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time such as 2026-01-31T00:00:00Z") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `verify` and `cursor` to the command-line parser."""
    verify = sub.add_parser(
        "verify",
        help="compare per-bucket counts of the engine and PostgreSQL (and repair)",
        description=_VERIFY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.set_defaults(command=cmd_verify)
    verify.add_argument("--from", dest="start", type=_instant, metavar="ISO", help="window start (inclusive)")
    verify.add_argument("--to", dest="end", type=_instant, metavar="ISO", help="window end (exclusive)")
    verify.add_argument("--bucket", choices=("1h", "1d"), help="bucket width (default 1h)")
    verify.add_argument("--repair", action="store_true", help="re-read every differing bucket with a range run")
    cursor = sub.add_parser(
        "cursor",
        help="show, set or reset the stored cursor",
        description=_CURSOR_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cursor.set_defaults(command=cmd_cursor)
    action = cursor.add_subparsers(dest="action", metavar="ACTION", required=True)
    action.add_parser("show", help="print the stored cursor")
    setter = action.add_parser("set", help="store a cursor (a later one needs --force)")
    setter.add_argument("value", type=_instant, metavar="ISO")
    setter.add_argument("--force", action="store_true", help="accept a cursor later than the stored one")
    action.add_parser("reset", help="forget the cursor: the next run reads the whole history")


def _run(service: SyncService, work: Any) -> Any:
    """Run `work()`, turning the failures every command shares into one line and an exit status."""
    settings = service.settings
    try:
        return work()
    except LeaseHeld as held:
        say(f"skipped: {held}; try again when that run ends")
        raise SystemExit(EXIT_SKIPPED) from None
    except RtarfSyncError as error:
        raise CommandFailed(engine_hint(settings, redact(str(error), service.secrets()))) from None
    except sa.exc.SQLAlchemyError as error:
        first = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise CommandFailed(database_hint(settings, redact(first, service.secrets()))) from None


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify (and repair), print the answer as JSON, exit 0 when in step."""
    settings = _settings()
    _logging(settings)
    service = SyncService(settings)
    try:
        answer = _run(
            service,
            lambda: verify_and_repair(
                service, start=args.start, end=args.end, bucket=args.bucket, repair_drift=args.repair, trigger="cli"
            ),
        )
    except WindowError as error:
        raise CommandFailed(f"--{'from' if error.field == 'from' else error.field}: {error}") from None
    finally:
        service.close()
    print(json.dumps(answer, indent=2), flush=True)
    final = answer["after_repair"] or answer
    if answer["unrepaired"]:
        say(
            f"{len(answer['unrepaired'])} bucket(s) left unrepaired (over RTARF_VERIFY_MAX_REPAIRS="
            f"{settings.verify.max_repairs}, or a run took the lease); repeat to repair them"
        )
    if not final["in_step"]:
        say(
            f"not in step: {len(final['differing'])} bucket(s) differ"
            + ("" if args.repair else f"; `{PROG} verify --repair` re-reads them")
        )
    return EXIT_OK if final["in_step"] else EXIT_FAILED


def cmd_cursor(args: argparse.Namespace) -> int:
    """Show, set or reset the stored cursor and print it as JSON."""
    settings = _settings()
    _logging(settings)
    service = SyncService(settings)
    control = CursorControl(service)
    try:
        if args.action == "show":
            answer = _run(service, control.show)
        else:
            wanted = args.value if args.action == "set" else None
            answer = _run(service, lambda: control.set(wanted, force=getattr(args, "force", False)))
    except CursorRefused as refused:
        raise CommandFailed(f"cursor not changed: {refused}".replace('Send "force": true', "Pass --force")) from None
    finally:
        service.close()
    print(json.dumps(answer, indent=2), flush=True)
    return EXIT_OK
