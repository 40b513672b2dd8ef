"""The experiment's stages, in order: the shared ones (data, synthetic corpus, phone models, codec,
tokens, the reward models' pre-training), each fold's models (:mod:`rrpo.experiment.fold_models`),
the starting policy (pre-training, SFT), one optimisation and one audit per run
(:func:`rrpo.experiment.layout.experiment_runs`: systems × seeds × folds × settings), and the study's
closing stages (the second judge's re-judging, the report, the results; :mod:`rrpo.experiment.studies`).
"""

from __future__ import annotations

from pathlib import Path

from rrpo.args import yaml_list
from rrpo.errors import RrpoError
from rrpo.experiment.config import CLASSES, ExperimentConfig
from rrpo.experiment.data import extra_corpora, prepare_data
from rrpo.experiment.fold_models import fold_model_stages
from rrpo.experiment.layout import Run, experiment_runs, fold_dir, fold_stage, reward_term, several_folds
from rrpo.experiment.pretrain import policy_pretrain
from rrpo.experiment.studies import STUDIES
from rrpo.stages import Stage


def build_stages(cfg: ExperimentConfig, data: Path, out: Path, run_verb) -> list[Stage]:
    """The experiment's stages; ``run_verb(argv) -> status`` is the ``rrpo`` dispatcher (:func:`rrpo.cli.main`).

    Shared by the folds: data, synth, codec, tokens, the reward models' pre-training, the policy's
    pre-training and SFT. Per fold (:func:`fold_model_stages`): the fine-tuned reward models and their
    evaluation, the judges, every system's runs and audits (in every setting), the second judge's
    re-judging."""
    if not cfg.seeds:
        raise RrpoError("seeds is empty: give at least one optimisation seed")
    o = out.resolve()
    tok = token_dirs(cfg, o)
    stages, phone_judge = shared_stages(cfg, data, o, tok, run_verb)
    for h in cfg.heldout_speakers:
        stages += fold_model_stages(cfg, o, h, tok, run_verb)
    stages += policy_stages(cfg, o, tok, run_verb)
    runs = experiment_runs(cfg)
    for run in runs:
        stages += run_stages(cfg, o, run, phone_judge)
    return stages + closing_stages(cfg, o, runs)


def token_dirs(cfg: ExperimentConfig, o: Path) -> dict[str, Path]:
    """The codec tokens' folder of every corpus that needs them."""
    return {
        "casia": o / "tokens" / "casia",
        "esd": o / "tokens" / "esd",
        "synth": o / "tokens" / "synth",
        **{c: o / "tokens" / c for c in extra_corpora(cfg, tokenised=True)},
    }


def shared_stages(
    cfg: ExperimentConfig, data: Path, o: Path, tok: dict[str, Path], run_verb
) -> tuple[list[Stage], Path | None]:
    """(data, synth, the phone models, codec, tokens, rm_pretrain; the audits' phone judge or None)."""
    d = o / "data"
    synth = o / "synth" / "manifest.jsonl"
    pre_mans = ([synth] if cfg.rm_pretrain_synth else []) + [d / f"{c}.jsonl" for c in cfg.rm_pretrain_corpora]
    pre_toks = ([tok["synth"]] if cfg.rm_pretrain_synth else []) + [tok[c] for c in cfg.rm_pretrain_corpora]
    if not pre_mans:
        raise RrpoError("the reward models have no pre-training data: set rm_pretrain_corpora or rm_pretrain_synth")
    from rrpo.experiment.phones import codec_transcribed_manifests, phone_stages

    phones, content_keys, phone_judge = phone_stages(cfg, o, synth, d / "casia_codec.jsonl", run_verb)
    codec = [
        "codec",
        "train",
        f"manifests={yaml_list([d / 'casia_codec.jsonl', synth, *codec_transcribed_manifests(o, cfg)])}",
        f"out={o / 'codec'}",
        *content_keys,
        *cfg.codec,
    ]
    corpora = [
        ("casia", d / "casia.jsonl"),
        ("esd", d / "esd.jsonl"),
        ("synth", synth),
        *[(c, d / f"{c}.jsonl") for c in extra_corpora(cfg, tokenised=True)],
    ]
    rm_pretrain = [
        "rm",
        "train",
        f"out={o / 'rm' / 'pretrain'}",
        f"data.manifests={yaml_list(pre_mans)}",
        f"data.tokens={yaml_list(pre_toks)}",
        f"model.token_features={o / 'codec'}",
        "train.progress=true",
        f"classes=[{', '.join(CLASSES)}]",
        *cfg.rm_pretrain,
    ]
    stages = [
        Stage("data", d, lambda: prepare_data(data, d, cfg)),
        Stage("synth", o / "synth", ["synth", f"out={o / 'synth'}", *cfg.synth]),
        *phones,
        Stage("codec", o / "codec", codec),
        *[
            Stage(f"tokens_{k}", tok[k], ["tokenize", f"codec={o / 'codec'}", f"manifest={man}", f"out={tok[k]}"])
            for k, man in corpora
        ],
        Stage("rm_pretrain", o / "rm" / "pretrain", rm_pretrain),
    ]
    return stages, phone_judge


