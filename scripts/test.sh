#!/usr/bin/env bash
# The test command: install what is missing (the browser and curl included), then run the whole suite against a
# throwaway PostgreSQL cluster and a single-node OpenSearch, both started (and
# stopped, also on failure or Ctrl-C) by the pytest fixtures.
# The static checks (scripts/check.sh) run first. Extra arguments go to pytest, e.g. scripts/test.sh -k conformance
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --tests
scripts/check.sh  # ruff and mypy first: a finding fails the run before the engines start
exec .venv/bin/python -m pytest "$@"
