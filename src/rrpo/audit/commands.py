"""Verbs of the audit: ``rrpo judge train`` and ``rrpo judge eval``.

``rrpo judge train --manifest M [--manifest M2 ...] --out DIR [--config C] [key=value ...]``
fits the eGeMAPS judge (:mod:`rrpo.audit.judge`) on the records of the manifests that pass the
config's filters (classes, languages, speakers, exclude_speakers, splits) and writes a run folder
that is also a judge folder (``judge.json``, ``weights.npz``, ``config.yaml``, ``command.txt``,
``metrics.jsonl``).

``rrpo judge eval --judge DIR --manifest M [...] [--speakers ...] [--exclude-speakers ...]
[--languages ...] [--splits ...] [--out FILE]`` prints one JSON object: n, wa, ua, per-class
recall, ECE and the confusion matrix on the selected records (emotions outside the judge's classes
are skipped), and ``ua_ci95``, a 95 % stratified bootstrap interval of UA. Speaker groups for
normalisation are the manifests' ``speaker`` fields.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.audit.judge import JudgeConfig
    from rrpo.cli import add_config_args

    p = sub.add_parser("judge", help="train or evaluate the independent emotion judges (eGeMAPS + logistic; "
                                      "log-mel network)")
    jsub = p.add_subparsers(dest="judge_verb", metavar="ACTION", required=True)

    t = jsub.add_parser("train", help="fit the judge on real recordings")
    t.add_argument("--manifest", action="append", required=True, help="training manifest (repeatable)")
    t.add_argument("--out", required=True, help="judge folder to write (a run directory)")
    add_config_args(t, JudgeConfig)
    t.set_defaults(func=cmd_train)

    from rrpo.audit.mel_judge import MelJudgeConfig

    m = jsub.add_parser("train-mel", help="fit the second judge (a small network on log-mel frames) on real recordings")
    m.add_argument("--manifest", action="append", required=True, help="training manifest, one per corpus (repeatable)")
    m.add_argument("--out", required=True, help="judge folder to write (a run directory; resumes if interrupted)")
    add_config_args(m, MelJudgeConfig)
    m.set_defaults(func=cmd_train_mel)

    e = jsub.add_parser("eval", help="held-out accuracy, per-class recall and calibration as JSON")
    e.add_argument("--judge", required=True, help="judge folder")
    e.add_argument("--manifest", action="append", required=True, help="evaluation manifest (repeatable)")
    e.add_argument("--speakers", nargs="+", default=None, help="keep only these speakers")
    e.add_argument("--exclude-speakers", nargs="+", default=None, help="drop these speakers")
    e.add_argument("--languages", nargs="+", default=None, help="keep only these languages")
    e.add_argument("--splits", nargs="+", default=None, help="keep only these splits")
    e.add_argument("--out", default=None, help="also write the JSON here")
    e.set_defaults(func=cmd_eval)


def load_items(selected, sr: int = 16000):
    """Load the audio of ``(path, utterance)`` pairs as ``(audio, sr)`` items (progress bar)."""
    from tqdm import tqdm

    from rrpo.data.audio import load_audio

    return [load_audio(p, sr) for p, _ in tqdm(selected, desc="loading audio", unit="file", leave=False)]


def cmd_train(args) -> int:
    from rrpo.audit.judge import EgemapsJudge, JudgeConfig, fit_judge, select_corpora
    from rrpo.cli import config_from_args
    from rrpo.data.manifest import read_manifest
    from rrpo.errors import RrpoError
    from rrpo.runs import RunDir

    cfg = config_from_args(JudgeConfig, args)
    mans = [read_manifest(m) for m in args.manifest]
    sel, corpora, groups, dropped = select_corpora(mans, cfg)
    if not sel:
        raise RrpoError("no records pass the filters (classes, languages, speakers, splits)", args.manifest[0])
    if cfg.features == "logmel-stats":
        from rrpo.audit.mel_judge import MelStatsJudge
        feats = MelStatsJudge.features(load_items(sel), progress=True)
    else:
        feats = EgemapsJudge.features(load_items(sel), progress=True)
    judge, info = fit_judge(feats, [u.emotion for _, u in sel], groups, cfg, corpora=corpora)
    info.update(dropped)
    judge.meta["manifests"] = [str(Path(m).resolve()) for m in args.manifest]
    run = RunDir.create(args.out, cfg)
    judge.save(run.path)
    run.log({f"judge/cv_ua_C{c}": v for c, v in info["cv_ua"].items()} | {"judge/C": info["C"]})
    print(json.dumps({"judge": str(run.path), **info}, ensure_ascii=False))
    return 0


def cmd_train_mel(args) -> int:
    from rrpo.audit.mel_judge import MelJudgeConfig, train_mel_judge
    from rrpo.cli import config_from_args
    from rrpo.data.manifest import read_manifest

    cfg = config_from_args(MelJudgeConfig, args)
    judge, info = train_mel_judge(cfg, [read_manifest(m) for m in args.manifest], args.out)
    judge.meta["manifests"] = [str(Path(m).resolve()) for m in args.manifest]
    judge.save(args.out)
    print(json.dumps({"judge": str(args.out), **{k: v for k, v in info.items() if k != "last"},
                      "last": {k: round(v, 4) for k, v in info["last"].items()}}, ensure_ascii=False))
    return 0


def ua_interval(labels, proba, classes) -> list[float]:
    """95 % stratified bootstrap interval of UA (seed 0; rrpo.stats.unweighted_accuracy_ci)."""
    from rrpo.stats import unweighted_accuracy_ci

    r = unweighted_accuracy_ci(labels, [classes[int(i)] for i in proba.argmax(1)])
    return [r["lo"], r["hi"]]


def cmd_eval(args) -> int:
    from rrpo.audit.judge import load_judge, select_utterances
    from rrpo.audit.metrics import classification_metrics
    from rrpo.data.manifest import read_manifest
    from rrpo.errors import RrpoError
    from rrpo.io import write_json

    judge = load_judge(args.judge)
    mans = [read_manifest(m) for m in args.manifest]
    sel = select_utterances(mans, judge.classes, args.languages, args.speakers, args.exclude_speakers, args.splits)
    if not sel:
        raise RrpoError(f"no records of the judge's classes ({', '.join(judge.classes)}) pass the filters",
                        args.manifest[0])
    proba = judge.predict_proba(load_items(sel), groups=[u.speaker for _, u in sel])
    out = {"judge": str(args.judge), "manifests": list(args.manifest),
           "speakers": sorted({u.speaker for _, u in sel}),
           **classification_metrics([u.emotion for _, u in sel], proba, judge.classes)}
    out["ua_ci95"] = ua_interval([u.emotion for _, u in sel], proba, judge.classes)
    if args.out:
        write_json(args.out, out)
    print(json.dumps(out, ensure_ascii=False))
    return 0
