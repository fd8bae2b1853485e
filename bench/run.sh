#!/usr/bin/env bash
# Benchmark tidegate against its peers on loopback (see bench/README.md).
#
#   bash bench/run.sh [run.py options]      e.g. bash bench/run.sh --rounds 3
#   make bench                              (options through BENCH_ARGS="--rounds 3")
#
# Installs what it needs (wrk, nginx, libev-dev, a virtualenv bench/.venv with gunicorn,
# granian, bjoern, matplotlib and tidegate built with the full fat-LTO release profile), then
# runs bench/run.py: every scenario, interleaved rounds (BENCH_ROUNDS, BENCH_SECONDS ...).
# Every step is bounded by a timeout. A peer that fails to install is reported by run.py as
# "not available" with the reason; only a missing wrk or Python stops the run.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="${BENCH_VENV:-$HERE/.venv}"
RESULTS="$HERE/results"
LOG="$RESULTS/install.log"   # every step's output, appended
STEP_LOG="$RESULTS/install-step.log"  # the current step's output only
STATUS="$RESULTS/install-status.tsv"
# Time limits (seconds) for each install step.
APT_TIMEOUT="${BENCH_APT_TIMEOUT:-900}"
PIP_TIMEOUT="${BENCH_PIP_TIMEOUT:-600}"
BUILD_TIMEOUT="${BENCH_BUILD_TIMEOUT:-2400}"

mkdir -p "$RESULTS"
: >"$LOG"
: >"$STATUS"
started=$SECONDS

say() { printf '[bench] %s\n' "$*" >&2; }
# Record a component that could not be installed: run.py reports it as "not available".
unavailable() { printf '%s\t%s\n' "$1" "$2" >>"$STATUS"; say "$1 not available: $2"; }
# Run one install step: its output goes to STEP_LOG (for the reason) and to LOG.
step() {
    "$@" >"$STEP_LOG" 2>&1
    local rc=$?
    cat "$STEP_LOG" >>"$LOG"
    return $rc
}
# The last meaningful lines of the current step's output, on one line, for a reason.
log_tail() { grep -v '^\s*$' "$STEP_LOG" | tail -n "${1:-3}" | tr '\n' ' ' | cut -c1-300; }
# The first error a cargo/maturin build printed, with the two lines after it.
build_error() {
    grep -v '^\s*$' "$STEP_LOG" |
        grep -v -e 'subprocess-exited-with-error' -e 'metadata-generation-failed' -e 'failed-wheel-build' |
        grep -m1 -A2 -E '^\s*(error(\[E[0-9]+\])?:|💥)' | sed 's/^\s*//' | tr '\n' ' ' | cut -c1-300
}

# --- system packages -------------------------------------------------------------------
apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        say "apt-get not found; cannot install $*"
        return 1
    fi
    if [ "$(id -u)" != 0 ]; then
        say "not root; cannot apt-get install $*"
        return 1
    fi
    if [ "$apt_updated" = 0 ]; then
        say "apt-get update"
        timeout "$APT_TIMEOUT" apt-get update -qq >>"$LOG" 2>&1 || say "apt-get update failed (see $LOG)"
        apt_updated=1
    fi
    say "apt-get install $*"
    # As the Makefile's system-deps does: a policy-rc.d guard keeps apt from starting the
    # packages' system services (nginx would take port 80).
    local guard="" rc
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
    fi
    DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT" \
        apt-get install -y -qq --no-install-recommends "$@" >>"$LOG" 2>&1
    rc=$?
    [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
    return $rc
}

if ! command -v wrk >/dev/null 2>&1; then
    apt_install wrk || true
fi
if ! command -v wrk >/dev/null 2>&1; then
    say "wrk is missing and could not be installed (see $LOG); cannot benchmark"
    exit 1
fi
# bjoern is a C extension over libev: it needs ev.h, a C compiler and Python's headers
# (gcc also builds bench/floor.c); nginx is the reference of the file scenario.
need=()
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need+=(nginx)
[ -e /usr/include/ev.h ] || need+=(libev-dev)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
if [ "${#need[@]}" -gt 0 ]; then
    apt_install "${need[@]}" || say "could not install ${need[*]} (bjoern, nginx or the floor may be missing)"
fi
if ! [ -x /usr/sbin/nginx ] && ! command -v nginx >/dev/null 2>&1; then
    unavailable nginx "nginx is not installed and could not be (see $LOG)"
