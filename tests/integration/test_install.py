"""An installed wheel (not the checkout) runs ``rrpo demo --help`` and reads every shipped config.

The wheel is built from a copy of the package source without build isolation (no network), then
installed with ``pip install --no-deps --target`` into a scratch folder that the test puts first on
``PYTHONPATH``; the dependencies come from the running environment. Everything runs from a folder
with no ``configs/`` in it, so only configs inside the wheel can be found."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.unit.test_configs import SHIPPED

pytestmark = pytest.mark.slow

CHECK = r"""
import json, sys, importlib
import rrpo
from rrpo.config import load_config, shipped_configs
assert rrpo.__file__.startswith(sys.argv[1]), rrpo.__file__
shipped = json.loads(sys.argv[2])
assert sorted(shipped_configs()) == sorted(shipped), sorted(shipped_configs())
for name, target in shipped.items():
    module, cls = target.split(":")
    load_config(getattr(importlib.import_module(module), cls), name.removesuffix(".yaml"))
    load_config(getattr(importlib.import_module(module), cls), "configs/" + name)
print("loaded", len(shipped))
"""


def test_wheel_runs_demo_help_and_loads_every_shipped_config(tmp_path):
    src = tmp_path / "src_copy"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / f).exists():
            shutil.copy(REPO / f, src / f)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run = dict(capture_output=True, text=True, timeout=600)
    r = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheels"), str(src)], **run
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("rrpo-*.whl")
    site = tmp_path / "site"
    r = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], **run)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in (site / "rrpo" / "configs").glob("*.yaml")) == sorted(SHIPPED)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run([str(site / "bin" / "rrpo"), "demo", "--help"], cwd=elsewhere, env=env, **run)
    assert r.returncode == 0 and "usage: rrpo demo" in r.stdout, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-c", CHECK, str(site), json.dumps(SHIPPED)], cwd=elsewhere, env=env, **run)
    assert r.returncode == 0 and f"loaded {len(SHIPPED)}" in r.stdout, r.stderr[-2000:]
