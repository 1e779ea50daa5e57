"""Memory and CPU of the service's gunicorn processes while the demo makes it sync, for sizing a pod.

    .venv/bin/python -m benchmarks.footprint -- --events 50000 --duration 60 [other scripts/demo.py options]

Runs `scripts/demo.py` with the options after `--`, samples every gunicorn process it starts from /proc
twice a second, and prints per process and for the pod as a whole: the peak RSS (VmHWM), the CPU seconds
and the highest CPU rate over one-second windows (cores), as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.cpu import _TICK, _children, _stat

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SECONDS = 0.5
WINDOW_SAMPLES = 2  # one-second windows for the CPU rate


@dataclass
class Gunicorn:
    """What was seen of one gunicorn process."""

    role: str
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0


@dataclass
class Pod:
    """The gunicorn processes, and the pod-wide CPU seconds after each sample."""

    processes: dict[int, Gunicorn] = field(default_factory=dict)
    cpu_history: list[float] = field(default_factory=list)


def _status_kb(pid: int, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _is_gunicorn(pid: int) -> bool:
    try:
        return b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _descendants(root: int) -> list[int]:
    found, pending = [], _children(root)
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(_children(pid))
    return found


def sample(root: int, pod: Pod) -> None:
    """Read the RSS high-water mark and CPU time of every gunicorn process under `root`."""
    for pid in _descendants(root):
        fields = _stat(pid)
        if fields is None or not _is_gunicorn(pid):
            continue
        role = "worker" if _is_gunicorn(int(fields[1])) else "master"
        seen = pod.processes.setdefault(pid, Gunicorn(role))
        # VmHWM is the process's own peak, so a peak between two samples is not missed.
        seen.peak_rss_mb = max(seen.peak_rss_mb, _status_kb(pid, "VmHWM") * 1024 / 1e6)
        seen.cpu_seconds = (int(fields[11]) + int(fields[12])) / _TICK
    pod.cpu_history.append(sum(process.cpu_seconds for process in pod.processes.values()))


def report(pod: Pod) -> dict[str, object]:
    """The figures of the run: per process, and summed for the pod."""
    history = pod.cpu_history
    rates = [
        (history[i] - history[i - WINDOW_SAMPLES]) / (WINDOW_SAMPLES * SAMPLE_SECONDS)
        for i in range(WINDOW_SAMPLES, len(history))
    ]
    return {
        "processes": [
            {
                "pid": pid,
                "role": seen.role,
                "peak_rss_mb": round(seen.peak_rss_mb, 1),
                "cpu_seconds": round(seen.cpu_seconds, 2),
            }
            for pid, seen in sorted(pod.processes.items())
        ],
        "pod_peak_rss_mb": round(sum(seen.peak_rss_mb for seen in pod.processes.values()), 1),
        "pod_cpu_seconds": round(history[-1] if history else 0.0, 2),
        "pod_peak_cores_1s": round(max(rates, default=0.0), 2),
    }


def main(argv: list[str]) -> int:
    """Run the demo with `argv`, sample its gunicorn processes until it ends, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo_args", nargs="*", help="options for scripts/demo.py (after --)")
    args = parser.parse_args(argv)
    demo = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "demo.py"), *args.demo_args], cwd=ROOT)
    pod = Pod()
    while demo.poll() is None:
        sample(demo.pid, pod)
        time.sleep(SAMPLE_SECONDS)
    print(json.dumps(report(pod), indent=2))
    return demo.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
