#!/usr/bin/env bash
# The test command: install what is missing (the browser and curl included), then run the whole suite against a
# throwaway PostgreSQL cluster and a single-node OpenSearch, both started (and
# stopped, also on failure or Ctrl-C) by the pytest fixtures.
# Extra arguments go to pytest, e.g. scripts/test.sh -k conformance
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --tests
exec .venv/bin/python -m pytest "$@"
