"""The compose files are valid Compose files, and deploy/compose/opensearch.yml is wired as it says.

Every file is validated against the Compose Specification's JSON schema, kept in
tests/fixtures/compose-spec.json (schema/compose-spec.json of github.com/compose-spec/compose-spec at
commit 170098ba07d9f53c383a41bfd4c5166b0a4529a6, Apache-2.0), the schema `docker compose` itself
applies. Where a `docker compose` (or `docker-compose`) client exists, `docker compose config`
checks the files too: it needs no Docker engine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from config import SECRET_FILE_VARIABLES

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "compose-spec.json").read_text())
OPENSEARCH_STACK = ROOT / "deploy" / "compose" / "opensearch.yml"
COMPOSE_FILES = [ROOT / "docker-compose.yml", OPENSEARCH_STACK]
# What .env.example asks for, with a token long enough to start.
ENV_FILE_VALUES = {"ELASTIC_PASSWORD": "elastic-secret", "POSTGRES_PASSWORD": "postgres-secret",
                   "RTARF_API_TOKEN": "compose-token-0123456789"}


def load(path: Path) -> dict[str, Any]:
    """The compose file as YAML data, before interpolation."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_the_compose_file_follows_the_compose_specification(path: Path) -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(load(path))


def test_the_schema_rejects_an_unknown_service_key() -> None:
    # The schema is strict: a misspelt key is an error, not ignored.
    data = load(OPENSEARCH_STACK)
    data["services"]["rtarf-sync"]["enviroment"] = {}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(data)


def test_the_opensearch_stack_starts_postgres_opensearch_and_the_service() -> None:
    services = load(OPENSEARCH_STACK)["services"]
    assert services.keys() == {"opensearch", "postgres", "rtarf-sync"}
    assert services["opensearch"]["image"].startswith("opensearchproject/opensearch:")
    assert services["postgres"]["image"].startswith("postgres:")
    service = services["rtarf-sync"]
    assert (OPENSEARCH_STACK.parent / service["build"] / "Dockerfile").is_file()
    assert service["depends_on"] == {"opensearch": {"condition": "service_healthy"},
                                     "postgres": {"condition": "service_healthy"}}
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


def compose_client() -> list[str] | None:
    """The command of a Compose client on this machine: `docker compose`, else `docker-compose`."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                 check=False).returncode == 0:
        return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


@pytest.mark.skipif(compose_client() is None, reason="no `docker compose` client on this machine; the schema "
                                                     "tests above check the files without it")
@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_docker_compose_config_accepts_the_file(path: Path, tmp_path: Path) -> None:
    client = compose_client()
    assert client is not None
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in ENV_FILE_VALUES.items()))
    result = subprocess.run([*client, "-f", str(path), "--env-file", str(env_file), "config", "--quiet"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
