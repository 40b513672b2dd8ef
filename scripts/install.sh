#!/usr/bin/env bash
# Creates .venv and installs rrpo into it, keeping torch at the CPU build 2.13.0.
# Usage: bash scripts/install.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip "setuptools<81" wheel
# torch first, alone: any other torch request would pull the CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
export PIP_CONSTRAINT="$PWD/constraints.txt"
# pyworld builds from source and needs setuptools<81 at build time.
.venv/bin/python -m pip install -q --no-build-isolation "pyworld>=0.3.4"
.venv/bin/python -m pip install -q -e ".$extra"
# The report test drives Debian's Chromium (playwright's own browser download is not used).
if [ -n "$extra" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the report test (apt-get)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
      || echo "warning: chromium could not be installed; the browser test of the report will be skipped"
  else
    echo "note: install chromium to run the browser test of the report (it is skipped without it)"
  fi
fi
echo "rrpo installed in $PWD/.venv"
