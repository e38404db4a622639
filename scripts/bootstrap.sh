#!/usr/bin/env bash
# Fresh-machine set-up shared by `make demo` and `make test`:
#   1. the Debian packages the README names (installed when running as root;
#      XINFANG_BOOTSTRAP_TESTS=1 adds what only the tests need),
#   2. a virtualenv in .venv with the locked dependencies (uv.lock),
#   3. build-time steps: the dbt manifest and Airflow's metadata database.
# Safe to run again: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=

PYTHON=${PYTHON:-python3.11}
UV_VERSION=0.13.8
DEBIAN_PACKAGES=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 poppler-utils)
# The test suite starts a real OpenSSH server on loopback for the SFTP delivery tests.
if [[ ${XINFANG_BOOTSTRAP_TESTS:-} == 1 ]]; then
    DEBIAN_PACKAGES+=(openssh-server openssh-client)
fi

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "bootstrap: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "bootstrap: missing Debian packages: ${missing[*]} (install them: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

command -v "$PYTHON" >/dev/null || { echo "bootstrap: $PYTHON not found; Python 3.11 is required" >&2; exit 1; }
if [[ ! -x .venv/bin/python ]]; then
    echo "bootstrap: creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/uv --version 2>/dev/null | grep -q "$UV_VERSION"; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
# --frozen: install exactly what uv.lock says; never re-resolve on a user's machine.
UV_PROJECT_ENVIRONMENT=.venv .venv/bin/uv sync --frozen --quiet

.venv/bin/xinfang setup
