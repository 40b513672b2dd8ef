"""One fold's models: the reward models fine-tuned without the fold's speaker and the judges trained
without it, with their evaluations on that speaker's real speech and on ESD English."""

from __future__ import annotations

from pathlib import Path

from rrpo.args import yaml_list
from rrpo.errors import RrpoError
from rrpo.experiment.config import CLASSES, ExperimentConfig
from rrpo.experiment.layout import fold_dir, fold_stage, rm_seed
from rrpo.stages import Stage

CLASS_KEY = f"classes=[{', '.join(CLASSES)}]"


def fold_model_stages(cfg: ExperimentConfig, o: Path, h: str, tok: dict[str, Path], run_verb) -> list[Stage]:
    """One fold's models: both reward models (and the ensemble's siblings) fine-tuned without speaker
    ``h``, their evaluation, the eGeMAPS judge and the second judge trained without ``h``, and their
    evaluation on ``h``'s real speech and on ESD English. The judges' features are cached in the run
    folder's ``features/`` (computed once for all folds)."""
    return [*reward_model_stages(cfg, o, h, tok, run_verb), *judge_stages(cfg, o, h, run_verb)]


def rm_seeds(cfg: ExperimentConfig, kind: str) -> list[int]:
    """The fine-tuning seeds other than 0 of the ``kind`` (vanilla | robust) reward models that the runs
    (``rm_seed_per_run``) and, for robust, the ensemble need, each once, in order of first need."""
    runs = [k for s in cfg.seeds for sy in cfg.systems.values() if sy.reward == kind and (k := rm_seed(cfg, sy, s))]
    ensemble = any(sy.reward == "robust_ensemble" for sy in cfg.systems.values())
    return list(dict.fromkeys([*(cfg.rm_ensemble_seeds if ensemble and kind == "robust" else []), *runs]))


def reward_model_stages(cfg: ExperimentConfig, o: Path, h: str, tok: dict[str, Path], run_verb) -> list[Stage]:
    """The fold's reward models fine-tuned from the shared pre-trained one on CASIA's other speakers
    (vanilla; robust: ``robust`` on top; their other seeds) and their evaluation."""
    f = fold_dir(o, cfg, h)
    casia, esd = o / "data" / "casia.jsonl", o / "data" / "esd.jsonl"
    ft = [
        f"data.manifests=[{casia}]",
        f"data.tokens=[{tok['casia']}]",
        "data.splits=[train]",
        f"data.exclude_speakers=[{h}]",
        f"init_from={o / 'rm' / 'pretrain'}",
        "train.progress=true",
        CLASS_KEY,
        *cfg.rm_finetune,
    ]

    def finetune(folder: str, extra: list[str]) -> Stage:
        return Stage(
            fold_stage(cfg, f"rm_{folder}", h),
            f / "rm" / folder,
            ["rm", "train", f"out={f / 'rm' / folder}", *ft, *extra],
            parallel=True,
        )

    def rm_eval() -> None:
        """rrpo rm eval: both reward models on the held-out speaker and on ESD English"""
        for rm in ("vanilla", "robust"):
            for name, man, shards, extra in (
                ("casia_heldout", casia, tok["casia"], [f"speakers={yaml_list([h])}"]),
                ("esd", esd, tok["esd"], []),
            ):
                args = [
                    "rm",
                    "eval",
                    f"rm={f / 'rm' / rm}",
                    f"manifest={man}",
                    f"tokens={shards}",
                    *extra,
                    f"out={f / 'rm' / 'eval' / f'{rm}_{name}.json'}",
                    *cfg.rm_eval,
                ]
                if run_verb(args) != 0:
                    raise RrpoError(f"rm eval of the {rm} reward model on {name} ({h}'s fold) failed")

    return [
        finetune("vanilla", []),
        finetune("robust", list(cfg.robust)),
        *[finetune(f"robust_s{k}", [*cfg.robust, f"train.seed={k}"]) for k in rm_seeds(cfg, "robust")],
        *[finetune(f"vanilla_s{k}", [f"train.seed={k}"]) for k in rm_seeds(cfg, "vanilla")],
        Stage(fold_stage(cfg, "rm_eval", h), f / "rm" / "eval", rm_eval),
    ]


def judge_stages(cfg: ExperimentConfig, o: Path, h: str, run_verb) -> list[Stage]:
    """The fold's eGeMAPS judge (``judge_corpora`` without speaker ``h``) and, unless
    ``second_judge`` is none, the second judge (CASIA without ``h``), each with its evaluation."""
    f = fold_dir(o, cfg, h)
    d = o / "data"
    casia, esd = d / "casia.jsonl", d / "esd.jsonl"

    def judge_eval(folder: str = "judge") -> None:
        """rrpo judge eval: the judge on the held-out speaker's real speech (the ceiling) and on ESD English"""
        for name, args in (
            ("casia_heldout", [f"manifests={yaml_list([casia])}", f"speakers={yaml_list([h])}"]),
            (
                "casia_heldout_test_sentences",
                [f"manifests={yaml_list([casia])}", f"speakers={yaml_list([h])}", "splits=[test]"],
            ),
            ("esd", [f"manifests={yaml_list([esd])}"]),
        ):
            argv = ["judge", "eval", f"judge={f / folder}", *args, f"out={f / folder / 'eval' / f'{name}.json'}"]
            if run_verb([*argv, f"feature_cache={o / 'features'}"]) != 0:
                raise RrpoError(f"judge eval on {name} ({h}'s fold) failed")

    def judge2_eval() -> None:
        """rrpo judge eval: the second judge on the held-out speaker's real speech and on ESD English"""
        judge_eval("judge2")

    judge_mans = [casia if c == "casia" else d / f"{c}.jsonl" for c in cfg.judge_corpora]
    stages = [
        Stage(
            fold_stage(cfg, "judge", h),
            f / "judge",
            [
                "judge",
                "train",
                f"manifests={yaml_list(judge_mans)}",
                f"out={f / 'judge'}",
                f"exclude_speakers=[{h}]",
                f"feature_cache={o / 'features'}",
                CLASS_KEY,
                *cfg.judge,
            ],
        ),
        Stage(fold_stage(cfg, "judge_eval", h), f / "judge" / "eval", judge_eval),
    ]
    if cfg.second_judge == "none":
        return stages
    common = [f"manifests={yaml_list([casia])}", f"out={f / 'judge2'}", f"exclude_speakers=[{h}]"]
    if cfg.second_judge == "logmel-cnn":
        train = ["judge", "train-mel", *common, CLASS_KEY, *cfg.second_judge_cnn]
    else:
        train = [
            "judge",
            "train",
            *common,
            f"feature_cache={o / 'features'}",
            CLASS_KEY,
            "features=logmel-stats",
            *cfg.second_judge_stats,
        ]
    return [
        *stages,
        Stage(fold_stage(cfg, "judge2", h), f / "judge2", train),
        Stage(fold_stage(cfg, "judge2_eval", h), f / "judge2" / "eval", judge2_eval),
    ]
