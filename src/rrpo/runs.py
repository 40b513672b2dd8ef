"""Run directories: every verb that produces something writes one.

Layout::

    RUN/config.yaml        resolved config (of the verb that wrote the run; only that verb reads it)
    RUN/run.json           what other verbs read of the run: {"format", "verb", ...} (see OptimizeRunInfo)
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rrpo.config import dump_config
from rrpo.errors import RrpoError
from rrpo.io import append_jsonl, atomic_open, read_json, write_json

#: The file in which a run describes itself to the verbs that read it (``audit``, ``report``).
RUN_INFO = "run.json"
#: Version of the run.json layout; a reader refuses a newer one in one line.
RUN_INFO_FORMAT = 1


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
    def create(cls, path: str | os.PathLike, cfg: Any = None, argv: list[str] | None = None) -> RunDir:
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


@dataclass
class OptimizeRunInfo:
    """What ``rrpo optimize`` writes to ``RUN/run.json``: everything ``rrpo audit`` and ``rrpo report``
    read of an optimisation run. Readers use this, never the optimiser's config class, so renaming an
    ``OptimizeConfig`` field does not make earlier runs unreadable."""

    algo: str
    policy: str  # the starting policy (path as given to the optimiser)
    #: [{name, path, weight}] in the order of the sum; an ensemble term also has paths, aggregate, std_weight
    rewards: list[dict] = field(default_factory=list)
    manifest: str = ""  # the prompts' manifest (prompts.manifest)

    def write(self, run: str | os.PathLike) -> None:
        write_json(Path(run) / RUN_INFO, {"format": RUN_INFO_FORMAT, "verb": "optimize", **asdict(self)})

    @classmethod
    def read(cls, run: str | os.PathLike) -> OptimizeRunInfo:
        """From ``run.json``; a run written before run.json existed is read from its ``config.yaml`` as
        plain YAML (the keys ``algo``, ``policy``, ``rewards``, ``prompts.manifest``)."""
        run = Path(run)
        if (run / RUN_INFO).exists():
            d = read_run_info(run, "optimize")
        elif (run / "config.yaml").exists():
            d = _legacy_optimize_info(run / "config.yaml")
        else:
            raise RrpoError(f"not an optimisation run folder (no {RUN_INFO})", run)
        try:
            return cls(
                algo=str(d["algo"]),
                policy=str(d["policy"]),
                rewards=[_reward_term(r) for r in d.get("rewards") or []],
                manifest=str(d.get("manifest") or ""),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RrpoError(f"run description lacks or mangles {e}", run / RUN_INFO) from None


def _reward_term(r: dict) -> dict:
    """One ``rewards`` term of a run description: ``{name, path, weight}``, plus ``paths``, ``aggregate``
    and ``std_weight`` for an ensemble term (``path`` is then its first member)."""
    paths = [str(p) for p in r.get("paths") or []]
    out = {
        "name": str(r["name"]),
        "path": str(r.get("path") or (paths[0] if paths else r["path"])),
        "weight": float(r.get("weight", 1.0)),
    }
    if paths:
        out.update(paths=paths, aggregate=str(r.get("aggregate", "mean")), std_weight=float(r.get("std_weight", 1.0)))
    return out


def reward_folders(term: dict) -> list[str]:
    """The reward-model folders of a run description's term: an ensemble's members, or its one path."""
    return list(term.get("paths") or [term["path"]])


def read_run_info(run: str | os.PathLike, verb: str) -> dict:
    """``RUN/run.json`` of a run of ``rrpo <verb>``; a run of another verb or a newer layout is a one-line error."""
    path = Path(run) / RUN_INFO
    d = read_json(path)
    if not isinstance(d, dict) or d.get("verb") != verb:
        got = d.get("verb") if isinstance(d, dict) else None
        raise RrpoError(f"a run of `rrpo {got}`, not of `rrpo {verb}`", path)
    if int(d.get("format", 0)) > RUN_INFO_FORMAT:
        raise RrpoError(
            f"run.json format {d['format']} is newer than this rrpo reads ({RUN_INFO_FORMAT}); upgrade rrpo", path
        )
    return d


def _legacy_optimize_info(path: Path) -> dict:
    import yaml

    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise RrpoError(f"cannot read the run's config ({e.__class__.__name__})", path) from None
    if not isinstance(d, dict) or "policy" not in d:
        raise RrpoError("not an optimisation run's config (no 'policy' key) and no run.json beside it", path)
    return {
        "algo": d.get("algo", "diffro"),
        "policy": d["policy"],
        "rewards": d.get("rewards") or [],
        "manifest": (d.get("prompts") or {}).get("manifest", ""),
    }
