"""``rrpo demo``: the whole pipeline on built-in defaults, with no data and no checkpoints.

synthesise the corpus → learn the codec → tokenise → pre-train the reward model → fine-tune it
twice (vanilla, and robust: label smoothing + energy-adaptive mixup + FGM) → SFT the tiny policy
→ train the independent judge → optimise with DiffRO against the vanilla RM and with RRPO against
the robust RM (same budget) → audit both → write the report.

Every stage is an ordinary ``rrpo`` verb with the overrides listed in :class:`DemoConfig` (so the
demo doubles as a worked example of the commands), writes its own folder under ``out``, and is
skipped when that folder holds a ``.done`` marker from an earlier run. Stages run in-process, except
that with ``jobs=2`` (the default) the two fine-tunings, then DiffRO, RRPO and their audits run as
one-thread child processes side by side (logs in ``out/logs``). ``rrpo demo --config configs/demo_tiny.yaml [out=demo_out] ['force=[report]']`` runs a shrunken version in a minute or two.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from rrpo.args import yaml_list
from rrpo.config import option

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    synth: list[str] = option([], "overrides for `rrpo synth` (SynthConfig keys)")
    codec: list[str] = option(
        [
            "spectral_clusters=128",
            "pitch_bins=8",
            "energy_bins=4",
            "max_train_frames=60000",
            "kmeans_iters=40",
        ],
        "overrides for `rrpo codec train` (a 4,608-token codec keeps the demo's models small)",
    )
    rm_pretrain: list[str] = option(
        [
            "train.steps=400",
            "train.batch_size=16",
            "train.lr=1e-3",
            "train.warmup_steps=20",
            "data.max_tokens=300",
            "model.embedding=free+features",
        ],
        "overrides for the reward model's pre-training on the whole synthetic train split (both languages)",
    )
    rm_finetune: list[str] = option(
        ["train.steps=150", "train.batch_size=16", "train.lr=3e-4", "data.max_tokens=300", "data.languages=[zh]"],
        "overrides for both fine-tunings (Mandarin only, as in the paper)",
    )
    robust: list[str] = option(
        ["reg.label_smoothing=0.1", "reg.eam.enabled=true", "reg.fgm.enabled=true"],
        "what makes the robust reward model robust (docs/method.md §3)",
    )
    sft: list[str] = option(
        [
            "model.hidden_size=128",
            "model.layers=2",
            "model.heads=4",
            "model.kv_heads=2",
            "model.intermediate_size=256",
            "train.steps=600",
            "train.batch_size=16",
            "train.lr=2e-3",
            "train.warmup_steps=30",
            "train.eval_every=0",
        ],
        "overrides for `rrpo policy sft` of the tiny policy",
    )
    judge: list[str] = option(["splits=[train]", "c_grid=[0.1]"], "overrides for `rrpo judge train`")
    optimize: list[str] = option(
        [
            "train.steps=60",
            "train.batch_size=4",
            "train.lr=3e-4",
            "train.ckpt_every=15",
            "train.schedule=constant",
            "beta=0.1",
            "sampling.max_ratio=8",
            "prompts.splits=[train]",
        ],
        "overrides for both `rrpo optimize` runs (DiffRO and RRPO get the same budget)",
    )
    audit: list[str] = option(
        ["prompts.splits=[test]", "prompts.max_texts=3", "sampling.max_ratio=8"],
        "overrides for `rrpo audit` of both runs",
    )

    def __post_init__(self):
        from rrpo.stages import check_stage_overrides

        check_stage_overrides(self, OVERRIDE_TARGETS)


#: The verb config class each override list of :class:`DemoConfig` is given to.
OVERRIDE_TARGETS = {
    "synth": "rrpo.data.synth:SynthConfig",
    "codec": "rrpo.codec.builtin:BuiltinCodecConfig",
    "rm_pretrain": "rrpo.reward.train:RMTrainConfig",
    "rm_finetune": "rrpo.reward.train:RMTrainConfig",
    "robust": "rrpo.reward.train:RMTrainConfig",
    "sft": "rrpo.policy.sft:SFTConfig",
    "judge": "rrpo.audit.judge:JudgeConfig",
    "optimize": "rrpo.optimize.trainer:OptimizeConfig",
    "audit": "rrpo.audit.overopt:AuditConfig",
}


STAGES = (
    "corpus",
    "codec",
    "tokens",
    "rm_pretrain",
    "rm_vanilla",
    "rm_robust",
    "sft",
    "judge",
    "diffro",
    "rrpo",
    "audit_diffro",
    "audit_rrpo",
    "report",
)


@dataclass
class DemoArgs:
    out: str = option("demo_out", "folder for every stage's outputs")
    force: list[str] = option([], f"stages to redo even if done ({', '.join(STAGES)})")
    jobs: int = option(
        2,
        "stages run side by side as one-thread child processes (logs in OUT/logs): the two fine-tunings, "
        "then DiffRO and RRPO and their audits; 1: every stage in this process, in order",
    )

    def __post_init__(self):
        from rrpo.config import check

        check(self.jobs >= 1, "jobs", "must be at least 1")


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.args import add_config_args

    p = sub.add_parser("demo", help="run the whole pipeline on the built-in synthetic corpus (no data needed)")
    add_config_args(p, DemoConfig, io=DemoArgs, old={"--out": ("out", "value"), "--force": ("force", "list")})
    p.set_defaults(func=cmd_demo)


def stage_commands(cfg: DemoConfig, out: Path) -> dict[str, list[str]]:
    """The ``rrpo`` argument list of every stage, in order."""
    o = out.resolve()
    man, tok = o / "corpus" / "manifest.jsonl", o / "tokens"
    data = [f"data.manifests=[{man}]", f"data.tokens=[{tok}]", "train.progress=true"]
    opt = [
        f"policy={o / 'sft'}",
        f"prompts.manifest={man}",
        f"watch.judge={o / 'judge'}",
        f"watch.codec={o / 'codec'}",
        "watch.splits=[test]",
        *cfg.optimize,
    ]
    audit = [f"codec={o / 'codec'}", f"judge={o / 'judge'}", *cfg.audit]
    return {
        "corpus": ["synth", f"out={o / 'corpus'}", *cfg.synth],
        "codec": ["codec", "train", f"manifests={yaml_list([man])}", f"out={o / 'codec'}", *cfg.codec],
        "tokens": ["tokenize", f"codec={o / 'codec'}", f"manifest={man}", f"out={tok}"],
        "rm_pretrain": [
            "rm",
            "train",
            f"out={o / 'rm_pretrain'}",
            *data,
            "data.splits=[train]",
            f"model.token_features={o / 'codec'}",
            *cfg.rm_pretrain,
        ],
        "rm_vanilla": [
            "rm",
            "train",
            f"out={o / 'rm_vanilla'}",
            *data,
            "data.splits=[train]",
            f"init_from={o / 'rm_pretrain'}",
            *cfg.rm_finetune,
        ],
        "rm_robust": [
            "rm",
            "train",
            f"out={o / 'rm_robust'}",
            *data,
            "data.splits=[train]",
            f"init_from={o / 'rm_pretrain'}",
            *cfg.rm_finetune,
            *cfg.robust,
        ],
        "sft": [
            "policy",
            "sft",
            f"out={o / 'sft'}",
            f"data.manifest={man}",
            f"data.shards={tok}",
            "data.heldout_by=split",
            "data.heldout=[test]",
            *cfg.sft,
        ],
        "judge": ["judge", "train", f"manifests={yaml_list([man])}", f"out={o / 'judge'}", *cfg.judge],
        "diffro": [
            "optimize",
            f"out={o / 'diffro'}",
            "algo=diffro",
            f"rewards=[{{name: emotion, path: {o / 'rm_vanilla'}}}]",
            *opt,
        ],
        "rrpo": [
            "optimize",
            f"out={o / 'rrpo'}",
            "algo=diffro",
            f"rewards=[{{name: emotion, path: {o / 'rm_robust'}}}]",
            *opt,
        ],
        "audit_diffro": ["audit", f"run={o / 'diffro'}", *audit],
        "audit_rrpo": ["audit", f"run={o / 'rrpo'}", *audit],
        "report": [
            "report",
            f"runs={yaml_list([o / 'diffro', o / 'rrpo'])}",
            f"names={yaml_list(['DiffRO (vanilla RM)', 'RRPO (robust RM)'])}",
            f"out={o / 'report'}",
            f"notes={yaml_list([DEMO_NOTE])}",
        ],
    }


#: what a listener hears in the demo's report, said on the page itself
DEMO_NOTE = (
    "What you hear: emotion in pitch, loudness and timing, not words. The built-in codec's tokens keep "
    "prosody but lose most phonetic detail (docs/codec.md measures where), and this policy trained for minutes "
    "on synthetic speech; the samples are not intelligible. CosyVoice2's own tokens are trained to keep words "
    "(docs/policy.md)."
)


def _stage_dir(out: Path, stage: str) -> Path:
    return out / {"audit_diffro": "diffro/audit", "audit_rrpo": "rrpo/audit"}.get(stage, stage)


#: stages that may run beside each other (``jobs`` > 1), with what each needs of its block
PARALLEL = {
    "rm_vanilla": (),
    "rm_robust": (),
    "diffro": (),
    "rrpo": (),
    "audit_diffro": ("diffro",),
    "audit_rrpo": ("rrpo",),
}


def run_demo(cfg: DemoConfig, out: Path, run_verb, force: set[str] = frozenset(), jobs: int = 1) -> dict:
    """Run the stages (``run_verb``: :func:`rrpo.cli.main`); return the summary printed by ``rrpo demo``.

    With ``jobs`` > 1 the stages of :data:`PARALLEL` run as one-thread child processes, that many at a
    time (on 2 cores, two one-thread runs of these small models beat two two-thread runs in turn)."""
    from rrpo.stages import Stage, run_stages

    out.mkdir(parents=True, exist_ok=True)
    cmds = stage_commands(cfg, out)
    t_all = time.perf_counter()
    stages = [Stage(s, _stage_dir(out, s), cmds[s], parallel=s in PARALLEL, needs=PARALLEL.get(s, ())) for s in STAGES]
    times = run_stages(stages, run_verb, force, tag="demo", jobs=jobs, log_dir=out / "logs")
    summary = {
        "report": str((out / "report" / "index.html").resolve()),
        "stage_seconds": times,
        "total_seconds": round(time.perf_counter() - t_all, 1),
    }
    for name in ("diffro", "rrpo"):
        a = out / name / "audit" / "audit.json"
        if a.exists():
            res = json.loads(a.read_text())
            fin, st = res["final"], res["start"]
            summary[name] = {
                "proxy_p_target": [round(st["proxy_prob"], 3), round(fin["proxy_prob"], 3)],
                "judge_p_target": [round(st["judge"]["target_prob"], 3), round(fin["judge"]["target_prob"], 3)],
                "sqrt_kl": round(fin["sqrt_kl"], 3),
                "flagged_steps": res["flagged_steps"],
            }
    return summary


def cmd_demo(args) -> int:
    from rrpo.args import config_from_args

    cfg, io = config_from_args(DemoConfig, args, io=DemoArgs)
    summary = run_demo(cfg, Path(io.out), args.dispatch, set(io.force), jobs=io.jobs)
    print(json.dumps(summary, indent=2))
    print(f"\nreport: {summary['report']}")
    return 0
