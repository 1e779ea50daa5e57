"""The run a log line belongs to: a context variable set where a run starts and reset where it ends.

Threads a run starts copy the context (`contextvars.copy_context().run` as their target), so
their lines name the run too; the JSON log format writes it as run_id, pipeline, trigger and mode.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Iterator, Protocol

from config import DEFAULT_PIPELINE


class Run(Protocol):
    """What a run context reads from the run: SyncResult fits."""

    @property
    def run_id(self) -> int | None: ...

    @property
    def trigger(self) -> str: ...

    @property
    def mode(self) -> str: ...


@dataclass(frozen=True)
class RunContext:
    """One run and its pipeline; the id is read per line, since it is known only once the start is recorded."""

    run: Run
    pipeline: str = DEFAULT_PIPELINE

    def fields(self) -> dict[str, object]:
        """The fields every log line of this run carries."""
        return {
            "run_id": self.run.run_id,
            "pipeline": self.pipeline,
            "trigger": self.run.trigger,
            "mode": self.run.mode,
        }


_current: ContextVar[RunContext | None] = ContextVar("rtarf_run", default=None)


def enter_run(run: Run, pipeline: str = DEFAULT_PIPELINE) -> Token[RunContext | None]:
    """Make `run` the current run of this context; give the token to leave_run when it ends."""
    return _current.set(RunContext(run, pipeline))


def leave_run(token: Token[RunContext | None]) -> None:
    """End the run entered with `token`: lines written after it name no run (or the outer one)."""
    _current.reset(token)


@contextlib.contextmanager
def in_run(run: Run, pipeline: str = DEFAULT_PIPELINE) -> Iterator[None]:
    """Name `run` on the lines written inside the block (what happens after a run ends, about it)."""
    token = enter_run(run, pipeline)
    try:
        yield
    finally:
        leave_run(token)


def run_fields() -> dict[str, object] | None:
    """The current run's fields, or None outside a run."""
    current = _current.get()
    return current.fields() if current is not None else None
