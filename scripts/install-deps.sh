#!/usr/bin/env bash
# Install what the tests, the demo and the benchmark need, and nothing twice:
#   - the PostgreSQL server from Debian's packages, if no initdb is found
#   - Java and Maven from Debian's packages, if missing (OpenSearch runs in a JVM)
#   - curl, if missing (the tests run the README's curl examples)
#   - chromium and chromium-driver, if missing (the status page is tested in a headless browser)
#   - a virtualenv in .venv with requirements-dev.txt
# The OpenSearch jars are resolved by the test harness into ~/.cache/rtarf-sync.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[install] %s\n' "$*" >&2; }

need_apt=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    need_apt+=(postgresql)
fi
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)  # the README's curl examples are run as tests
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)  # the status page's browser tests
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)

if ((${#need_apt[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        say "missing: ${need_apt[*]}; run as root or: sudo apt-get install -y ${need_apt[*]}"
        exit 1
    fi
    say "installing from Debian's packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need_apt[@]}"
    # The Debian package starts a cluster of its own; the tests start theirs.
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters -h 2>/dev/null | while read -r version name _; do
            pg_ctlcluster "$version" "$name" stop 2>/dev/null || true
        done
    fi
fi

PYTHON=${PYTHON:-python3}
stamp=.venv/.requirements.sha
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    say "creating .venv with requirements-dev.txt"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r requirements-dev.txt
    echo "$want" > "$stamp"
else
    say ".venv is up to date"
fi
