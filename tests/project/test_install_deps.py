"""What each make command installs: the demo and the benchmark no browser, the tests everything they use.

Each command's script calls scripts/install-deps.sh; that call is run here with
`--list`, which prints the Debian packages it would install and installs nothing.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE = {"postgresql", "default-jre-headless", "maven"}
TESTS_ONLY = {"curl", "chromium", "chromium-driver"}


def installs(script: str) -> set[str]:
    """The Debian packages the install call of `script` (a file of scripts/) asks for."""
    calls = re.findall(r"^scripts/install-deps\.sh\b(.*)$", (ROOT / "scripts" / script).read_text(), re.M)
    assert len(calls) == 1, f"scripts/{script} should call scripts/install-deps.sh once: {calls}"
    argv = [str(ROOT / "scripts" / "install-deps.sh"), *shlex.split(calls[0]), "--list"]
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return set(completed.stdout.split())


@pytest.mark.parametrize("script", ["demo.sh", "bench.sh"])
def test_the_demo_and_the_benchmark_install_no_browser(script: str) -> None:
    assert installs(script) == SERVICE


@pytest.mark.parametrize("script", ["test.sh", "screenshot.sh"])
def test_the_tests_install_everything_they_use(script: str) -> None:
    assert installs(script) == SERVICE | TESTS_ONLY


def test_make_runs_those_scripts() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target, script in [("demo", "demo"), ("test", "test"), ("bench", "bench"), ("screenshot", "screenshot")]:
        assert re.search(rf"^{target}:\n\tscripts/{script}\.sh$", makefile, re.M), target


def test_an_unknown_option_installs_nothing() -> None:
    completed = subprocess.run(
        [str(ROOT / "scripts" / "install-deps.sh"), "--browser"], capture_output=True, text=True, timeout=30
    )
    assert completed.returncode == 2 and "unknown option: --browser" in completed.stderr
