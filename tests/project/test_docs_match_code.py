"""The README, the docs pages, the Dockerfile and docker-compose.yml stay true to the code.

Every variable config/ reads is documented in docs/configuration.md with the
default it really has, every route the app registers has a curl example in
docs/http-api.md, every CLI command is listed in docs/cli.md, and neither the
documentation nor the deployment files name a variable the service does not read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import load_settings
from rtarf_sync import create_app
from rtarf_sync.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
HTTP_API = (ROOT / "docs" / "http-api.md").read_text()
CLI = (ROOT / "docs" / "cli.md").read_text()
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFIG = "\n".join(path.read_text() for path in sorted((ROOT / "config").glob("*.py")))
TEST_ONLY = {"RTARF_TEST_DATABASE_URL", "RTARF_TEST_OPENSEARCH_URL", "RTARF_CACHE_DIR"}
_ROW = re.compile(r"^\| `(RTARF_[A-Z_]+|PORT)` \| `([^`]+)` \|", re.MULTILINE)


def config_variables() -> set[str]:
    """Every variable name config/ reads."""
    return set(re.findall(r'"(RTARF_[A-Z_]+|PORT)"', CONFIG))


def test_config_reads_the_variables_this_test_knows_of() -> None:
    names = config_variables()
    assert {"RTARF_ES_URL", "RTARF_SYNC_READ_MODE", "RTARF_LEASE_TTL_SECONDS", "PORT"} <= names
    assert len(names) >= 28


def test_configuration_page_documents_every_variable_config_reads() -> None:
    missing = sorted(name for name in config_variables() if f"`{name}`" not in CONFIGURATION)
    assert not missing, f"docs/configuration.md does not document: {missing}"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_documentation_names_no_variable_that_nothing_reads(path: Path) -> None:
    unknown = set(re.findall(r"RTARF_[A-Z_]*[A-Z]", path.read_text())) - config_variables() - TEST_ONLY
    assert not unknown, f"{path.relative_to(ROOT)} names variables nothing reads: {sorted(unknown)}"


def test_documented_defaults_are_the_real_defaults() -> None:
    rows = _ROW.findall(CONFIGURATION)
    assert len(rows) >= 22  # every row whose default is a value, not "none"
    defaults = load_settings({})
    for name, default in rows:
        assert load_settings({name: default}) == defaults, (
            f"documented default of {name} ({default}) is not the default"
        )


def test_http_api_page_shows_every_route_with_curl() -> None:
    app = create_app(load_settings({}))
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]
    assert len(rules) >= 8
    for rule in rules:
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            assert f"## `{method} {rule.rule}`" in HTTP_API or f"`{method} {rule.rule}`" in HTTP_API, (method, rule)
        assert f"http://localhost:8000{rule.rule}" in HTTP_API, f"no curl example for {rule.rule}"


def test_first_screen_gives_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:15])
    assert "make demo" in first_screen and "make test" in first_screen
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:\n\tscripts/demo\.sh$", makefile, re.MULTILINE)
    assert re.search(r"^test:\n\tscripts/test\.sh$", makefile, re.MULTILINE)


def test_cli_page_lists_every_cli_command() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]  # argparse's own fields
    assert set(commands) >= {"init-db", "sync", "status", "load-sample"}
    for command in commands:
        assert f"| `{command}` |" in CLI, f"docs/cli.md does not list the {command} command"


@pytest.mark.parametrize("name", ["docker-compose.yml", "Dockerfile", ".env.example"])
def test_deployment_files_name_only_variables_the_service_reads(name: str) -> None:
    text = (ROOT / name).read_text()
    unknown = set(re.findall(r"RTARF_[A-Z_]*[A-Z]", text)) - config_variables()
    assert not unknown, f"{name} names variables nothing reads: {sorted(unknown)}"


def test_compose_wires_the_service_to_both_engines() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "RTARF_ES_URL: http://elasticsearch:9200" in compose
    assert re.search(
        r"RTARF_DATABASE_URL: postgresql\+psycopg://rtarf:\$\{POSTGRES_PASSWORD[^}]*\}@postgres:5432/rtarf", compose
    )
    assert compose.count("condition: service_healthy") >= 3 and compose.count("healthcheck:") >= 2


def test_dockerfile_runs_gunicorn_as_a_non_root_user_with_a_health_check() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "pip install --require-hashes -r requirements.lock" in dockerfile and "\nUSER rtarf\n" in dockerfile
    assert 'CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]' in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile and "EXPOSE 8000" in dockerfile
