"""Judged emotion of SFT policies at several classifier-free guidance scales; prints one JSON object.

Scores each policy the way ``rrpo experiment``'s audit scores its step 0 (the SFT row): in every fold
of an experiment folder, the held-out CASIA sentences (split ``test``) x 5 emotions x ``--samples``
samples spoken as the fold's held-out speaker, sampling seeds ``1234 + seed``, decoded with the
experiment's codec and the speaker's profile, judged by the fold's eGeMAPS judge with its
normalisation taken from the policy's own samples (:class:`rrpo.audit.scorer.Scorer`, a fresh one per
policy, scale, fold and seed). The intervals and the paired differences against the first scale of
each policy (same prompts and sampling seeds) are :func:`rrpo.experiment_stats.comparison_stats`'s;
recall is the judge's accuracy among the utterances asked for each emotion. Paired differences: each
scale against the policy's first scale and against the first policy's first scale.

Usage::

    PYTHONPATH=src python bench/policy_guidance.py --exp runs/comparison \\
        --policy base=runs/comparison/sft --policy drop=runs/sft_drop --guidance 1 2 3 \\
        [--samples 2] [--seeds 0] [--out result.json]

A scale other than 1 is skipped for a policy that never learnt the unconditional prompt.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

EMOTIONS = ["neutral", "happy", "angry", "sad", "surprise"]


def recall(points: list[dict]) -> dict[str, float]:
    """Judge accuracy per target emotion over audited summaries (rrpo.audit.summary.pooled_recall), rounded."""
    from rrpo.audit.summary import pooled_recall

    return {e: round(v, 3) for e, v in pooled_recall(points, EMOTIONS).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exp", required=True, help="experiment folder (data/, codec/, folds/<speaker>/judge)")
    ap.add_argument("--policy", action="append", required=True, help="NAME=FOLDER (policy folder or SFT run)")
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0])
    ap.add_argument("--speakers", nargs="+", default=["ZhaoZuoxiang", "liuchanhg"], help="the folds")
    ap.add_argument("--samples", type=int, default=2, help="samples per (sentence, emotion)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="audit seeds (sampling seeds 1234 + seed)")
    ap.add_argument("--max-ratio", type=float, default=8.0, help="sampling.max_ratio (the experiment's audit: 8)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--out", default="", help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from rrpo.audit.judge import load_judge
    from rrpo.audit.scorer import AuditPrompts, Scorer
    from rrpo.codec import load_codec
    from rrpo.data.manifest import read_manifest
    from rrpo.experiment_stats import comparison_stats
    from rrpo.policy.io import load_policy
    from rrpo.policy.settings import SamplingConfig

    exp = Path(args.exp)
    man = read_manifest(exp / "data" / "casia.jsonl")
    codec = load_codec(exp / "codec")
    judges = {h: load_judge(exp / "folds" / h / "judge") for h in args.speakers}
    points: dict[str, list] = {}
    seconds: dict[str, float] = {}
    pairs = []
    for spec in args.policy:
        name, folder = spec.split("=", 1)
        policy = load_policy(folder)
        first = None
        for w in args.guidance:
            if w != 1 and not policy.knows_unconditional:
                continue
            key = f"{name}@w{w:g}"
            first = first or key
            for ref in dict.fromkeys([first, next(iter(points), key)]):  # this policy's first scale; the first policy's
                if key != ref:
                    pairs.append((key, ref))
            points[key] = []
            t0 = time.perf_counter()
            for h in args.speakers:
                for s in args.seeds:
                    scorer = Scorer(
                        policy,
                        [],
                        [],
                        codec,
                        judges[h],
                        man,
                        prompts=AuditPrompts(splits=["test"], speakers=[h], max_texts=50, samples=args.samples),
                        sampling=SamplingConfig(max_ratio=args.max_ratio, guidance=w, temperature=args.temperature),
                        seed=1234 + s,
                    )
                    points[key].append(((h, s), scorer.score(policy)))
            seconds[key] = round(time.perf_counter() - t0, 1)
            acc = sum(u["judge_correct"] for _, p in points[key] for u in p["utterances"])
            n = sum(len(p["utterances"]) for _, p in points[key])
            print(f"{key}: judge accuracy {acc}/{n} in {seconds[key]} s", flush=True)
    st = comparison_stats(points, n_boot=args.n_boot, n_perm=5000, seed=0, pairs=pairs)
    out = {
        "args": vars(args),
        "seconds": seconds,
        "judge_acc": {k: st["intervals"][k]["judge_acc"] for k in points},
        "artifacts_per_s": {k: st["intervals"][k].get("artifacts") for k in points},
        "mcd_db": {k: st["intervals"][k].get("mcd_db") for k in points},
        "recall": {k: recall([p for _, p in v]) for k, v in points.items()},
        "mean_len_s": {k: round(sum(p["mean_len_s"] for _, p in v) / len(v), 3) for k, v in points.items()},
        "paired_judge_acc": {k: v.get("judge_acc") for k, v in st["paired"].items()},
    }
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