fi

# --- Python 3.11 and the virtualenv -----------------------------------------------------
pick_python() {
    local candidate
    for candidate in ${BENCH_PYTHON:-} python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    # No 3.11: take python3 anyway, run.py records the version it ran on.
    command -v python3 >/dev/null 2>&1 && echo python3
}
PY="$(pick_python)"
if [ -z "$PY" ]; then
    say "no python3 found"
    exit 1
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "creating $VENV with $("$PY" --version 2>&1)"
    rm -rf "$VENV"
    if ! "$PY" -m venv "$VENV" >>"$LOG" 2>&1; then
        # Debian's python3 needs python3-venv (and python3-dev for bjoern's headers).
        apt_install python3-venv python3-dev || true
        rm -rf "$VENV"
        "$PY" -m venv "$VENV" >>"$LOG" 2>&1 || {
            say "cannot create a virtualenv (see $LOG)"
            exit 1
        }
    fi
    timeout "$PIP_TIMEOUT" "$VENV/bin/python" -m pip install -q --upgrade pip >>"$LOG" 2>&1 ||
        say "pip upgrade failed; going on with the bundled pip"
fi
VPY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# --- the peers --------------------------------------------------------------------------
for pkg in gunicorn granian bjoern matplotlib; do
    if "$VPY" -c "import $pkg" >/dev/null 2>&1; then
        continue
    fi
    say "pip install $pkg"
    if ! step timeout "$PIP_TIMEOUT" "$VPY" -m pip install -q "$pkg"; then
        unavailable "$pkg" "pip install $pkg failed: $(log_tail 3)"
    elif ! step "$VPY" -c "import $pkg"; then
        unavailable "$pkg" "installed but does not import: $(log_tail 2)"
    fi
done

# --- tidegate, full release profile (fat LTO) -------------------------------------------
# Rebuilt only when its sources changed since the last build into this venv; BENCH_REBUILD=1
# forces it. A target directory of its own keeps compiled dependencies between builds
# without touching the fast profile that `make dev` builds into target/.
source_hash() {
    (cd "$ROOT" && find Cargo.toml Cargo.lock pyproject.toml build.rs src python -type f \
        ! -name '*.so' ! -name '*.pyc' -print0 2>/dev/null | sort -z | xargs -0 sha256sum) |
        sha256sum | cut -d' ' -f1
}
HASH_FILE="$VENV/.tidegate-source-hash"
want="$(source_hash)"
have="$(cat "$HASH_FILE" 2>/dev/null || true)"
if [ "${BENCH_REBUILD:-0}" != 1 ] && [ "$want" = "$have" ] &&
    "$VPY" -c 'import tidegate._tidegate' >/dev/null 2>&1; then
    say "tidegate is up to date in $VENV"
elif ! command -v cargo >/dev/null 2>&1; then
    unavailable tidegate "cargo (Rust toolchain) not found, cannot build"
else
    say "building tidegate (release profile, fat LTO) from $ROOT; this takes a few minutes"
    rm -f "$HASH_FILE"
    build_start=$SECONDS
    # The profile comes from Cargo.toml alone: drop any CARGO_PROFILE_RELEASE_* override
    # (the fast no-LTO settings `make dev` uses) that the caller's environment may carry.
    unset_profile=()
    while IFS='=' read -r var _; do
        case "$var" in CARGO_PROFILE_RELEASE_*) unset_profile+=(-u "$var") ;; esac
    done < <(env)
    if step env "${unset_profile[@]}" CARGO_TARGET_DIR="$ROOT/target/bench" \
        timeout "$BUILD_TIMEOUT" "$VPY" -m pip install -v --no-deps --force-reinstall "$ROOT"; then
        if step "$VPY" -c 'import tidegate._tidegate'; then
            echo "$want" >"$HASH_FILE"
            say "tidegate built in $((SECONDS - build_start)) s"
        else
            unavailable tidegate "built but does not import: $(log_tail 2)"
        fi
    else
        reason="$(build_error)"
        unavailable tidegate "pip install $ROOT failed after $((SECONDS - build_start)) s: ${reason:-$(log_tail 3)}"
    fi
fi

say "setup took $((SECONDS - started)) s"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of options on purpose
exec "$VPY" "$HERE/run.py" --install-status "$STATUS" ${BENCH_ARGS:-} "$@"
