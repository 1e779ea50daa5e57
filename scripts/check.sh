#!/usr/bin/env bash
# The static checks: ruff's lint rules and formatting, and mypy (strict on rtarf_sync.engine), all
# configured in pyproject.toml. Exits non-zero on any finding; runs all of them either way,
# so one run shows every finding.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/ruff check . || status=1
.venv/bin/ruff format --check . || status=1
.venv/bin/mypy || status=1
exit "$status"
