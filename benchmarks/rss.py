"""Resident memory of the current process, from /proc/self/status (Linux)."""

from __future__ import annotations

from pathlib import Path


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (VmHWM), in MB (10^6 bytes).

    VmHWM belongs to this process's own address space, so unlike ru_maxrss it
    never inherits the parent's high-water mark across fork and exec.
    """
    return _status_kb("VmHWM") * 1024 / 1e6


def current_rss_mb() -> float:
    """Resident set size right now (VmRSS), in MB (10^6 bytes)."""
    return _status_kb("VmRSS") * 1024 / 1e6
