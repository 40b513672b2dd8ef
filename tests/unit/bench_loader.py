"""Import a script of ``bench/`` (not a package) as a module, for the tests of its pure functions."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def load_bench(name: str):
    """``bench/<name>.py`` as a fresh module named ``bench_<name>``."""
    path = Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
