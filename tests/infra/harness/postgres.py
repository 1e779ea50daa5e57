"""A throwaway PostgreSQL cluster on 127.0.0.1, from the installed server binaries."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.infra.harness.process import EngineStartError, free_port, log_tail, run_as, say, spawn, stop

_SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/usr/pgsql-*/bin")


def find_bindir() -> Path:
    """Return the newest directory holding initdb and postgres, or fail clearly."""
    candidates = sorted(
        (Path(d) for pattern in _SEARCH for d in glob.glob(pattern)),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")],
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    raise EngineStartError(
        "PostgreSQL server binaries (initdb, postgres) not found; "
        "install them with: apt-get install -y postgresql (scripts/install-deps.sh does this)"
    )


class PostgresCluster:
    """One throwaway cluster; `start()` returns after it accepts connections."""

    def __init__(
        self, *, durable: bool = False, base_dir: Path | None = None, options: dict[str, str] | None = None
    ) -> None:
        self.durable = durable
        self.options = dict(options or {})
        self.base_dir = base_dir
        self.port = 0
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._user = "postgres" if os.geteuid() == 0 else None

    @property
    def log_path(self) -> Path:
        assert self.root is not None
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of `database` on this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> "PostgresCluster":
        """Create the cluster in a temporary folder and start the server."""
        bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="rtarf-pg-", dir=self.base_dir))
        if self._user:
            shutil.chown(self.root, self._user, self._user)
        say(f"PostgreSQL: initdb with {bindir} in {self.root}")
        self._initdb(bindir)
        self.port = free_port()
        argv = [
            str(bindir / "postgres"),
            "-D",
            str(self.root / "data"),
            "-p",
            str(self.port),
            "-k",
            str(self.root),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
        ]
        options = {} if self.durable else {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        for name, value in {**options, **self.options}.items():
            argv += ["-c", f"{name}={value}"]
        self.process = spawn(argv, self.log_path, user=self._user)
        self._wait_ready()
        say(f"PostgreSQL: ready on 127.0.0.1:{self.port}")
        return self

    def _initdb(self, bindir: Path) -> None:
        assert self.root is not None
        result = run_as(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.root / "data"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            user=self._user,
        )
        if result.returncode != 0:
            raise EngineStartError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                message = f"PostgreSQL exited with {self.process.returncode}; log tail:\n{log_tail(self.log_path)}"
                self.stop()
                raise EngineStartError(message)
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", connect_timeout=2
                ):
                    return
            except psycopg.OperationalError:
                time.sleep(0.2)
        raise EngineStartError(f"PostgreSQL not ready after {timeout}s; log tail:\n{log_tail(self.log_path)}")

    def create_database(self, name: str) -> str:
        """Create (or recreate) a database and return its SQLAlchemy URL."""
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        if self.process is not None:
            stop(self.process, signal.SIGINT)
            self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            say("PostgreSQL: stopped and removed")

    def __enter__(self) -> "PostgresCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
