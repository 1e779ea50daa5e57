"""The hashed locks agree with the ranges they were compiled from, and hold no known-vulnerable urllib3.

`scripts/lock.sh` writes requirements.lock and requirements-dev.lock from requirements.txt and
requirements-dev.txt; the installs (scripts/install-deps.sh, the Dockerfile) read only the locks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")]


def ranges(name: str) -> list[Requirement]:
    """The requirements a ranges file names, following `-r` includes."""
    found: list[Requirement] = []
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found += ranges(line[3:].strip())
        elif line:
            found.append(Requirement(line))
    return found


def pins(name: str) -> dict[str, tuple[Version, int]]:
    """Each locked package: its version and how many hashes it carries."""
    text = (ROOT / name).read_text()
    locked: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s\\;]+)", block)
        if match:
            locked[canonicalize_name(match[1])] = (Version(match[2]), block.count("--hash=sha256:"))
    return locked


@pytest.mark.parametrize(("source", "lock"), PAIRS)
def test_every_range_is_locked_within_it_with_hashes(source: str, lock: str) -> None:
    locked = pins(lock)
    assert locked, f"{lock} pins nothing"
    for requirement in ranges(source):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} of {source} is not in {lock}: run scripts/lock.sh"
        version, _ = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} pins {name}=={version}, outside {source}'s {requirement.specifier}: run scripts/lock.sh"
        )
    unhashed = sorted(name for name, (_, hashes) in locked.items() if hashes == 0)
    assert not unhashed, f"{lock} pins without hashes: {unhashed}"


def test_the_dev_lock_installs_the_same_runtime_versions_as_the_image() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    differ = {
        name: (str(runtime[name][0]), str(dev[name][0]))
        for name in runtime
        if name in dev and runtime[name][0] != dev[name][0]
    }
    assert not differ, f"the locks disagree on runtime packages: {differ}"


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_urllib3_is_past_cve_2025_66471(lock: str) -> None:
    version, _ = pins(lock)["urllib3"]
    assert version >= Version("2.6.0"), f"{lock} pins urllib3 {version}, affected by CVE-2025-66471"


def test_the_installs_read_only_the_locks() -> None:
    install = (ROOT / "scripts" / "install-deps.sh").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements-dev.lock" in install
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert not re.search(r"pip install[^\n]*-r requirements(-dev)?\.txt", install + dockerfile)
