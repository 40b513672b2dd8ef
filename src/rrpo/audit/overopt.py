"""The over-optimisation view of one optimisation run (``rrpo audit run=DIR``).

For the starting policy (step 0) and every saved checkpoint of the run, on a fixed prompt set
with fixed sampling seeds: generate, score the tokens with the run's own reward models (the
*proxy*, as the probability of the target emotion), decode with the codec and score the audio
with the independent judge (the *gold* proxy for a listener), the artifact detectors, the
distances to the parallel real recordings and, with a phone judge (``phone_judge``), the phone error
rate against the prompt's text; and measure d = √KL(π_step ‖ π_0) on the generated
tokens (:class:`rrpo.audit.scorer.Scorer`). Nothing here feeds a gradient to the policy. What the
audit knows of the run comes from the run's ``run.json`` (:class:`rrpo.runs.OptimizeRunInfo`).

Every judged figure is anchored in real speech (:mod:`rrpo.audit.anchor`): the judge's per-speaker
statistics and the typicality reference are fixed from the prompted speakers' other real recordings,
passed through the codec, before any policy is scored; the same anchor judges the ceilings (the
prompts' real recordings as recorded and through the codec), which the audit reports beside the path.

Curves are fitted with the functional forms of Gao, Schulman & Hilton (2022), "Scaling laws for
reward model overoptimization": R_RL(d) = d·(α − β·log d) and R_BoN(d) = d·(α − β·d), both linear
in (α, β) and fitted by least squares to the change of each score from step 0 (whose point (0, 0)
both forms pass through). The *hacking gap* is proxy − judge (both probabilities of the target
emotion). Two flags watch the whole path (:mod:`rrpo.audit.paths`): the *emotion* flag (the judge
fell after its peak by more than its sampling noise while the proxy rose) and the *naturalness* flag
(artifacts, token repetition, typicality or the phone error rate rose beyond the real recordings' range
while the proxy rose).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rrpo.audit.anchor import AnchorConfig
from rrpo.audit.scorer import AuditPrompts, Scorer
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
    "path_flags",
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
    anchor: AnchorConfig = section(AnchorConfig, "the real recordings that anchor the judge")
    every: int = option(1, "audit every N-th checkpoint (the last is always audited)")
    n_boot: int = option(1000, "cluster-bootstrap draws of the flags' noise margins and of the intervals")
    recognizer: bool = option(True, "word error rate with pocketsphinx for English prompts")
    phone_judge: str = option(
        "",
        "phone model folder (rrpo phones train) that scores every utterance's phone error rate against its "
        "text's espeak-ng phonemes, the ceilings' too (a naturalness signal); empty: no PER (the summary "
        "says it is absent)",
    )
    profile_recordings: int = option(
        20,
        "a speaker the codec has no profile of is profiled from up to this many of its manifest recordings "
        "(spread evenly over the emotions; never a prompted text)",
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
        check(self.n_boot >= 100, "n_boot", "must be >= 100")
        check(self.profile_recordings >= 1, "profile_recordings", "must be >= 1")


# ---------------------------------------------------------------------------- fits


def fit_gao(d: Sequence[float], r: Sequence[float], form: str = "rl") -> dict:
    """Least-squares (α, β) of R(d) = d(α − β log d) (``rl``) or d(α − β d) (``bon``) through the
    origin. Points at d = 0 are kept (both forms give R(0) = 0, so they weigh on r²). Returns α, β,
    r² and n; α and β are NaN only with fewer than two points at d > 0 (the two coefficients are then
    not determined), r² is NaN only then too (with all R equal it is 1 for an exact fit, else 0).
    Example: d = (0, 1, e), R = (0, 2, e) gives α = 2, β = 1 (rl), r² = 1."""
    d = np.asarray(d, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    keep = (d >= 0) & np.isfinite(d) & np.isfinite(r)
    d, r = d[keep], r[keep]
    nan = {"alpha": float("nan"), "beta": float("nan"), "r2": float("nan"), "n": int(len(d))}
    if int((d > 0).sum()) < 2:
        return nan
    with np.errstate(divide="ignore", invalid="ignore"):
        x2 = np.where(d > 0, -d * np.log(np.where(d > 0, d, 1.0)), 0.0) if form == "rl" else -d * d
    A = np.stack([d, x2], 1)
    coef, *_ = np.linalg.lstsq(A, r, rcond=None)
    pred = A @ coef
    sse = float(((r - pred) ** 2).sum())
    ss = float(((r - r.mean()) ** 2).sum())
    r2 = 1 - sse / ss if ss > 0 else (1.0 if sse < 1e-20 else 0.0)
    return {"alpha": float(coef[0]), "beta": float(coef[1]), "r2": float(r2), "n": int(len(d))}


#: naturalness signals of the flag: (name, per-utterance numerator key, denominator key or None = 1)
NATURALNESS = (
    ("artifacts_per_s", "artifact_events", "duration_s"),
    ("token_repetition", "token_repetition", None),
    ("typicality", "typicality", None),
    ("atypical", "atypical", None),
    ("per", "phone_edits", "phones"),  # Σ edits / Σ reference phonemes (with a phone judge)
)
#: signals only some audits have (PER needs a phone judge): no interval where no utterance has them
OPTIONAL_SIGNALS = {"per"}


def _utt_matrix(points: list[dict], key: str, ids: list[str]) -> np.ndarray:
    """(P, U) per-utterance values of ``key`` (NaN where absent), utterances in the order ``ids``."""
    out = np.full((len(points), len(ids)), np.nan)
    for pi, p in enumerate(points):
        rows = {u["id"]: u for u in p.get("utterances") or []}
        for ui, i in enumerate(ids):
            v = rows.get(i, {}).get(key)
            if v is not None:
                out[pi, ui] = float(v)
    return out


def _artifact_events(u: dict) -> float:
    from rrpo.audit.artifacts import DETECTORS

    return float(sum(u.get(f"{n}_events", 0) for n in DETECTORS))


def _with_events(points: list[dict]) -> list[dict]:
    for p in points:
        for u in p.get("utterances") or []:
            u.setdefault("artifact_events", _artifact_events(u))
            if "judge_correct" in u:
                u["judge_correct"] = float(u["judge_correct"])
    return points


def signal_intervals(summary: dict, n_boot: int, seed: int = 0) -> dict:
    """95 % cluster-bootstrap intervals (utterances of one text form a cluster) of a summary's judge
    accuracy, judge p(target), artifact events per second and the naturalness signals (PER among them,
    left out without a phone judge)."""
    from rrpo.audit.paths import interval

    rows = _with_events([summary])[0].get("utterances") or []
    if not rows:
        return {}
    cl = [u.get("cluster", u["id"]) for u in rows]

    def col(k):
        return np.array([float(u[k]) if u.get(k) is not None else np.nan for u in rows])

    out = {}
    for name, key in (("judge_acc", "judge_correct"), ("judge_p", "judge_target_prob")):
        v = col(key)
        out[name] = interval(v, np.where(np.isfinite(v), 1.0, np.nan), cl, n_boot, seed)
    for name, num, den in NATURALNESS:
        v = col(num)
        if name in OPTIONAL_SIGNALS and not np.isfinite(v).any():
            continue  # no phone judge: no PER interval (the summary says PER is absent)
        dv = col(den) if den else np.where(np.isfinite(v), 1.0, np.nan)
        out[name] = interval(v, dv, cl, n_boot, seed)
    return out


def path_flags(points: list[dict], real: dict, n_boot: int = 1000, seed: int = 0) -> dict:
    """The emotion and naturalness flags of an audited path (:mod:`rrpo.audit.paths`) from each
    point's per-utterance rows; ``real`` maps a naturalness signal to the upper end of the real
    recordings' interval."""
    from rrpo.audit.paths import emotion_flags, naturalness_flags

    points = _with_events(points)
    ids = [u["id"] for u in points[0].get("utterances") or []]
    if not ids:
        raise RrpoError("the audited points have no per-utterance rows")
    clusters = [u.get("cluster", u["id"]) for u in points[0]["utterances"]]
    proxy = [p["proxy_prob"] for p in points]
    J = _utt_matrix(points, "judge_correct", ids)
    J = np.where(np.isfinite(J), J, 0.0)
    emo = emotion_flags(J, proxy, clusters, n_boot, seed)
    sig = {}
    for name, num, den in NATURALNESS:
        v = _utt_matrix(points, num, ids)
        if not np.isfinite(v).any():
            continue
        dv = _utt_matrix(points, den, ids) if den else np.ones_like(v)
        ok = np.isfinite(v) & np.isfinite(dv)
        sig[name] = (np.where(ok, v, 0.0), np.where(ok, dv, 0.0))
    nat = naturalness_flags(sig, real, proxy, clusters, n_boot, seed)
    return {"emotion": emo, "naturalness": nat}


