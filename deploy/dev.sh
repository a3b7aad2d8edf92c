#!/usr/bin/env bash
# The README's two commands:  bash deploy/dev.sh demo   |   bash deploy/dev.sh test
# Creates .venv with Python 3.12 and installs the project (again only when pyproject.toml changed),
# then runs the main job or the tests. The tests start the Kafka broker themselves when none runs.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
    local candidates=(python3.12)
    if command -v pyenv >/dev/null 2>&1; then
        candidates+=("$(pyenv root)"/versions/3.12*/bin/python3.12)
    fi
    for py in "${candidates[@]}"; do
        if "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
            echo "$py"; return 0
        fi
    done
    echo "deploy/dev.sh: Python 3.12 not found (install it, e.g. with pyenv)" >&2
    return 1
}

if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt .venv/.installed ]; then
    PY="$(find_python)"
    "$PY" -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e ".[dev,bench]"
    touch .venv/.installed
fi

cmd="${1:-}"; shift || true
case "$cmd" in
    demo) exec .venv/bin/lisa-choreo demo "$@" ;;
    test) exec .venv/bin/pytest "$@" ;;
    *) echo "usage: bash deploy/dev.sh demo|test [args...]" >&2; exit 2 ;;
esac
