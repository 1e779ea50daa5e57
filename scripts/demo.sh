#!/usr/bin/env bash
# make demo: the service doing its main job on this machine, no Docker needed.
# Installs what is missing (not the browser the tests use), starts a throwaway PostgreSQL and a single-node
# OpenSearch, loads sample events, runs the service under gunicorn on
# 127.0.0.1:8000 syncing every 5 s, and keeps adding events. Ctrl-C stops it all.
# Options go to scripts/demo.py, e.g. scripts/demo.sh --duration 60 --port 8001
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec .venv/bin/python scripts/demo.py "$@"
