"""Run directories: every verb that produces something writes one.

Layout::

    RUN/config.yaml        resolved config
    RUN/command.txt        the exact command line
    RUN/metrics.jsonl      one JSON object per logged step, keys namespaced ("rm/loss")
    RUN/checkpoints/step_N/{model.safetensors, trainer_state.pt, meta.json}
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rrpo.config import dump_config
from rrpo.io import append_jsonl, atomic_open


def git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


class RunDir:
    """A run directory. ``RunDir.create`` writes config and command; ``log`` appends metrics."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | os.PathLike, cfg: Any = None, argv: list[str] | None = None) -> "RunDir":
        run = cls(path)
        run.path.mkdir(parents=True, exist_ok=True)
        if cfg is not None:
            dump_config(cfg, run.path / "config.yaml")
        argv = sys.argv if argv is None else argv
        with atomic_open(run.path / "command.txt") as f:
            f.write(" ".join(shlex.quote(a) for a in argv) + "\n")
        return run

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        rec = {"time": round(time.time(), 3)}
        if step is not None:
            rec["step"] = int(step)
        for k, v in metrics.items():
            if hasattr(v, "item"):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = str(v)
            rec[k] = v
        append_jsonl(self.metrics_path, rec)

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        with open(self.metrics_path, encoding="utf-8") as f:
            return [json.loads(l) for l in f if l.strip()]

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metric lines logged after ``after_step`` (a resumed run re-logs them)."""
        if not self.metrics_path.exists():
            return
        keep = [m for m in self.read_metrics() if m.get("step", -1) <= after_step]
        with atomic_open(self.metrics_path) as f:
            for m in keep:
                f.write(json.dumps(m, ensure_ascii=False) + "\n")
