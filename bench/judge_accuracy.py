"""Held-out accuracy of the eGeMAPS judge: leave one speaker out of a training manifest, test on
that speaker and on a second (cross-lingual) manifest. Prints one JSON object.

    python bench/judge_accuracy.py --train casia.jsonl --cross esd.jsonl [--normalization speaker]

Manifests are rrpo manifests (``rrpo prepare casia ...``). Features are computed once per file;
each fold fits ``rrpo.audit.judge.fit_judge`` exactly as ``rrpo judge train`` does, and scores with
the test speaker's own batch statistics as ``rrpo judge eval`` does.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True, help="manifest whose speakers are held out in turn")
    ap.add_argument("--cross", default=None, help="a second manifest scored by every fold's judge")
    ap.add_argument("--normalization", default="speaker", choices=["speaker", "none"])
    args = ap.parse_args()

    from rrpo.audit.commands import load_items
    from rrpo.audit.judge import EgemapsJudge, JudgeConfig, fit_judge, select_utterances
    from rrpo.audit.metrics import classification_metrics
    from rrpo.data.manifest import Selection, read_manifest

    t0 = time.time()
    cfg = JudgeConfig(normalization=args.normalization)

    def load(path):
        sel = select_utterances([read_manifest(path)], cfg.classes, Selection())
        feats = EgemapsJudge.features(load_items(sel), progress=True)
        return feats, np.array([u.emotion for _, u in sel]), np.array([u.speaker for _, u in sel])

    x, y, spk = load(args.train)
    cross = load(args.cross) if args.cross else None
    folds = []
    for held in sorted(set(spk.tolist())):
        tr = spk != held
        judge, info = fit_judge(x[tr], y[tr], spk[tr], cfg)
        m = classification_metrics(y[~tr], judge.proba_from_features(x[~tr], spk[~tr]), judge.classes)
        fold = {
            "held_out": held,
            "C": info["C"],
            "n": m["n"],
            "wa": m["wa"],
            "ua": m["ua"],
            "ece": m["ece"],
            "recall": m["recall"],
        }
        if cross is not None:
            c = classification_metrics(cross[1], judge.proba_from_features(cross[0], cross[2]), judge.classes)
            fold["cross"] = {"n": c["n"], "wa": c["wa"], "ua": c["ua"], "ece": c["ece"], "recall": c["recall"]}
        folds.append(fold)
    out = {
        "normalization": args.normalization,
        "classes": list(cfg.classes),
        "folds": folds,
        "mean_held_out_wa": float(np.mean([f["wa"] for f in folds])),
        "mean_cross_wa": float(np.mean([f["cross"]["wa"] for f in folds])) if cross is not None else None,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
