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

# What the tests need beyond Python: a JDK and Maven (the local Kafka and Zipkin are assembled
# from Maven Central) and Chromium (the browser test opens a trace in Zipkin's UI). Installed from
# the distribution's packages when absent and this runs as root with apt-get; otherwise each
# missing tool is named with what it costs.
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
say() { echo "deploy/dev.sh: $*" >&2; }
apt_ready=""
apt_install() {  # apt_install PACKAGE...: true if installed
    can_apt || return 1
    say "installing $* from the distribution's packages (apt-get install -y $*)"
    if [ -z "$apt_ready" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
        apt_ready=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_test_tools() {
    if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
        if ! apt_install default-jdk-headless maven; then
            say "no JDK or Maven, and they cannot be installed here (not root, no apt-get, or" \
                "the install failed): the tests marked 'kafka' fail unless a broker already" \
                "answers on ${LISA_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
        fi
    fi
    # The container test builds the image from a debootstrapped Debian and runs it with podman
    # on the runc runtime (crun refuses hybrid cgroups).
    if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 \
        || ! command -v debootstrap >/dev/null 2>&1; then
        if ! apt_install podman runc debootstrap; then
            say "podman, runc or debootstrap absent and not installable here: SKIPPED:" \
                "tests/integration/test_container.py (install them with:" \
                "sudo apt-get install podman runc debootstrap)"
        fi
    fi
    if ! command -v chromium >/dev/null 2>&1; then
        if ! apt_install chromium; then
            say "Chromium absent and not installable here (not root, no apt-get, or the install" \
                "failed): SKIPPED: the browser test" \
                "tests/integration/test_tracing_backend.py::test_zipkin_ui_shows_the_trace_of_a_segment" \
                "(install it with: sudo apt-get install chromium)"
        fi
    fi
}

cmd="${1:-}"; shift || true
case "$cmd" in
    demo) exec .venv/bin/lisa-choreo demo "$@" ;;
    test) ensure_test_tools; exec .venv/bin/pytest "$@" ;;
    *) echo "usage: bash deploy/dev.sh demo|test [args...]" >&2; exit 2 ;;
esac
