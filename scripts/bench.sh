#!/usr/bin/env bash
# The benchmark command: install what is missing, then load N sample events into
# a real OpenSearch node and measure the sync into a durable PostgreSQL cluster,
# against the read and write ceilings and a naive baseline (benchmarks/README.md).
#   scripts/bench.sh                      N=200000 events (or $N: make bench N=50000)
#   scripts/bench.sh --events 50000       the same, as an option
#   scripts/bench.sh --record             also write the results into benchmarks/README.md
# Other options: scripts/bench.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
.venv/bin/python -m benchmarks.bench "$@"
# Verification and self-repair (benchmarks/README.md): the same N, and --record when asked.
verify_args=(--events "$(printf '%s\n' "$@" | sed -n '/^--events$/{n;p;q}')")
[[ ${verify_args[1]} ]] || verify_args=()
[[ " $* " == *" --record "* ]] && verify_args+=(--record)
exec .venv/bin/python -m benchmarks.verification "${verify_args[@]}"
