"""Verbs of the reward model: ``rrpo rm train``, ``rrpo rm eval``, ``rrpo rm ablation``."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.cli import add_config_args
    from rrpo.reward.ablation import AblationConfig
    from rrpo.reward.evaluate import EvalConfig
    from rrpo.reward.train import RMTrainConfig

    rm = sub.add_parser("rm", help="train, evaluate and stress-test the token emotion reward model")
    rsub = rm.add_subparsers(dest="rm_verb", metavar="ACTION", required=True)

    t = rsub.add_parser("train", help="pre-train or fine-tune (init_from=...) a reward model")
    t.add_argument("--out", required=True, help="run folder (resumed if it holds checkpoints)")
    t.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    add_config_args(t, RMTrainConfig)
    t.set_defaults(func=cmd_train)

    e = rsub.add_parser("eval", help="metrics, calibration and attacks; prints one JSON object")
    e.add_argument("--rm", required=True, help="reward-model run folder or checkpoint folder")
    e.add_argument("--manifest", required=True, help="labelled manifest")
    e.add_argument("--tokens", default=None, help="token shards of the manifest")
    e.add_argument("--codec", default=None, help="tokenize on the fly with this codec folder instead of --tokens")
    e.add_argument("--classes", default=None, help="comma-separated class subset (logits restricted to it)")
    e.add_argument("--speakers", default=None, help="comma-separated speakers to keep")
    e.add_argument("--split", default=None, help="comma-separated splits to keep")
    e.add_argument("--language", default=None, help="comma-separated languages to keep")
    e.add_argument("--out", default=None, help="also write the JSON to this file")
    add_config_args(e, EvalConfig)
    e.set_defaults(func=cmd_eval)

    a = rsub.add_parser("ablation", help="the regulariser ablation (docs/method.md §3) over one config")
    a.add_argument("--out", required=True, help="output folder (runs, results.json, table.md, plot.png)")
    a.add_argument("--data", default=None, help="folder of the shared corpora (casia/, esd/) to prepare and tokenize")
    add_config_args(a, AblationConfig)
    a.set_defaults(func=cmd_ablation)


def _csv(s):
    return [x.strip() for x in s.split(",") if x.strip()] if s else []


def cmd_train(args) -> int:
    import torch

    from rrpo.cli import config_from_args
    from rrpo.reward.train import RMTrainConfig, train_rm

    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = config_from_args(RMTrainConfig, args)
    res = train_rm(cfg, args.out, resume=not args.no_resume, argv=sys.argv)
    print(json.dumps(res, ensure_ascii=False, default=str))
    return 0


def cmd_eval(args) -> int:
    from rrpo.cli import config_from_args
    from rrpo.errors import RrpoError
    from rrpo.reward.data import DataConfig, load_items
    from rrpo.reward.evaluate import EvalConfig, evaluate_items
    from rrpo.reward.model import load_reward_model

    cfg = config_from_args(EvalConfig, args)
    model = load_reward_model(args.rm)
    dc = DataConfig(manifests=[args.manifest], speakers=_csv(args.speakers), splits=_csv(args.split),
                    languages=_csv(args.language), max_tokens=0)
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
        raise RrpoError("give --tokens SHARDS (from `rrpo tokenize`) or --codec DIR")
    out = {"rm": str(args.rm), "manifest": str(args.manifest)}
    out.update(evaluate_items(model, items, model.classes, cfg, _csv(args.classes) or None,
                              dropped=summary["dropped_other_emotions"]))
    if args.out:
        from rrpo.io import write_json
        write_json(args.out, out)
    print(json.dumps(out, ensure_ascii=False))
    return 0


def cmd_ablation(args) -> int:
    from rrpo.cli import config_from_args
    from rrpo.reward.ablation import AblationConfig, run_ablation

    cfg = config_from_args(AblationConfig, args)
    res = run_ablation(cfg, args.out, data=args.data)
    print(json.dumps({k: res[k] for k in ("out", "table", "plot", "pretrain")}, ensure_ascii=False))
    return 0
