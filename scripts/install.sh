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
if [ -n "$extra" ]; then
  # Upstream CosyVoice2's own classes, for the tests that run rrpo against them (docs/policy.md,
  # "Against upstream's code"): FunAudioLLM/CosyVoice's cosyvoice/ and matcha/ trees as the package
  # cosyvoice-minicpmo ships them. Its declared requirements (onnxruntime-gpu, openai-whisper,
  # modelscope, a torchaudio that pins another torch) are not needed to import the model, flow and
  # vocoder classes, so it comes without them and the rrpo[cosyvoice] extra brings the import-time ones.
  step "upstream CosyVoice2 classes (cosyvoice-minicpmo, rrpo[cosyvoice])"
  pip_install -e ".[cosyvoice]"
  pip_install --no-deps cosyvoice-minicpmo torchaudio
  # The index's torchaudio (2.11) is a CUDA build for torch 2.11: its compiled extension cannot load
  # beside the CPU torch 2.13, and torchaudio's import raises where the file is present. Without it
  # the pure-Python parts upstream imports (compliance.kaldi, transforms) work.
  .venv/bin/python - <<'PY' || fail "could not remove torchaudio's compiled extension"
import importlib.util, pathlib
spec = importlib.util.find_spec("torchaudio")
for f in pathlib.Path(spec.origin).parent.joinpath("lib").glob("*.so"):
    f.unlink()
PY
  # transformers 4.x (CosyVoice's own pin, 4.51.3) in a folder of its own, for the tests that compare
  # rrpo with upstream's Qwen2LM under both majors; the venv keeps 5.x.
  step "transformers 4.51.3 beside the venv (.venv/transformers4)"
  PIP_CONSTRAINT="" pip_install --no-deps --upgrade --target .venv/transformers4 \
    transformers==4.51.3 tokenizers==0.21.1 huggingface_hub==0.30.2
  .venv/bin/python -c 'import cosyvoice.cli.model, cosyvoice.flow.flow_matching, cosyvoice.llm.llm' \
    || fail "upstream's CosyVoice2 classes do not import"
fi
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
