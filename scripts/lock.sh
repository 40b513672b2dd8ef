#!/usr/bin/env bash
# Rewrites constraints.txt from the packages installed in .venv (run after scripts/install.sh --dev
# in a fresh venv with a changed pyproject.toml). The CPU torch's local label (+cpu) is dropped so
# that the pin also admits the wheel pip finds on PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
v() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
{
  echo "# The lock: exact versions CI resolved on Python 3.11 / x86-64 (CPU torch), applied by"
  echo "# scripts/install.sh through PIP_CONSTRAINT. pyproject.toml keeps ranges for other set-ups."
  echo "# Regenerate: bash scripts/lock.sh"
  echo "pip==$(v pip)"
  echo "setuptools==$(v setuptools)"
  echo "wheel==$(v wheel)"
  .venv/bin/python -m pip freeze --exclude-editable --disable-pip-version-check \
    | grep -v -i '^rrpo' | sed -E 's/^(torch==[^+]*)\+.*/\1/'
} > constraints.txt
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) pins)"
