"""Verbs of the reward model: ``rrpo rm train``, ``rrpo rm eval``, ``rrpo rm ablation``.

rrpo rm train out=runs/rm [RMTrainConfig keys]
rrpo rm eval rm=runs/rm manifest=m.jsonl tokens=tokens/ ['speakers=[a]' 'splits=[test]' out=eval.json]
rrpo rm ablation out=runs/ablation [data=../shared/data] [AblationConfig keys]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from rrpo.config import check, option
from rrpo.data.manifest import Selection


@dataclass
class RMTrainArgs:
    out: str = option("", "run folder (resumed if it holds checkpoints)")
    resume: bool = option(True, "resume from the run folder's last checkpoint (false: start over)")

    def __post_init__(self):
        check(bool(self.out), "out", "is required (the run folder to write)")


@dataclass
class RMEvalArgs(Selection):
    rm: str = option("", "reward-model run folder or checkpoint folder")
    manifest: str = option("", "labelled manifest")
    tokens: str = option("", "token shards of the manifest")
    codec: str = option("", "tokenize on the fly with this codec folder instead of tokens")
    classes: list[str] = option([], "class subset the logits are restricted to ([] = the model's classes present)")
    out: str = option("", "also write the JSON to this file")

    def __post_init__(self):
        check(bool(self.rm), "rm", "is required (the reward-model run folder)")
        check(bool(self.manifest), "manifest", "is required")


@dataclass
class AblationArgs:
    out: str = option("", "output folder (runs, results.json, table.md, plot.png)")
    data: str = option("", "folder of the shared corpora (casia/, esd/) to prepare and tokenize")

    def __post_init__(self):
        check(bool(self.out), "out", "is required")


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.args import add_config_args
    from rrpo.reward.ablation import AblationConfig
    from rrpo.reward.evaluate import EvalConfig
    from rrpo.reward.train import RMTrainConfig

    rm = sub.add_parser("rm", help="train, evaluate and stress-test the token emotion reward model")
    rsub = rm.add_subparsers(dest="rm_verb", metavar="ACTION", required=True)

    t = rsub.add_parser("train", help="pre-train or fine-tune (init_from=...) a reward model")
    add_config_args(
        t, RMTrainConfig, io=RMTrainArgs, old={"--out": ("out", "value"), "--no-resume": ("resume", "false")}
    )
    t.set_defaults(func=cmd_train)

    e = rsub.add_parser("eval", help="metrics, calibration and attacks; prints one JSON object")
    add_config_args(
        e,
        EvalConfig,
        io=RMEvalArgs,
        old={
            **{f"--{k}": (k, "value") for k in ("rm", "manifest", "tokens", "codec", "out")},
            "--classes": ("classes", "list"),
            "--speakers": ("speakers", "list"),
            "--split": ("splits", "list"),
            "--language": ("languages", "list"),
        },
    )
    e.set_defaults(func=cmd_eval)

    a = rsub.add_parser("ablation", help="the regulariser ablation (docs/method.md §3) over one config")
    add_config_args(a, AblationConfig, io=AblationArgs, old={"--out": ("out", "value"), "--data": ("data", "value")})
    a.set_defaults(func=cmd_ablation)


def cmd_train(args) -> int:
    import torch

    from rrpo.args import config_from_args
    from rrpo.reward.train import RMTrainConfig, train_rm

    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg, io = config_from_args(RMTrainConfig, args, io=RMTrainArgs)
    res = train_rm(cfg, io.out, resume=io.resume, argv=sys.argv)
    print(json.dumps(res, ensure_ascii=False, default=str))
    return 0


def cmd_eval(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.errors import RrpoError
    from rrpo.reward.data import DataConfig, load_items
    from rrpo.reward.evaluate import EvalConfig, evaluate_items
    from rrpo.reward.model import load_reward_model

    cfg, args = config_from_args(EvalConfig, args, io=RMEvalArgs)
    model = load_reward_model(args.rm)
    dc = DataConfig(
        manifests=[args.manifest],
        splits=args.splits,
        languages=args.languages,
        speakers=args.speakers,
        exclude_speakers=args.exclude_speakers,
        max_tokens=0,
    )
    if args.codec:
        import tempfile

        from rrpo.reward.data import tokenize_manifest

        with tempfile.TemporaryDirectory(prefix="rrpo-rm-eval-") as tmp:  # tokens live in memory once loaded
            dc.tokens = [tokenize_manifest(args.codec, args.manifest, tmp)]
            items, summary = load_items(dc, model.classes, model.vocab_size, what="eval")
    elif args.tokens:
        dc.tokens = [args.tokens]
        items, summary = load_items(dc, model.classes, model.vocab_size, what="eval")
    else:
        raise RrpoError("give tokens=SHARDS (from `rrpo tokenize`) or codec=DIR")
    out = {"rm": str(args.rm), "manifest": str(args.manifest)}
    out.update(
        evaluate_items(
            model, items, model.classes, cfg, args.classes or None, dropped=summary["dropped_other_emotions"]
        )
    )
    if args.out:
        from rrpo.io import write_json

        write_json(args.out, out)
    print(json.dumps(out, ensure_ascii=False))
    return 0


def cmd_ablation(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.reward.ablation import AblationConfig, run_ablation

    cfg, io = config_from_args(AblationConfig, args, io=AblationArgs)
    res = run_ablation(cfg, io.out, data=io.data or None)
    print(json.dumps({k: res[k] for k in ("out", "table", "plot", "pretrain")}, ensure_ascii=False))
    return 0