def policy_stages(cfg: ExperimentConfig, o: Path, tok: dict[str, Path], run_verb) -> list[Stage]:
    """The starting policy, shared by the folds: its pre-training (if any corpora) and its CASIA SFT."""

    def pretrain() -> None:
        """rrpo synth + tokenize + policy sft: pre-train the starting policy (cached under `cache`, reused when its key matches)"""
        policy_pretrain(cfg, o, tok, run_verb)

    pre = bool(cfg.policy_pretrain_corpora)
    sft = [
        "policy",
        "sft",
        f"out={o / 'sft'}",
        f"data.manifest={o / 'data' / 'casia.jsonl'}",
        f"data.shards={tok['casia']}",
        "data.heldout_by=split",
        "data.heldout=[test]",
        *([f"model.init={o / 'policy_pretrain' / 'run'}"] if pre else []),
        *cfg.sft,
    ]
    return [*([Stage("policy_pretrain", o / "policy_pretrain", pretrain)] if pre else []), Stage("sft", o / "sft", sft)]


def run_stages(cfg: ExperimentConfig, o: Path, run: Run, phone_judge: Path | None) -> list[Stage]:
    """One run's optimisation (the common ``optimize`` overrides, then its setting's, the judge watch,
    the system's own) and its audit on the held-out sentences spoken as the fold's speaker."""
    h, seed = run.fold, run.seed
    f = fold_dir(o, cfg, h)
    folder = f / "runs" / run.path
    casia = o / "data" / "casia.jsonl"
    system = cfg.systems[run.system]
    watch = (
        [f"watch.judge={f / 'judge'}", f"watch.codec={o / 'codec'}", f"watch.manifest={casia}", *cfg.watch]
        if system.watch
        else []
    )
    optimize = [
        "optimize",
        f"out={folder}",
        f"algo={system.algo}",
        f"policy={o / 'sft'}",
        reward_term(f, cfg, system, seed),
        f"prompts.manifest={casia}",
        "prompts.splits=[train]",
        f"prompts.exclude_speakers=[{h}]",
        f"train.seed={seed}",
        f"sampling.guidance={cfg.guidance:g}",
        *cfg.optimize,
        *cfg.settings.get(run.setting, []),
        *watch,
        *system.overrides,
    ]
    audit = [
        "audit",
        f"run={folder}",
        f"codec={o / 'codec'}",
        f"judge={f / 'judge'}",
        f"prompts.manifest={casia}",
        "prompts.splits=[test]",
        f"prompts.speakers=[{h}]",
        "anchor.splits=[train]",  # the held-out speaker's other sentences anchor the judge
        f"seed={1234 + seed}",
        f"sampling.guidance={cfg.guidance:g}",
        # step 0 is the starting policy in every setting: scored once per fold and seed
        f"start_cache={f / 'audit_start' / f's{seed}'}",
        *([f"phone_judge={phone_judge}"] if phone_judge else []),
        *cfg.audit,
    ]
    name = fold_stage(cfg, run.tag, h)
    return [
        Stage(name, folder, optimize, parallel=True),
        Stage(fold_stage(cfg, f"audit_{run.tag}", h), folder / "audit", audit, parallel=True, needs=(name,)),
    ]


def closing_stages(cfg: ExperimentConfig, o: Path, runs: list[Run]) -> list[Stage]:
    """The second judge's re-judging per fold (``second_judge``), the HTML report of every run and the
    study's results (:data:`rrpo.experiment.studies.STUDIES`)."""
    study = STUDIES[cfg.study]
    stages = []
    if cfg.second_judge != "none":
        for h in cfg.heldout_speakers:
            f = fold_dir(o, cfg, h)
            fold_runs = [r.path for r in runs if r.fold == h]

            def rejudge(f=f, fold_runs=fold_runs) -> None:
                """the second judge on every run's audited audio (start and last step)"""
                from rrpo.experiment_judges import rejudge_all

                rejudge_all(f, fold_runs)

            stages.append(Stage(fold_stage(cfg, "judges", h), f / "judges", rejudge))
    fold_tag = (lambda h: f", {h}") if several_folds(cfg) else (lambda h: "")
    names = [
        f"{cfg.systems[r.system].label} seed {r.seed}{fold_tag(r.fold)}{f', {r.setting}' if r.setting else ''}"
        for r in runs
    ]
    report = o / study.report
    stages.append(
        Stage(
            study.report_stage,
            report,
            [
                "report",
                f"runs={yaml_list([fold_dir(o, cfg, r.fold) / 'runs' / r.path for r in runs])}",
                f"names={yaml_list(names)}",
                f"out={report}",
            ],
        )
    )
    stages.append(Stage(study.results_stage, o / study.results_folder, lambda: study.write(o, cfg)))
    return stages
