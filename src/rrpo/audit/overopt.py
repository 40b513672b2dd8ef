"""The over-optimisation view of one optimisation run (``rrpo audit run=DIR``).

For the starting policy (step 0) and every saved checkpoint of the run, on a fixed prompt set
with fixed sampling seeds: generate, score the tokens with the run's own reward models (the
*proxy*, as the probability of the target emotion), decode with the codec and score the audio
with the independent judge (the *gold* proxy for a listener), the artifact detectors and the
distances to the parallel real recordings; and measure d = √KL(π_step ‖ π_0) on the generated
tokens (:class:`rrpo.audit.scorer.Scorer`). Nothing here feeds a gradient to the policy. What the
audit knows of the run comes from the run's ``run.json`` (:class:`rrpo.runs.OptimizeRunInfo`).

Curves are fitted with the functional forms of Gao, Schulman & Hilton (2022), "Scaling laws for
reward model overoptimization": R_RL(d) = d·(α − β·log d) and R_BoN(d) = d·(α − β·d), both linear
in (α, β) and fitted by least squares to the change of each score from step 0. The *hacking gap*
is proxy − judge (both probabilities of the target emotion). A checkpoint is *flagged* where, since
the best judge score so far, the proxy rose by more than ``flag_margin`` while the judge fell by
more than ``flag_margin``: the policy is being paid for something a listener does not hear.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rrpo.audit.scorer import AuditPrompts, Scorer, hacking_flags
from rrpo.config import check, option, section
from rrpo.errors import RrpoError
from rrpo.policy.settings import SamplingConfig
from rrpo.runs import OptimizeRunInfo, reward_folders

__all__ = [
    "AuditConfig",
    "AuditPrompts",
    "Scorer",
    "build_scorer",
    "fit_gao",
    "hacking_flags",
    "plot_proxy_vs_judge",
    "run_audit",
]

log = logging.getLogger(__name__)


@dataclass
class AuditConfig:
    run: str = option("", "optimisation run folder (rrpo optimize)")
    out: str = option("", "output folder (default: RUN/audit)")
    codec: str = option("", "codec folder that decodes the policy's tokens")
    judge: str = option("", "judge folder (rrpo judge train)")
    prompts: AuditPrompts = section(AuditPrompts, "what to generate")
    sampling: SamplingConfig = section(SamplingConfig, "how to generate (fixed seeds for every checkpoint)")
    seed: int = option(1234, "first sampling seed (one per prompt, the same at every checkpoint)")
    every: int = option(1, "audit every N-th checkpoint (the last is always audited)")
    flag_margin: float = option(0.05, "a rise of the proxy and a fall of the judge larger than this flags hacking")
    recognizer: bool = option(True, "word error rate with pocketsphinx for English prompts")
    profile_recordings: int = option(
        10, "a speaker the codec has no profile of is profiled from up to this many of its manifest recordings"
    )
    bf16: bool = option(False, "bf16 autocast while generating")
    start_cache: str = option(
        "",
        "folder where step 0 (the starting policy: generation, audio, judge, artifacts, distances) is "
        "scored once and reused by every audit with the same starting policy, prompts, seeds, codec and "
        "judge; only the proxy is scored per run. Empty: score step 0 in every audit",
    )

    def __post_init__(self):
        check(self.every >= 1, "every", "must be >= 1")
        check(self.flag_margin >= 0, "flag_margin", "must be >= 0")
        check(self.profile_recordings >= 1, "profile_recordings", "must be >= 1")


# ---------------------------------------------------------------------------- fits


def fit_gao(d: Sequence[float], r: Sequence[float], form: str = "rl") -> dict:
    """Least-squares (α, β) of R(d) = d(α − β log d) (``rl``) or d(α − β d) (``bon``) through the
    origin; points with d = 0 carry no information and are dropped. Returns α, β, r2 (NaN with
    fewer than two points). Example: d = (1, e), R = (2, 2e − e) = (2, e) gives α = 2, β = 1 (rl)."""
    d = np.asarray(d, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    keep = (d > 0) & np.isfinite(r)
    d, r = d[keep], r[keep]
    if len(d) < 2:
        return {"alpha": float("nan"), "beta": float("nan"), "r2": float("nan"), "n": int(len(d))}
    x2 = -d * np.log(d) if form == "rl" else -d * d
    A = np.stack([d, x2], 1)
    coef, *_ = np.linalg.lstsq(A, r, rcond=None)
    pred = A @ coef
    ss = float(((r - r.mean()) ** 2).sum())
    r2 = 1 - float(((r - pred) ** 2).sum()) / ss if ss > 0 else float("nan")
    return {"alpha": float(coef[0]), "beta": float(coef[1]), "r2": r2, "n": int(len(d))}


def build_scorer(cfg: AuditConfig, info: OptimizeRunInfo) -> Scorer:
    from rrpo.audit.judge import load_judge
    from rrpo.codec import load_codec
    from rrpo.data.manifest import read_manifest
    from rrpo.policy.io import load_policy
    from rrpo.reward.ensemble import load_reward

    if not cfg.codec or not cfg.judge:
        raise RrpoError("config: the audit needs 'codec' (to decode tokens) and 'judge'")
    codec = load_codec(cfg.codec)
    if not codec.can_decode:
        raise RrpoError("this codec encodes only; the audit needs audio", cfg.codec)
    judge = load_judge(cfg.judge)
    start = load_policy(info.policy)
    rms = [load_reward(reward_folders(r), r.get("aggregate", "mean"), r.get("std_weight", 1.0)) for r in info.rewards]
    man = read_manifest(cfg.prompts.manifest or info.manifest)
    return Scorer(
        start,
        rms,
        [r["name"] for r in info.rewards],
        codec,
        judge,
        man,
        prompts=cfg.prompts,
        sampling=cfg.sampling,
        seed=cfg.seed,
        recognizer=cfg.recognizer,
        bf16=cfg.bf16,
        profile_recordings=cfg.profile_recordings,
        sources={"policy": info.policy, "codec": cfg.codec, "judge": cfg.judge},
    )


def run_audit(cfg: AuditConfig) -> dict:
    """Audit every checkpoint of ``cfg.run``; write audit.jsonl, audit.json and proxy_vs_judge.png."""
    from rrpo.io import write_json
    from rrpo.policy.io import load_policy
    from rrpo.train.loop import checkpoint_dirs

    run = Path(cfg.run)
    if not run.is_dir():
        raise RrpoError("run folder not found", run)
    info = OptimizeRunInfo.read(run)
    ckpts = checkpoint_dirs(run)
    if not ckpts:
        raise RrpoError("the run has no checkpoints to audit", run)
    chosen = [c for i, c in enumerate(ckpts) if (i + 1) % cfg.every == 0 or i == len(ckpts) - 1]
    out = Path(cfg.out) if cfg.out else run / "audit"
    out.mkdir(parents=True, exist_ok=True)
    auditor = build_scorer(cfg, info)
    points = []
    from tqdm import tqdm

    todo = [(0, None)] + [(int(c.name.split("_")[1]), c) for c in chosen]
    for step, ck in tqdm(todo, desc="audit", unit="ckpt", disable=None):
        adir = out / "audio" / f"step_{step}" if ck is None or ck == chosen[-1] else None
        if ck is None and cfg.start_cache:
            s = auditor.score_start(Path(cfg.start_cache), adir)
        else:
            policy = auditor.start if ck is None else load_policy(run / "policy", checkpoint=ck)
            s = auditor.score(policy, adir)
        s["step"] = step
        points.append(s)
    flags = hacking_flags(
        [p["proxy_prob"] for p in points], [p["judge"]["target_prob"] for p in points], cfg.flag_margin
    )
    for p, f in zip(points, flags):
        p["hacking_flag"] = f
    d = [p["sqrt_kl"] for p in points]
    dp = [p["proxy_prob"] - points[0]["proxy_prob"] for p in points]
    dj = [p["judge"]["target_prob"] - points[0]["judge"]["target_prob"] for p in points]
    result = {
        "run": str(run),
        "algo": info.algo,
        "rewards": [p for r in info.rewards for p in reward_folders(r)],
        "manifest": str(cfg.prompts.manifest or info.manifest),
        "prompts": auditor.rows,
        "emotions": auditor.emotions,
        "points": points,
        "fits": {
            "proxy": {"rl": fit_gao(d, dp, "rl"), "bon": fit_gao(d, dp, "bon")},
            "judge": {"rl": fit_gao(d, dj, "rl"), "bon": fit_gao(d, dj, "bon")},
        },
        "flagged_steps": [p["step"] for p in points if p["hacking_flag"]],
        "final": points[-1],
        "start": points[0],
    }
    with open(out / "audit.jsonl", "w", encoding="utf-8") as f:
        for p in points:
            f.write(json.dumps(p, default=float) + "\n")
    write_json(out / "audit.json", json.loads(json.dumps(result, default=float)))
    plot_proxy_vs_judge([(run.name, points)], out / "proxy_vs_judge.png")
    return result


def plot_proxy_vs_judge(series: list[tuple[str, list[dict]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=100)
    for name, points in series:
        d = [p["sqrt_kl"] for p in points]
        (line,) = ax.plot(d, [p["proxy_prob"] for p in points], "o-", ms=3, label=f"{name}: proxy (RM)")
        ax.plot(
            d, [p["judge"]["target_prob"] for p in points], "s--", ms=3, color=line.get_color(), label=f"{name}: judge"
        )
        for p in points:
            if p.get("hacking_flag"):
                ax.axvline(p["sqrt_kl"], color=line.get_color(), alpha=0.25)
    ax.set_xlabel("d = √KL(π ‖ π₀)")
    ax.set_ylabel("p(target emotion)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
