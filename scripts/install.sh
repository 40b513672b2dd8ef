#!/usr/bin/env bash
# Creates .venv and installs rrpo into it, keeping torch at the CPU build 2.13.0.
# Usage: bash scripts/install.sh [--dev]
#
# Every version is pinned by constraints.txt (the lock of what CI resolved, applied through
# PIP_CONSTRAINT); pyproject.toml keeps ranges for people who install rrpo into their own
# environment. The script works with an empty pip cache (PIP_NO_CACHE_DIR=1), which is how CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
PY=${PYTHON:-python3}
step() { echo "install.sh: $*"; }
fail() { echo "install.sh: error: $*" >&2; exit 1; }

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || fail "rrpo needs Python >= 3.11 ($PY is $("$PY" -V 2>&1)); set PYTHON=/path/to/python3.11"
if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  "$PY" -m venv .venv || fail "could not create .venv (on Debian/Ubuntu: apt-get install python3-venv)"
fi
export PIP_CONSTRAINT="$PWD/constraints.txt"
pip_install() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@"; }
step "build tools"
pip_install --upgrade pip "setuptools<81" wheel
# torch first, alone (pinned by constraints.txt to the CPU build 2.13.0): any other torch request
# would pull the CUDA build.
step "torch"
pip_install torch
# pyworld and pysptk build from source with build isolation off, so their build needs (numpy,
# Cython, and setuptools<81) must already be in the venv.
step "pyworld and pysptk (built from source)"
pip_install numpy Cython
pip_install --no-build-isolation pyworld pysptk
step "rrpo$extra"
pip_install -e ".$extra"
# The report test drives Debian's Chromium (playwright's own browser download is not used).
if [ -n "$extra" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "chromium for the report's browser test (apt-get)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
      || echo "install.sh: warning: chromium could not be installed; the report's browser test will be skipped"
  else
    echo "install.sh: note: install chromium to run the report's browser test (it is skipped without it)"
  fi
fi
.venv/bin/rrpo --version >/dev/null 2>&1 || .venv/bin/rrpo --help >/dev/null || fail "rrpo did not install"
echo "rrpo installed in $PWD/.venv"
