#!/usr/bin/env bash
# Screenshots of the status page for the README and for reviewers: the browser tests run against
# a real gunicorn, PostgreSQL and OpenSearch, and keep their PNGs in docs/ (light, dark, phone width).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --tests
mkdir -p docs
STATUS_PAGE_SCREENSHOTS=docs exec .venv/bin/python -m pytest -q tests/e2e/test_status_page.py "$@"
