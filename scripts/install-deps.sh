#!/usr/bin/env bash
# Install what is missing, and nothing twice. Each command asks only for what it needs:
#   scripts/install-deps.sh            the service, the demo and the benchmark:
#                                        - the PostgreSQL server, if no initdb is found
#                                        - Java and Maven (OpenSearch runs in a JVM; its jars come from Maven Central)
#                                        - a virtualenv in .venv from requirements-dev.lock (hashed)
#   scripts/install-deps.sh --tests    also what only the tests need:
#                                        - curl (the documented curl examples are run as tests)
#                                        - chromium and chromium-driver (the status page's browser tests, ~440 MB)
#   scripts/install-deps.sh --list     print the Debian packages of that set, one a line, and install nothing
# System packages come from Debian's archive and need root. The OpenSearch jars are resolved by the
# test harness into ~/.cache/rtarf-sync.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[install] %s\n' "$*" >&2; }

tests=0 list=0
for arg in "$@"; do
    case $arg in
        --tests) tests=1 ;;
        --list) list=1 ;;
        -h|--help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) say "unknown option: $arg (try --help)"; exit 2 ;;
    esac
done

wanted=(postgresql default-jre-headless maven)
((tests)) && wanted+=(curl chromium chromium-driver)
if ((list)); then
    printf '%s\n' "${wanted[@]}"
    exit 0
fi

# Whether the program a package provides is missing from this machine.
missing() {
    case $1 in
        postgresql) ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1 ;;
        default-jre-headless) ! command -v java >/dev/null 2>&1 ;;
        maven) ! command -v mvn >/dev/null 2>&1 ;;
        chromium-driver) ! command -v chromedriver >/dev/null 2>&1 ;;
        *) ! command -v "$1" >/dev/null 2>&1 ;;
    esac
}

need_apt=()
for package in "${wanted[@]}"; do
    if missing "$package"; then need_apt+=("$package"); fi
done

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
want=$(sha256sum < requirements-dev.lock | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    say "creating .venv from requirements-dev.lock"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q --require-hashes -r requirements-dev.lock
    echo "$want" > "$stamp"
else
    say ".venv is up to date"
fi
