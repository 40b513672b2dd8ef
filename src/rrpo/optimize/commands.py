"""``rrpo optimize --config C [key=value ...]``: DiffRO / RRPO / GRPO / REINFORCE / continued SFT."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.cli import add_config_args
    from rrpo.optimize.trainer import OptimizeConfig

    p = sub.add_parser("optimize", help="optimise a policy against frozen reward models (diffro = DiffRO/RRPO, grpo, reinforce, sft)")
    add_config_args(p, OptimizeConfig)
    p.set_defaults(func=cmd_optimize)


def cmd_optimize(args) -> int:
    from rrpo.cli import config_from_args
    from rrpo.optimize.trainer import OptimizeConfig, run_optimize

    cfg = config_from_args(OptimizeConfig, args)
    out = run_optimize(cfg)
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}, default=str))
    return 0
