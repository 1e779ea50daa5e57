#!/usr/bin/env bash
# Regenerate the hashed locks from the ranges: requirements.txt -> requirements.lock (the image),
# requirements-dev.txt -> requirements-dev.lock (tests, demo, benchmark). Run after changing either.
# pip-tools runs from a throwaway virtualenv so it never enters the project's own.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"${PYTHON:-python3}" -m venv "$tools"
"$tools/bin/pip" install -q 'pip-tools==7.6.*'
for name in requirements requirements-dev; do
    "$tools/bin/pip-compile" -q --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
        --output-file "$name.lock" "$name.txt"
done
