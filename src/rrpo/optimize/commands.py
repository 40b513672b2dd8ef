"""``rrpo optimize --config C [key=value ...]``: DiffRO / RRPO / GRPO / REINFORCE / continued SFT.

The verb composes the trainer (:func:`rrpo.optimize.trainer.run_optimize`) with the judge watch of
``watch.*`` (:func:`judge_watch`), passed to the training loop as its ``on_step`` hook: the trainer
itself knows nothing of the audit.
"""

from __future__ import annotations

import argparse
import json
import logging

from rrpo.errors import RrpoError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.args import add_config_args
    from rrpo.optimize.trainer import OptimizeConfig

    p = sub.add_parser(
        "optimize", help="optimise a policy against frozen reward models (diffro = DiffRO/RRPO, grpo, reinforce, sft)"
    )
    add_config_args(p, OptimizeConfig)
    p.set_defaults(func=cmd_optimize)


def optimize(cfg, argv: list[str] | None = None) -> dict:
    """:func:`~rrpo.optimize.trainer.run_optimize` with the judge watch when ``watch.every`` is set."""
    from rrpo.optimize.trainer import run_optimize

    return run_optimize(cfg, argv, on_step=judge_watch(cfg) if cfg.watch.every else None)


def cmd_optimize(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.optimize.trainer import OptimizeConfig

    cfg = config_from_args(OptimizeConfig, args)
    out = optimize(cfg)
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}, default=str))
    return 0


def judge_watch(cfg):
    """The ``on_step`` hook factory of ``watch.*``: every ``watch.every`` steps score the policy with
        the judge (rank 0; :class:`rrpo.audit.scorer.Scorer`), log ``judge/*``, ``proxy/*`` and
        ``audit/*``, and return True to stop when the emotion flag rises (the judge fell after its peak by more
    than its sampling noise while the proxy rose, :func:`rrpo.audit.paths.emotion_flags`; the judge is
    anchored on real recordings, :mod:`rrpo.audit.anchor`) and ``watch.stop_on_flag`` is set.
        Never feeds a gradient: it only reads the policy."""
    w = cfg.watch
    if not w.judge or not w.codec:
        raise RrpoError("config: watch.every needs watch.judge and watch.codec")

    def make(state):
        import torch
        import torch.distributed as dist

        from rrpo.audit.anchor import AnchorConfig
        from rrpo.audit.judge import load_judge
        from rrpo.audit.paths import emotion_flags
        from rrpo.audit.scorer import AuditPrompts, Scorer
        from rrpo.codec import load_codec
        from rrpo.data.manifest import read_manifest
        from rrpo.train.loop import world

        history: list[tuple[float, list[float]]] = []  # (proxy, per-utterance judge correctness)
        clusters: list[str] = []
        scorer = None
        if state.rank == 0:
            prompts = AuditPrompts(splits=list(w.splits), max_texts=w.max_texts)
            man = read_manifest(w.manifest or cfg.prompts.manifest)
            scorer = Scorer(
                state.start,
                state.reward_models,
                [r.name for r in cfg.rewards],
                load_codec(w.codec),
                load_judge(w.judge),
                man,
                prompts=prompts,
                sampling=cfg.sampling,
                recognizer=False,
                bf16=cfg.train.bf16,
                anchor=AnchorConfig(max_recordings=w.max_recordings),
            )
            clusters.extend(r["text"] for r in scorer.rows)

        def record(step, pol):
            s = scorer.score(pol)
            history.append((s["proxy_prob"], [float(u.get("judge_correct", 0.0)) for u in s["utterances"]]))
            flag = emotion_flags([h[1] for h in history], [h[0] for h in history], clusters, w.n_boot)[-1]["flag"]
            state.run.log(
                {
                    "judge/target_prob": s["judge"]["target_prob"],
                    "judge/acc": s["judge"]["accuracy"],
                    "proxy/p_target": s["proxy_prob"],
                    "audit/sqrt_kl": s["sqrt_kl"],
                    "audit/hacking_gap": s["hacking_gap"],
                    "audit/hacking_flag": float(flag),
                },
                step,
            )
            return flag

        started = False

        def on_step(step: int, metrics: dict) -> bool:
            nonlocal started
            stop = False
            if state.rank == 0:
                if not started:
                    record(0, state.start)
                    started = True
                if step % w.every == 0:
                    flag = record(step, state.policy)
                    stop = bool(flag and w.stop_on_flag)
                    if stop:
                        log.warning(
                            "emotion flag at step %d: the judge fell after its peak while the proxy rose; stopping",
                            step,
                        )
            if world()[1] > 1:
                t = torch.tensor([float(stop)])
                dist.broadcast(t, 0)
                stop = bool(t.item())
            return stop

        return on_step

    return make
