"""CPU seconds spent by a process tree, from /proc (Linux).

Wall time on a shared two-core machine moves with whatever else runs; the CPU
time the sync's own processes use does not, much. For a running engine (the
OpenSearch JVM, the PostgreSQL postmaster and its backends) the total is the
process's own time, the time of its live descendants, and the time of the
descendants it has already reaped (a closed PostgreSQL connection).
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the state on; the name may hold spaces


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def tree_cpu_seconds(root: int) -> float:
    """User plus system CPU seconds of `root`, its reaped children and every live descendant."""
    fields = _stat(root)
    if fields is None:
        return 0.0
    # After ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    total = sum(int(value) for value in fields[11:15])
    pending = _children(root)
    while pending:
        pid = pending.pop()
        child = _stat(pid)
        if child is not None:
            total += sum(int(value) for value in child[11:15])
            pending.extend(_children(pid))
    return total / _TICK
