#!/usr/bin/env bash
# The project's checks, in order, each stopping the run when it fails:
#   1. lint: ruff check, then ruff format --check (rules in pyproject.toml, [tool.ruff]);
#   2. the fast lane: every test not marked slow (minutes on 2 CPU cores);
#   3. the slow lane: tests marked @pytest.mark.slow (> ~20 s each: end-to-end demo, torchrun,
#      wheel install, README's verb chain).
# Extra arguments go to both pytest lanes (e.g. -x, -k name). Usage: bash scripts/test.sh [ARGS]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
step() { echo "test.sh: $*"; }
step "lint (ruff check, ruff format --check)"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
step "fast lane (pytest -m 'not slow')"
"$PY" -m pytest -q -m "not slow" --durations=20 "$@"
step "slow lane (pytest -m slow)"
"$PY" -m pytest -q -m slow --durations=20 "$@"
