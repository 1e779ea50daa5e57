"""Commands over the service's records: `runs` (the run history) and `dead-letters list|show|replay`.

They read and write PostgreSQL directly, like `status`; `dead-letters replay`
takes the lease like a sync, so it waits for nothing and skips (exit 3) while
another run holds it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable, TypeVar

import sqlalchemy as sa

from rtarf_sync.cli.commands import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SKIPPED,
    CommandFailed,
    _first_line,
    _logging,
    _settings,
    database_hint,
    say,
)
from rtarf_sync.engine.checks.dead_letters import DeadLetters
from rtarf_sync.engine.runs.history import RunFilter, list_runs
from rtarf_sync.engine.checks.replay import DeadLetterReplay
from rtarf_sync.engine.runs.result import FAILED, SKIPPED
from rtarf_sync.engine.runs.sync import SyncService

T = TypeVar("T")


def _with_service(work: Callable[[SyncService], T]) -> T:
    settings = _settings()
    service = SyncService(settings)
    try:
        service.ensure_tables()
        return work(service)
    except sa.exc.DBAPIError as error:
        raise CommandFailed(database_hint(settings, _first_line(error, service))) from None
    finally:
        service.close()


def _when(value: str | None) -> str:
    return (value or "-")[:19].replace("T", " ")


def format_runs(runs: list[dict[str, Any]]) -> str:
    """Run objects as a table, newest first, with each run's error under it."""
    if not runs:
        return "no runs recorded"
    lines = [
        f"{'id':>6}  {'trigger':<9}  {'mode':<11}  {'status':<8}  {'started (UTC)':<19}  {'secs':>7}  "
        f"{'processed':>9}  {'inserted':>8}  {'updated':>8}  {'deleted':>7}  {'set aside':>9}"
    ]
    for run in runs:
        seconds = f"{run['duration_seconds']:.1f}" if run["duration_seconds"] is not None else "-"
        lines.append(
            f"{run['run_id']:>6}  {run['trigger']:<9}  {run['mode']:<11}  {run['status']:<8}  "
            f"{_when(run['started_at']):<19}  {seconds:>7}  {run['total_processed']:>9,}  "
            f"{run['inserted']:>8,}  {run['updated']:>8,}  {run['deleted']:>7,}  {run['failed']:>9,}"
        )
        if run["error"]:
            lines.append(f"{'':>8}error: {run['error']}")
    return "\n".join(lines)


def cmd_runs(args: argparse.Namespace) -> int:
    """Print the run history, newest first, as a table or JSON."""
    page = _with_service(
        lambda service: list_runs(
            service.engine, service.tables, args.limit, args.before, RunFilter(args.status, args.trigger, args.mode)
        )
    )
    if args.json:
        print(json.dumps({"runs": page.runs, "next_before": page.next_before}, indent=2))
    else:
        print(format_runs(page.runs))
        if page.next_before is not None:
            print(f"older runs: --before {page.next_before}")
    return EXIT_OK


def format_dead_letters(items: list[dict[str, Any]], unresolved: int) -> str:
    """Dead letters as a table, newest first, and the unresolved count."""
    lines = [f"{unresolved:,} unresolved"]
    if items:
        lines.append(
            f"{'id':>6}  {'created (UTC)':<19}  {'resolved':<8}  {'run':>6}  {'index':<24}  {'document id':<24}  reason"
        )
    for item in items:
        lines.append(
            f"{item['id']:>6}  {_when(item['created_at']):<19}  "
            f"{'yes' if item['resolved_at'] else 'no':<8}  {item['run_id'] or '-':>6}  "
            f"{item['es_index'][:24]:<24}  {item['es_id'][:24]:<24}  {item['reason']}"
        )
    return "\n".join(lines)


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List, show or replay dead letters."""
    if args.action == "list":
        page = _with_service(
            lambda service: DeadLetters(service.engine, service.tables).page(
                args.limit, args.before, args.reason, False if args.unresolved else None
            )
        )
        print(
            json.dumps(
                {"dead_letters": page.items, "unresolved": page.unresolved, "next_before": page.next_before}, indent=2
            )
            if args.json
            else format_dead_letters(page.items, page.unresolved)
        )
        return EXIT_OK
    if args.action == "show":
        if len(args.ids) != 1:
            raise CommandFailed("dead-letters show takes exactly one ID")
        found = _with_service(lambda service: DeadLetters(service.engine, service.tables).get(args.ids[0]))
        if found is None:
            raise CommandFailed(f"no dead letter {args.ids[0]}; `dead-letters list` shows their ids")
        print(json.dumps(found, indent=2))
        return EXIT_OK
    return _replay(args)


def _replay(args: argparse.Namespace) -> int:
    _logging(_settings())
    outcome = _with_service(lambda service: DeadLetterReplay(service).run(args.ids or None))
    print(json.dumps(outcome.to_dict(), indent=2))
    if outcome.result.status == SKIPPED:
        say(f"skipped: {outcome.result.error}; try again when that run ends")
        return EXIT_SKIPPED
    return EXIT_FAILED if outcome.result.status == FAILED else EXIT_OK
