"""Two processes over gloo (torchrun) give the same model as one process with accumulation 2."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent


def _run(args, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    src = str(HERE.parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.slow  # 36 s (two torchrun launches; measured with --durations on 2 shared cores)
@pytest.mark.skipif(
    shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
    reason="torchrun not installed",
)
def test_two_processes_equal_one_with_accumulation(tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    if not Path(torchrun).exists():
        torchrun = shutil.which("torchrun")
    _run([sys.executable, str(HERE / "dist_toy.py"), str(tmp_path / "one"), "2"])
    _run([torchrun, "--nproc-per-node", "2", "--standalone", str(HERE / "dist_toy.py"), str(tmp_path / "two"), "1"])
    a = torch.load(tmp_path / "one" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "final.pt", weights_only=True)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
