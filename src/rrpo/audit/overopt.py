"""The over-optimisation view of one optimisation run (``rrpo audit --run DIR``).

For the starting policy (step 0) and every saved checkpoint of the run, on a fixed prompt set
with fixed sampling seeds: generate, score the tokens with the run's own reward models (the
*proxy*, as the probability of the target emotion), decode with the codec and score the audio
with the independent judge (the *gold* proxy for a listener), the artifact detectors and the
distances to the parallel real recordings; and measure d = √KL(π_step ‖ π_0) on the generated
tokens. Nothing here feeds a gradient to the policy.

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
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rrpo.config import check, option, section
from rrpo.data.manifest import ManifestFilter
from rrpo.errors import RrpoError
from rrpo.policy.settings import SamplingConfig

log = logging.getLogger(__name__)


@dataclass
class AuditPrompts(ManifestFilter):
    """Held-out texts (default manifest: the run's prompts.manifest), each spoken in every target
    emotion; the manifest's recordings of the same text, speaker and emotion are the references."""
    max_texts: int = option(4, "distinct (text, speaker) pairs; each is spoken in every target emotion")

    def __post_init__(self):
        check(self.max_texts >= 1, "prompts.max_texts", "must be >= 1")


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
    bf16: bool = option(False, "bf16 autocast while generating")
    profile_recordings: int = option(10, "a speaker the codec has no profile of is profiled from up to this many of its manifest recordings")

    def __post_init__(self):
        check(self.every >= 1, "every", "must be >= 1")
        check(self.profile_recordings >= 1, "profile_recordings", "must be >= 1")
        check(self.flag_margin >= 0, "flag_margin", "must be >= 0")


# ---------------------------------------------------------------------------- fits and flags

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


def hacking_flags(proxy: Sequence[float], judge: Sequence[float], margin: float) -> list[bool]:
    """Per point: since the point where the judge was best so far, did the proxy rise by more than
    ``margin`` while the judge fell by more than ``margin``? Example with margin 0.05: proxy
    (0.3, 0.5, 0.7), judge (0.4, 0.45, 0.3) → (False, False, True)."""
    flags, best = [], 0
    for i in range(len(proxy)):
        if judge[i] >= judge[best]:
            best = i
        flags.append(bool(proxy[i] - proxy[best] > margin and judge[best] - judge[i] > margin))
    return flags


# ---------------------------------------------------------------------------- the audit

def _prompt_set(cfg: AuditConfig, man, emotions: list[str]) -> list[dict]:
    sel = cfg.prompts.apply(man)
    pairs = []
    for u in sel:
        key = (u.text, u.language, u.speaker)
        if key not in pairs:
            pairs.append(key)
    pairs = pairs[:cfg.prompts.max_texts]
    if not pairs:
        raise RrpoError("no prompts left after the audit's manifest filters", man.path)
    index = {(u.text, u.speaker, u.emotion): u for u in sel}
    rows = []
    for ti, (text, lang, spk) in enumerate(pairs):
        for emo in emotions:
            ref = index.get((text, spk, emo))
            rows.append({"id": f"t{ti}_{emo}", "text": text, "language": lang, "speaker": spk, "emotion": emo,
                         "ref_id": ref.id if ref is not None else None})
    return rows


class Auditor:
    """Scores policies on a fixed prompt set: proxy (reward models), judge, artifacts, distances,
    √KL to the starting policy. Used by ``rrpo audit`` and by the optimiser's judge early stop."""

    def __init__(self, cfg: AuditConfig, start_policy, rms: list, rm_names: list[str], codec, judge, man):
        self.cfg, self.start, self.rms, self.rm_names = cfg, start_policy, rms, rm_names
        self.codec, self.judge = codec, judge
        known = set(judge.classes)
        for rm in rms:
            known &= set(rm.classes)
        if start_policy.emotions:
            known &= set(start_policy.emotions)
        emotions = list(cfg.prompts.emotions) or [e for e in judge.classes if e in known]
        bad = [e for e in emotions if e not in known]
        if bad or not emotions:
            raise RrpoError(f"audit emotions {bad or emotions} are not known to the policy, reward models and judge "
                            f"together (common: {sorted(known)})")
        self.emotions = emotions
        self.rows = _prompt_set(cfg, man, emotions)
        self.references = {}
        from rrpo.data.audio import load_audio
        by_id = man.by_id()
        for r in self.rows:
            if r["ref_id"] is not None and r["ref_id"] not in self.references:
                u = by_id[r["ref_id"]]
                self.references[r["ref_id"]] = load_audio(man.audio_path(u))
        self.stats = None
        # each sample is decoded as the speaker it was asked to speak as: the codec's stored
        # profile, or (a speaker the codec never heard) one from that speaker's recordings here
        from rrpo.codec import profile_for

        self.profiles = {}
        for spk in dict.fromkeys(r["speaker"] for r in self.rows):
            recs = [u for u in man if u.speaker == spk][:cfg.profile_recordings]
            self.profiles[spk] = profile_for(codec, spk, lambda recs=recs: (load_audio(man.audio_path(u)) for u in recs))

    def _encode(self, policy):
        use_spk = policy.speaker_embedding is not None
        return policy.encode_prompts([r["text"] for r in self.rows], [r["emotion"] for r in self.rows],
                                     [r["language"] for r in self.rows],
                                     [r["speaker"] for r in self.rows] if use_spk else None)

    def score(self, policy, audio_dir: Path | None = None) -> dict:
        import torch

        from rrpo.optimize.relax import token_kl
        from rrpo.policy.generate import generate

        prompts = self._encode(policy)
        seeds = [self.cfg.seed + i for i in range(len(self.rows))]
        gen = generate(policy, prompts, self.cfg.sampling, seeds, return_noise=False, bf16=self.cfg.bf16)
        emotions = [r["emotion"] for r in self.rows]
        with torch.no_grad():
            T = gen.ids.shape[1]
            if T == 0:
                raise RrpoError("the policy generated only empty sequences")
            lp = policy(gen.prompts, gen.ids, gen.lens)[:, :T]
            lq = self.start(gen.prompts, gen.ids, gen.lens)[:, :T]
            mask = torch.arange(T)[None] < gen.lens[:, None]
            kl = float(token_kl(lp, lq, mask).mean())
            proxy = {}
            for name, rm in zip(self.rm_names, self.rms):
                proxy[name] = float(rm.reward(gen.ids, gen.lens, emotions).exp().mean())
        generated = []
        for i, r in enumerate(self.rows):
            ids = gen.tokens(i).numpy()
            audio = (self.codec.decode(ids, profile=self.profiles.get(r["speaker"])) if len(ids)
                     else np.zeros(160, np.float32))
            generated.append((audio, self.codec.sampling_rate, {**r, "speaker": "*", "tokens": ids}))
            if audio_dir is not None:
                from rrpo.data.audio import save_audio
                save_audio(audio_dir / f"{r['id']}.wav", audio, self.codec.sampling_rate)
        if self.stats is None and hasattr(self.judge, "group_stats"):
            # fixed normalisation from the starting policy's own outputs, so a drift of every
            # emotion in one direction is not normalised away at later checkpoints
            self.stats = self.judge.group_stats([(a, sr) for a, sr, _ in generated])
        from rrpo.audit.summary import audit_audio
        summary = audit_audio(generated, self.references, self.judge, judge_stats=self.stats,
                              recognizer=None if self.cfg.recognizer else False)
        first = self.rm_names[0] if self.rm_names else None
        summary.update({"kl": kl, "sqrt_kl": math.sqrt(max(kl, 0.0)), "proxy": proxy,
                        "proxy_prob": proxy.get(first, float("nan")),
                        "hacking_gap": proxy.get(first, float("nan")) - summary["judge"]["target_prob"],
                        "mean_len_s": float(gen.lens.float().mean()) / self.codec.frame_rate})
        return summary


def build_auditor(cfg: AuditConfig, run_cfg) -> Auditor:
    from rrpo.audit.judge import load_judge
    from rrpo.codec import load_codec
    from rrpo.data.manifest import read_manifest
    from rrpo.policy.io import load_policy

    if not cfg.codec or not cfg.judge:
        raise RrpoError("config: the audit needs 'codec' (to decode tokens) and 'judge'")
    codec = load_codec(cfg.codec)
    if not codec.can_decode:
        raise RrpoError("this codec encodes only; the audit needs audio", cfg.codec)
    judge = load_judge(cfg.judge)
    start = load_policy(run_cfg.policy)
    rms = [r.load() for r in run_cfg.rewards]
    man = read_manifest(cfg.prompts.manifest or run_cfg.prompts.manifest)
    return Auditor(cfg, start, rms, [r.name for r in run_cfg.rewards], codec, judge, man)


def run_audit(cfg: AuditConfig) -> dict:
    """Audit every checkpoint of ``cfg.run``; write audit.jsonl, audit.json and proxy_vs_judge.png."""
    from rrpo.config import load_config
    from rrpo.io import write_json
    from rrpo.optimize.trainer import OptimizeConfig
    from rrpo.policy.io import load_policy
    from rrpo.train.loop import checkpoint_dirs

    run = Path(cfg.run)
    if not (run / "config.yaml").exists():
        raise RrpoError("not an optimisation run folder (no config.yaml)", run)
    run_cfg = load_config(OptimizeConfig, run / "config.yaml")
    ckpts = checkpoint_dirs(run)
    if not ckpts:
        raise RrpoError("the run has no checkpoints to audit", run)
    chosen = [c for i, c in enumerate(ckpts) if (i + 1) % cfg.every == 0 or i == len(ckpts) - 1]
    out = Path(cfg.out) if cfg.out else run / "audit"
    out.mkdir(parents=True, exist_ok=True)
    auditor = build_auditor(cfg, run_cfg)
    points = []
    from tqdm import tqdm
    todo = [(0, None)] + [(int(c.name.split("_")[1]), c) for c in chosen]
    for step, ck in tqdm(todo, desc="audit", unit="ckpt", disable=None):
        policy = auditor.start if ck is None else load_policy(run / "policy", checkpoint=ck)
        adir = out / "audio" / f"step_{step}" if ck is None or ck == chosen[-1] else None
        s = auditor.score(policy, adir)
        s["step"] = step
        points.append(s)
    flags = hacking_flags([p["proxy_prob"] for p in points], [p["judge"]["target_prob"] for p in points],
                          cfg.flag_margin)
    for p, f in zip(points, flags):
        p["hacking_flag"] = f
    d = [p["sqrt_kl"] for p in points]
    dp = [p["proxy_prob"] - points[0]["proxy_prob"] for p in points]
    dj = [p["judge"]["target_prob"] - points[0]["judge"]["target_prob"] for p in points]
    result = {
        "run": str(run), "algo": run_cfg.algo, "rewards": [r.path for r in run_cfg.rewards],
        "prompts": auditor.rows, "emotions": auditor.emotions,
        "points": points,
        "fits": {"proxy": {"rl": fit_gao(d, dp, "rl"), "bon": fit_gao(d, dp, "bon")},
                 "judge": {"rl": fit_gao(d, dj, "rl"), "bon": fit_gao(d, dj, "bon")}},
        "flagged_steps": [p["step"] for p in points if p["hacking_flag"]],
        "final": points[-1], "start": points[0],
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
        line, = ax.plot(d, [p["proxy_prob"] for p in points], "o-", ms=3, label=f"{name}: proxy (RM)")
        ax.plot(d, [p["judge"]["target_prob"] for p in points], "s--", ms=3, color=line.get_color(),
                label=f"{name}: judge")
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
