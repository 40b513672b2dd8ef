"""Verbs of the audit: ``rrpo judge train``, ``rrpo judge eval`` and ``rrpo audit``.

``rrpo judge train 'manifests=[M, M2]' out=DIR [--config C] [key=value ...]`` fits the eGeMAPS judge
(:mod:`rrpo.audit.judge`) on the records of the manifests that pass the config's selection
(``classes``, ``splits``, ``languages``, ``speakers``, ``exclude_speakers``) and writes a run folder
that is also a judge folder (``judge.json``, ``weights.npz``, ``config.yaml``, ``command.txt``,
``metrics.jsonl``).

One manifest per corpus: with several, speaker groups are ``corpus/speaker`` and, with
``class_masking``, an utterance's softmax runs over its corpus' classes only
(:func:`rrpo.audit.judge.select_corpora`). ``features=logmel-stats`` trains the second judge
(statistics of log-mel bands, :mod:`rrpo.audit.mel_judge`) with the same trainer.

``rrpo judge train-mel 'manifests=[M, M2]' out=DIR [--config C] [key=value ...]`` trains the
second judge built as a small network on log-mel frames (:mod:`rrpo.audit.mel_judge`).

``rrpo judge eval judge=DIR 'manifests=[M]' ['speakers=[a]' 'splits=[test]' out=FILE]`` prints one
JSON object: n, wa, ua, ``ua_ci95`` (a 95 % stratified bootstrap interval of UA), per-class recall,
ECE and the confusion matrix on the selected records (emotions outside the judge's classes are
skipped). Speaker groups for normalisation are the manifests' ``speaker`` fields.

``rrpo audit run=RUN codec=CODEC judge=JUDGE [key=value ...]`` audits every checkpoint of an
optimisation run (:mod:`rrpo.audit.overopt`).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from rrpo.config import check, option
from rrpo.data.manifest import Selection

log = logging.getLogger(__name__)


@dataclass
class JudgeTrainArgs:
    manifests: list[str] = option([], "training manifests")
    out: str = option("", "judge folder to write (a run directory)")
    feature_cache: str = option(
        "", "folder keeping each audio file's features for later runs (keyed by path, size and mtime); '' = none"
    )

    def __post_init__(self):
        check(bool(self.manifests), "manifests", "is required, e.g. 'manifests=[corpus/manifest.jsonl]'")
        check(bool(self.out), "out", "is required (the judge folder to write)")


@dataclass
class JudgeEvalArgs(Selection):
    judge: str = option("", "judge folder")
    manifests: list[str] = option([], "evaluation manifests")
    out: str = option("", "also write the JSON here")
    feature_cache: str = option(
        "", "folder keeping each audio file's features for later runs (eGeMAPS / log-mel statistics judges); '' = none"
    )

    def __post_init__(self):
        check(bool(self.judge), "judge", "is required (the judge folder)")
        check(bool(self.manifests), "manifests", "is required")


_SELECTION_FLAGS = {
    "--speakers": ("speakers", "list"),
    "--exclude-speakers": ("exclude_speakers", "list"),
    "--languages": ("languages", "list"),
    "--splits": ("splits", "list"),
}


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.args import add_config_args
    from rrpo.audit.judge import JudgeConfig
    from rrpo.audit.overopt import AuditConfig

    p = sub.add_parser("judge", help="train or evaluate the independent emotion judge (eGeMAPS + logistic)")
    jsub = p.add_subparsers(dest="judge_verb", metavar="ACTION", required=True)

    t = jsub.add_parser("train", help="fit the judge on real recordings")
    add_config_args(
        t, JudgeConfig, io=JudgeTrainArgs, old={"--manifest": ("manifests", "list"), "--out": ("out", "value")}
    )
    t.set_defaults(func=cmd_train)

    from rrpo.audit.mel_judge import MelJudgeConfig

    m = jsub.add_parser("train-mel", help="fit the second judge built as a small network on log-mel frames")
    add_config_args(
        m, MelJudgeConfig, io=JudgeTrainArgs, old={"--manifest": ("manifests", "list"), "--out": ("out", "value")}
    )
    m.set_defaults(func=cmd_train_mel)

    e = jsub.add_parser("eval", help="held-out accuracy, per-class recall and calibration as JSON")
    add_config_args(
        e,
        JudgeEvalArgs,
        old={
            "--judge": ("judge", "value"),
            "--manifest": ("manifests", "list"),
            "--out": ("out", "value"),
            **_SELECTION_FLAGS,
        },
    )
    e.set_defaults(func=cmd_eval)

    a = sub.add_parser(
        "audit", help="proxy vs judge, artifacts and distances for every checkpoint of an optimisation run"
    )
    add_config_args(a, AuditConfig, old={f"--{k}": (k, "value") for k in ("run", "codec", "judge", "out")})
    a.set_defaults(func=cmd_audit)


def load_items(selected, sr: int = 16000):
    """Load the audio of ``(path, utterance)`` pairs as ``(audio, sr)`` items (progress bar)."""
    from tqdm import tqdm

    from rrpo.data.audio import load_audio

    return [load_audio(p, sr) for p, _ in tqdm(selected, desc="loading audio", unit="file", leave=False)]


def cmd_train(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.audit.judge import EgemapsJudge, JudgeConfig, fit_judge, select_corpora
    from rrpo.data.manifest import read_manifest
    from rrpo.errors import RrpoError
    from rrpo.runs import RunDir

    cfg, io = config_from_args(JudgeConfig, args, io=JudgeTrainArgs)
    mans = [read_manifest(m) for m in io.manifests]
    sel, corpora, groups, dropped = select_corpora(mans, cfg)
    if not sel:
        raise RrpoError("no records pass the selection (classes, splits, languages, speakers)", io.manifests[0])
    from rrpo.audit.features import cached_features
    from rrpo.audit.judge import MelStatsJudge

    kind = MelStatsJudge if cfg.features == "logmel-stats" else EgemapsJudge
    feats = cached_features(
        [p for p, _ in sel],
        lambda paths: kind.features(load_items([(p, None) for p in paths]), progress=True),
        Path(io.feature_cache) / f"{cfg.features}.npz" if io.feature_cache else None,
    )
    judge, info = fit_judge(feats, [u.emotion for _, u in sel], groups, cfg, corpora=corpora)
    info.update(dropped)
    judge.meta["manifests"] = [str(Path(m).resolve()) for m in io.manifests]
    run = RunDir.create(io.out, cfg)
    judge.save(run.path)
    run.log({f"judge/cv_ua_C{c}": v for c, v in info["cv_ua"].items()} | {"judge/C": info["C"]})
    print(json.dumps({"judge": str(run.path), **info}, ensure_ascii=False))
    return 0


def cmd_train_mel(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.audit.mel_judge import MelJudgeConfig, train_mel_judge
    from rrpo.data.manifest import read_manifest

    cfg, io = config_from_args(MelJudgeConfig, args, io=JudgeTrainArgs)
    judge, info = train_mel_judge(cfg, [read_manifest(m) for m in io.manifests], io.out)
    judge.meta["manifests"] = [str(Path(m).resolve()) for m in io.manifests]
    judge.save(io.out)
    print(
        json.dumps(
            {
                "judge": str(io.out),
                **{k: v for k, v in info.items() if k != "last"},
                "last": {k: round(v, 4) for k, v in info["last"].items()},
            },
            ensure_ascii=False,
        )
    )
    return 0


def ua_interval(labels, proba, classes) -> list[float]:
    """95 % stratified bootstrap interval of UA (seed 0; rrpo.stats.unweighted_accuracy_ci)."""
    from rrpo.stats import unweighted_accuracy_ci

    r = unweighted_accuracy_ci(labels, [classes[int(i)] for i in proba.argmax(1)])
    return [r["lo"], r["hi"]]


def cmd_eval(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.audit.judge import load_judge, select_utterances
    from rrpo.audit.metrics import classification_metrics
    from rrpo.data.manifest import read_manifest
    from rrpo.errors import RrpoError
    from rrpo.io import write_json

    a = config_from_args(JudgeEvalArgs, args)
    judge = load_judge(a.judge)
    mans = [read_manifest(m) for m in a.manifests]
    sel = select_utterances(mans, judge.classes, a)
    if not sel:
        raise RrpoError(
            f"no records of the judge's classes ({', '.join(judge.classes)}) pass the selection", a.manifests[0]
        )
    groups = [u.speaker for _, u in sel]
    cache_name = {"EgemapsJudge": "egemaps", "MelStatsJudge": "logmel-stats"}.get(type(judge).__name__)
    if a.feature_cache and cache_name:
        from rrpo.audit.features import cached_features

        feats = cached_features(
            [p for p, _ in sel],
            lambda paths: judge.features(load_items([(p, None) for p in paths]), progress=True),
            Path(a.feature_cache) / f"{cache_name}.npz",
        )
        proba = judge.proba_from_features(feats, groups)
    else:
        proba = judge.predict_proba(load_items(sel), groups=groups)
    out = {
        "judge": str(a.judge),
        "manifests": list(a.manifests),
        "speakers": sorted({u.speaker for _, u in sel}),
        **classification_metrics([u.emotion for _, u in sel], proba, judge.classes),
    }
    out["ua_ci95"] = ua_interval([u.emotion for _, u in sel], proba, judge.classes)
    if a.out:
        write_json(a.out, out)
    print(json.dumps(out, ensure_ascii=False))
    return 0


def cmd_audit(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.audit.overopt import AuditConfig, run_audit

    cfg = config_from_args(AuditConfig, args)
    res = run_audit(cfg)
    fin, st = res["final"], res["start"]
    print(
        json.dumps(
            {
                "run": res["run"],
                "points": len(res["points"]),
                "flagged_steps": res["flagged_steps"],
                "flagged": res["flagged"],
                "start": {"judge": st["judge"]["target_prob"], "proxy": st["proxy_prob"], **_per(st)},
                "final": {
                    "judge": fin["judge"]["target_prob"],
                    "proxy": fin["proxy_prob"],
                    "sqrt_kl": fin["sqrt_kl"],
                    "hacking_gap": fin["hacking_gap"],
                    **_per(fin),
                },
            },
            default=float,
        )
    )
    return 0


def _per(point: dict) -> dict:
    """``{"per": pooled PER}`` of an audited point with a phone judge, else nothing."""
    per = (point.get("per") or {}).get("per")
    return {"per": per["stat"]} if per else {}