def build_scorer(cfg: AuditConfig, info: OptimizeRunInfo, anchor_dir: Path | None = None) -> Scorer:
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
    phone_judge = None
    if cfg.phone_judge:
        from rrpo.phones.judge import PhoneJudge

        phone_judge = PhoneJudge.load(cfg.phone_judge)  # once: every point and both ceilings use it
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
        anchor=cfg.anchor,
        anchor_dir=anchor_dir,
        sources={"policy": info.policy, "codec": cfg.codec, "judge": cfg.judge},
        phone_judge=phone_judge,
    )


def _phone_judge_summary(auditor) -> dict | None:
    """What audit.json records of the phone judge: its description and identity (None without one)."""
    pj = getattr(auditor, "phone_judge", None)
    return None if pj is None else {**pj.describe(), **pj.identity()}


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
    # the anchor is shared by every audit with the same start cache (one fold and seed of an experiment)
    auditor = build_scorer(cfg, info, Path(cfg.start_cache) / "anchor" if cfg.start_cache else out / "anchor")
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
    ceilings = {k: {**v, "intervals": signal_intervals(v, cfg.n_boot)} for k, v in auditor.ceilings.items()}
    codec_ceiling = ceilings.get("codec", {}).get("intervals", {})
    real_hi = {name: codec_ceiling[name]["hi"] for name, _, _ in NATURALNESS if name in codec_ceiling}
    flags = path_flags(points, real_hi, cfg.n_boot)
    for p, fe, fn in zip(points, flags["emotion"], flags["naturalness"]):
        p["intervals"] = signal_intervals(p, cfg.n_boot)
        p["flags"] = {"emotion": fe, "naturalness": fn}
        p["hacking_flag"] = bool(fe["flag"] or fn["flag"])
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
        "flagged": {
            "emotion": [p["step"] for p in points if p["flags"]["emotion"]["flag"]],
            "naturalness": [p["step"] for p in points if p["flags"]["naturalness"]["flag"]],
        },
        "ceilings": ceilings,
        "anchor": auditor.anchor_summary(),
        "phone_judge": _phone_judge_summary(auditor),
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
