"""The ``rrpo experiment`` verb: build the study's stages, run them, record their times, print the
study's summary."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rrpo.experiment.config import ExperimentArgs, ExperimentConfig


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.args import add_config_args

    p = sub.add_parser(
        "experiment",
        help="the paper's comparison on real CASIA speech (SFT vs DiffRO vs RRPO, several seeds, audited); "
        "with study=overoptimisation, the same systems pushed until the vanilla reward model is over-optimised",
    )
    add_config_args(
        p,
        ExperimentConfig,
        io=ExperimentArgs,
        old={"--data": ("data", "value"), "--out": ("out", "value"), "--force": ("force", "list")},
    )
    p.set_defaults(func=cmd_experiment)


def cmd_experiment(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.experiment.layout import expand_force
    from rrpo.experiment.pipeline import build_stages
    from rrpo.experiment.studies import STUDIES
    from rrpo.stages import run_stages, stage_seconds

    cfg, io = config_from_args(ExperimentConfig, args, io=ExperimentArgs)
    study = STUDIES[cfg.study]
    out = Path(io.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stages = build_stages(cfg, Path(io.data), out, args.dispatch)
    force = expand_force(io.force, [st.name for st in stages])
    times = run_stages(stages, args.dispatch, force, tag="experiment", jobs=cfg.jobs, log_dir=out / "logs")
    rec = out / study.seconds
    earlier = json.loads(rec.read_text())["stage_seconds"] if rec.exists() else {}
    merged = stage_seconds(times, stages, earlier)
    rec.write_text(
        json.dumps(
            {
                "stage_seconds": merged,
                "total_seconds": round(sum(merged.values()), 1),
                "this_invocation_seconds": round(time.perf_counter() - t0, 1),
            },
            indent=2,
        )
        + "\n"
    )
    print((out / study.summary).read_text())
    print(f"results: {(out / 'results').resolve()}\nreport: {(out / study.report / 'index.html').resolve()}")
    return 0
