"""The eGeMAPS judge trained on several corpora, measured on a held-out speaker and a held-out corpus.
Prints one JSON object.

    python bench/judge_corpora.py --train casia.jsonl --train ased.jsonl --train nemo.jsonl \\
        --train urdu.jsonl --heldout-speaker ZhaoZuoxiang --cross esd.jsonl --cache /tmp/feats \\
        [small_groups=drop class_masking=true ...]

Training is what ``rrpo judge train manifests=[...] exclude_speakers=[SPEAKER]`` does
(``select_corpora`` then ``fit_judge``); scoring is what ``rrpo judge eval`` does (each test
speaker's own batch statistics). The held-out speaker is taken from the ``--train`` manifests that
have it; ``--cross`` manifests are never trained on. ``key=value`` arguments are judge config
fields (``rrpo judge train --help-config``). ``--cache`` keeps each file's 88 functionals (keyed by
the audio path) so that variants are compared without recomputing features.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def cached_features(paths: list[str], cache: Path | None) -> np.ndarray:
    """eGeMAPS functionals of audio files, reusing ``cache/egemaps.npz`` (path -> (88,)) when given."""
    from rrpo.audit.commands import load_items
    from rrpo.audit.features import egemaps_functionals

    known: dict[str, np.ndarray] = {}
    f = None if cache is None else cache / "egemaps.npz"
    if f is not None and f.exists():
        with np.load(f, allow_pickle=False) as z:
            known = dict(zip(z["paths"].tolist(), z["feats"]))
    todo = [p for p in dict.fromkeys(paths) if p not in known]
    if todo:
        feats = egemaps_functionals(load_items([(p, None) for p in todo]), progress=True)
        known.update(zip(todo, feats))
        if f is not None:
            from rrpo.io import atomic_path

            f.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(f) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, paths=np.array(list(known)), feats=np.stack(list(known.values())))
    return np.stack([known[p] for p in paths]) if paths else np.zeros((0, 88))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", action="append", required=True, help="training manifest, one per corpus (repeatable)")
    ap.add_argument("--heldout-speaker", required=True, help="speaker of the --train manifests kept for testing")
    ap.add_argument("--cross", action="append", default=[], help="held-out corpus manifest (repeatable)")
    ap.add_argument("--cache", default=None, help="folder for the feature cache")
    ap.add_argument("overrides", nargs="*", help="judge config key=value")
    args = ap.parse_args()

    from rrpo.audit.commands import ua_interval
    from rrpo.audit.judge import JudgeConfig, fit_judge, select_corpora
    from rrpo.audit.metrics import classification_metrics
    from rrpo.config import load_config
    from rrpo.data.manifest import read_manifest

    t0 = time.time()
    cfg = load_config(JudgeConfig, None, [*args.overrides, f"exclude_speakers=[{args.heldout_speaker}]"])
    cache = Path(args.cache) if args.cache else None
    mans = [read_manifest(m) for m in args.train]
    sel, corpora, groups, dropped = select_corpora(mans, cfg)
    x = cached_features([str(p) for p, _ in sel], cache)
    judge, info = fit_judge(x, [u.emotion for _, u in sel], groups, cfg, corpora=corpora)

    def score(selected) -> dict:
        xt = cached_features([str(p) for p, _ in selected], cache)
        proba = judge.proba_from_features(xt, [u.speaker for _, u in selected])
        m = classification_metrics([u.emotion for _, u in selected], proba, judge.classes)
        return {
            **{k: m[k] for k in ("n", "wa", "ua", "ece", "recall", "confusion")},
            "ua_ci95": ua_interval([u.emotion for _, u in selected], proba, judge.classes),
        }

    def select(manifests, speakers=None):
        return [
            (m.audio_path(u), u)
            for m in manifests
            for u in m.select(emotions=cfg.classes, language=cfg.languages or None, speakers=speakers)
        ]

    held = select(mans, [args.heldout_speaker])
    out = {
        "config": {
            k: getattr(cfg, k)
            for k in (
                "classes",
                "normalization",
                "min_group",
                "c_grid",
                "class_weight",
                "class_masking",
                "small_groups",
                "min_group_classes",
                "sample_weight",
            )
        },
        "train": [str(m) for m in args.train],
        "n_train": info["n_train"],
        "C": info["C"],
        "cv_ua": info["cv_ua"],
        "corpora": info.get("corpora"),
        "train_counts": info["train_counts"],
        "dropped_speakers": dropped["dropped_speakers"],
        "narrow_speakers": dropped["narrow_speakers"],
        "heldout_speaker": args.heldout_speaker,
        "heldout": score(held),
    }
    for c in args.cross:
        # a held-out corpus is judged with each speaker's own batch statistics: speakers with fewer than
        # min_group records (or covering fewer than min_group_classes classes) cannot be normalised and are skipped
        from collections import Counter

        sel_c = select([read_manifest(c)])
        n = Counter(u.speaker for _, u in sel_c)
        cov = {s: len({u.emotion for _, u in sel_c if u.speaker == s}) for s in n}
        ok = {s for s in n if n[s] >= cfg.min_group and cov[s] >= cfg.min_group_classes}
        out[f"cross:{Path(c).stem}"] = {
            **score([(p, u) for p, u in sel_c if u.speaker in ok]),
            "speakers": len(ok),
            "skipped_speakers": len(n) - len(ok),
        }
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
