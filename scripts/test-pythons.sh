#!/usr/bin/env bash
# Build tidegate for each CPython version named on the command line (found through pyenv)
# and run the end-to-end suite on it. A version pyenv does not have is reported and
# skipped; a version that fails to build or to pass fails the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for version in "$@"; do
    python=""
    if command -v pyenv >/dev/null 2>&1; then
        prefix=$(pyenv prefix "$(pyenv versions --bare | grep -E "^${version//./\\.}(\.[0-9]+)?$" | tail -1)" 2>/dev/null || true)
        if [ -n "$prefix" ] && [ -x "$prefix/bin/python" ]; then
            python="$prefix/bin/python"
        fi
    fi
    if [ -z "$python" ]; then
        missing+=("$version")
        continue
    fi
    venv=".venv-$version"
    echo "=== CPython $version ($python)"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q "maturin>=1.9.4,<2" "pytest>=7" pytest-timeout requests flask django prometheus-client
    VIRTUAL_ENV="$PWD/$venv" CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        "$venv/bin/maturin" develop --release -q
    "$venv/bin/python" -m pytest -q tests/python
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "not tested (pyenv has no such CPython): ${missing[*]}"
fi
