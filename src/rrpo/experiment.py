"""``rrpo experiment``: the paper's comparison on real speech (SFT vs DiffRO vs RRPO).

    rrpo experiment --config configs/paper_comparison.yaml data=../shared/data out=runs/comparison

Each CASIA speaker of ``heldout_speakers`` is one *fold*: in its fold that speaker is never heard by
the reward models or the judges, and the audit speaks as that speaker. The codec hears none of the
held-out speakers (it is shared by the folds). A few CASIA sentences (``heldout_sentences``) are never
read by the policy or the reward models. The starting policy (pre-training and SFT) is shared by the
folds: it reads every speaker's training sentences, so that it can speak as each, never the held-out
sentences. The pipeline:

prepare CASIA and ESD (and mark the held-out sentences as split ``test``) and the multilingual
corpora (``rm_pretrain_corpora``: ASED, nEMO, URDU; ``judge_corpora``) → synthesise the built-in
bilingual corpus (extra unlabelled codec audio, and pre-training data with ``rm_pretrain_synth``) →
learn the codec on CASIA's other speakers and the synthetic corpus → tokenise → pre-train the reward
model on the pre-training corpora (classes a corpus lacks masked out of its loss) → per fold:
fine-tune it on CASIA's other speakers twice (vanilla; robust: LS + EAM + FGM), evaluate both on the
fold's speaker and on ESD English (cross-lingual), train the eGeMAPS judge on ``judge_corpora``
without the fold's speaker (never ESD English) and measure it on that speaker's real speech and on
ESD English → pre-train the tiny policy on many text-speech pairs (a large generated synthetic corpus, ESD, nEMO and
CASIA's training sentences; ``policy_pretrain_corpora``), cached outside the run folder under
``cache`` and reused by any run with the same settings and inputs → SFT it on CASIA (with emotion
dropout, so that every sampling of the policy can be guided on its emotion: ``guidance``) → for every
system (``systems``: DiffRO with the vanilla RM, RRPO with the robust RM, RRPO with an ensemble of
robust RMs, GRPO with the vanilla RM, DiffRO stopped online by the judge watch) and seed, optimise
under one budget, in every fold, and audit every checkpoint on the held-out sentences spoken as the
fold's speaker, the judge anchored on that speaker's real recordings of the training sentences (the
audit also judges the ceilings: the held-out sentences' real recordings, as recorded and through
the codec; with ``phone_judge``, every audit also scores the phone error rate of every utterance) →
the HTML report and ``results/`` (``results.json``, ``table.md``, ``results.png``), which pool the
folds' audits (:mod:`rrpo.experiment_stats`).

The SFT row is the audit's step 0 (the starting policy, sampled with the same seeds). Every stage
is an ordinary ``rrpo`` command run in-process and is skipped when it finished earlier. With one
fold the stages and folders are named as they always were; with several, a fold's stages are named
``<stage>@<speaker>`` and live under ``folds/<speaker>/`` (``force=[rm_vanilla]`` redoes that stage
in every fold).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rrpo.args import yaml_list
from rrpo.config import check, option
from rrpo.errors import RrpoError
from rrpo.stats import mean_std

CLASSES = ["neutral", "happy", "angry", "sad", "surprise"]

#: Corpora the starting policy can pre-train on: they have transcripts (``synth`` is the large
#: generated synthetic corpus of ``policy_synth``; the others are folders of ``data``).
POLICY_CORPORA = ("synth", "casia", "esd", "nemo")

#: The compared systems. ``reward``: which reward model the run optimises (``robust_ensemble``: the
#: robust RM and its ``rm_ensemble_seeds`` siblings as one ensemble term); ``watch``: the judge watch
#: stops the run online when its hacking flag rises (``watch`` overrides), so the audited final
#: checkpoint is the one it chose; ``overrides``: extra ``rrpo optimize`` keys (after ``optimize``).
DEFAULT_SYSTEMS = {
    "diffro": {"label": "DiffRO (vanilla RM)", "algo": "diffro", "reward": "vanilla"},
    "rrpo": {"label": "RRPO (robust RM)", "algo": "diffro", "reward": "robust"},
    "rrpo_ensemble": {"label": "RRPO (robust RM ensemble)", "algo": "diffro", "reward": "robust_ensemble"},
    "grpo": {
        "label": "GRPO (vanilla RM)",
        "algo": "grpo",
        "reward": "vanilla",
        "overrides": ["train.batch_size=1", "group=4"],
    },
    "diffro_watch": {
        "label": "DiffRO (vanilla RM), judge-watch stop",
        "algo": "diffro",
        "reward": "vanilla",
        "watch": True,
    },
}


@dataclass
class System:
    """One compared system of ``systems`` (see :data:`DEFAULT_SYSTEMS`)."""

    label: str = option("", "name in the table and the report")
    algo: Literal["diffro", "grpo", "reinforce"] = option("diffro", "objective of `rrpo optimize`")
    reward: Literal["vanilla", "robust", "robust_ensemble"] = option("vanilla", "reward model the run optimises")
    watch: bool = option(False, "stop online when the judge watch flags hacking (the audited checkpoint is its pick)")
    overrides: list[str] = option([], "extra `rrpo optimize` keys for this system (after `optimize`)")

    def __post_init__(self):
        check(self.algo in ("diffro", "grpo", "reinforce"), "systems.algo", "must be diffro, grpo or reinforce")
        check(
            self.reward in ("vanilla", "robust", "robust_ensemble"),
            "systems.reward",
            "must be vanilla, robust or robust_ensemble",
        )


# The experiment's stage override lists beyond the demo's, each checked at load against its verb's config.
EXPERIMENT_OVERRIDE_TARGETS = {
    "rm_eval": "rrpo.reward.evaluate:EvalConfig",
    "second_judge_stats": "rrpo.audit.judge:JudgeConfig",
    "second_judge_cnn": "rrpo.audit.mel_judge:MelJudgeConfig",
    "policy_synth": "rrpo.data.synth:SynthConfig",
    "policy_pretrain": "rrpo.policy.sft:SFTConfig",
    "watch": "rrpo.optimize.trainer:OptimizeConfig",
    "phones_content": "rrpo.phones.train:PhoneTrainConfig",
    "phones_judge": "rrpo.phones.train:PhoneTrainConfig",
}
# Lists of strings that are not overrides (corpus names of data=).
CORPUS_LISTS = ("rm_pretrain_corpora", "policy_pretrain_corpora", "judge_corpora", "heldout_speakers")


@dataclass
class ExperimentConfig:
    heldout_speakers: list[str] = option(
        ["ZhaoZuoxiang", "liuchanhg"],
        "CASIA speakers held out, one fold each: the codec hears none of them; in a speaker's fold the "
        "reward models and judges never hear it and the audit speaks as it",
    )
    heldout_sentences: list[int] = option(
        [246, 247, 248, 249, 250],
        "CASIA sentence ids the policy and reward models never read (split 'test'); the audit speaks them",
    )
    seeds: list[int] = option(
        [0, 1, 2],
        "optimisation seeds (each audited with its own sampling seeds; with rm_seed_per_run also the reward "
        "models' seeds)",
    )
    jobs: int = option(
        2,
        "run this many reward-model fine-tunes, optimisation runs and audits at once, as child processes "
        "of one thread each (2 on a 2-core CPU: about 1.8x the throughput of one 2-thread process; "
        "1 on one GPU); logs in OUT/logs",
    )
    systems: dict[str, dict] = option(
        DEFAULT_SYSTEMS,
        "compared systems: name -> {label, algo, reward, watch, "
        "overrides}; 'diffro' and 'rrpo' are required (the verdicts)",
    )
    synth: list[str] = option([], "overrides for `rrpo synth` (the reward models' pre-training corpus)")
    codec: list[str] = option(
        ["spectral_clusters=128", "pitch_bins=8", "energy_bins=4", "max_train_frames=80000", "kmeans_iters=30"],
        "overrides for `rrpo codec train`",
    )
    content: Literal["phonetic", "spectral"] = option(
        "phonetic",
        "the codec's content ids: 'phonetic' (k-means of a phone recogniser's states, trained on transcribed "
        "and the synthetic speech: the tokens keep words) or 'spectral' (k-means of the envelope: they do not)",
    )
    transcribed: dict[str, str] = option(
        {},
        "transcribed corpora the phone models learn from, as {preparer: root in the corpus' own layout}, e.g. "
        "{librispeech: ~/LibriSpeech, an4: ~/an4, aishell: ~/data_aishell} (README says where to download them); "
        "needed by content=phonetic and to train the phone judge",
    )
    phones_content: list[str] = option(
        ["train.steps=2000"],
        "overrides for `rrpo phones train` of the codec's content encoder (transcribed corpora + synthetic corpus + "
        "the CASIA speakers no fold holds out)",
    )
    phones_judge: list[str] = option(
        ["train.steps=2000"],
        "overrides for `rrpo phones train` of the phone judge (the real transcribed corpora only)",
    )
    rm_pretrain_corpora: list[str] = option(
        ["ased", "nemo", "urdu"],
        "real multilingual corpora of data= the reward models pre-train on (Amharic, "
        "Polish, Urdu; classes a corpus lacks are masked out of its loss)",
    )
    rm_pretrain_synth: bool = option(
        False, "also pre-train the reward models on the synthetic corpus (measured: it did not help, docs/reward.md)"
    )
    rm_pretrain: list[str] = option(
        [
            "train.steps=400",
            "train.batch_size=16",
            "train.lr=1e-3",
            "train.warmup_steps=20",
            "data.max_tokens=300",
            "model.embedding=free+features",
            "model.dropout=0.3",
        ],
        "overrides for the reward model's pre-training (rm_pretrain_corpora and the synthetic corpus)",
    )
    rm_finetune: list[str] = option(
        [
            "train.steps=250",
            "train.batch_size=16",
            "train.lr=1e-3",
            "train.warmup_steps=20",
            "data.max_tokens=300",
            "data.tempo=[0.6, 1.6]",
            "model.unseen_tokens=nearest",
        ],
        "overrides for both fine-tunings on CASIA's training speakers (speed perturbation, rare tokens read as "
        "their nearest well-heard token: docs/reward.md)",
    )
    robust: list[str] = option(
        ["reg.label_smoothing=0.1", "reg.eam.enabled=true", "reg.fgm.enabled=true", "reg.fgm.eps=0.2"],
        "what makes the robust reward model robust (docs/method.md §3; FGM radius 0.2 as in the ablation)",
    )
    rm_ensemble_seeds: list[int] = option(
        [1, 2], "train.seed of the robust RM's ensemble siblings (the ensemble is the robust RM and these)"
    )
    rm_seed_per_run: bool = option(
        True,
        "each optimisation seed s other than 0 fine-tunes its own vanilla and robust reward models with "
        "train.seed=s (rm/vanilla_s<s>, rm/robust_s<s>), so the runs' spread includes the reward model's; "
        "false: one reward model per method and fold",
    )
    rm_ensemble_aggregate: Literal["mean", "min", "mean_minus_std"] = option(
        "mean_minus_std", "how the ensemble's member rewards combine"
    )
    rm_eval: list[str] = option(["robustness=false"], "overrides for `rrpo rm eval` of both reward models")
    judge_corpora: list[str] = option(
        ["casia", "ased", "nemo", "urdu"],
        "labelled corpora of data= the eGeMAPS judge trains on (each fold's speaker left out; ESD "
        "English is never trained on: it is the judge's cross-lingual test)",
    )
    judge: list[str] = option(
        ["small_groups=drop", "min_group_classes=5"],
        "overrides for `rrpo judge train` (the eGeMAPS judge; only speakers who cover all 5 classes "
        "train it: measured best on the CASIA folds, docs/audit.md)",
    )
    cache: str = option(
        "runs/cache",
        "folder outside the run folder for stages reused across runs (the policy's "
        "pre-training), keyed by a hash of their settings and inputs; '' = no reuse",
    )
    policy_pretrain_corpora: list[str] = option(
        ["synth", "esd", "nemo", "casia"],
        "corpora the starting policy pre-trains on before its CASIA SFT ([] = no "
        "pre-training; casia: its training sentences only)",
    )
    policy_synth: list[str] = option(
        [
            "sentences=generated",
            "sentences_per_language=500",
            "renditions=3",
            "voices_per_language=6",
            "pitch_bases=[0.85, 1.0, 1.2]",
        ],
        "overrides for `rrpo synth` of the policy's pre-training corpus (zh + en, generated sentences)",
    )
    policy_pretrain: list[str] = option(
        [
            "model.hidden_size=256",
            "model.layers=4",
            "model.heads=4",
            "model.kv_heads=2",
            "model.intermediate_size=768",
            "train.steps=300",
            "train.batch_size=16",
            "train.lr=1e-3",
            "train.warmup_steps=30",
            "train.eval_every=0",
            "train.keep_checkpoints=1",
            "train.ckpt_every=100",
            "data.bucket=20",
            "data.max_speech_tokens=400",
        ],
        "overrides for `rrpo policy sft` of the pre-training (the model's size is set here; SFT starts from it)",
    )
    second_judge: Literal["logmel-stats", "logmel-cnn", "none"] = option(
        "logmel-stats",
        "a second, differently built judge that re-judges the audited audio: logistic regression on "
        "log-mel band statistics, or a small network on log-mel frames (none: only eGeMAPS)",
    )
    second_judge_stats: list[str] = option([], "overrides for `rrpo judge train features=logmel-stats`")
    second_judge_cnn: list[str] = option(
        [
            "train.steps=800",
            "train.batch_size=32",
            "train.lr=2e-3",
            "train.warmup_steps=50",
            "train.bf16=false",
            "train.log_every=50",
            "train.ckpt_every=200",
            "train.keep_checkpoints=1",
        ],
        "overrides for `rrpo judge train-mel` (second_judge: logmel-cnn)",
    )
    sft: list[str] = option(
        [
            "model.hidden_size=256",
            "model.layers=4",
            "model.heads=4",
            "model.kv_heads=2",
            "model.intermediate_size=768",
            "train.steps=400",
            "train.batch_size=16",
            "train.lr=1e-3",
            "train.warmup_steps=30",
            "train.eval_every=0",
            "data.bucket=20",
            "data.drop_emotion=0.15",
        ],
        "overrides for `rrpo policy sft` on CASIA (its model.* keys apply only without pre-training; "
        "data.drop_emotion: the unconditional prompt that guidance needs)",
    )
    guidance: float = option(
        5.0,
        "classifier-free guidance scale on the emotion instruction of every sampling of the policy "
        "(optimisation, judge watch, audit): `sampling.guidance` (docs/policy.md); 1 = none",
    )
    optimize: list[str] = option(
        [
            "train.steps=120",
            "train.batch_size=4",
            "train.lr=3e-4",
            "train.ckpt_every=20",
            "train.schedule=constant",
            "beta=0.1",
            "sampling.max_ratio=8",
        ],
        "overrides for every `rrpo optimize` run (every system gets the same budget)",
    )
    watch: list[str] = option(
        ["watch.every=20", "watch.splits=[train]", "watch.max_texts=4", "watch.stop_on_flag=true"],
        "the judge watch of systems with watch: true (training sentences, never the audit's held-out ones)",
    )
    audit: list[str] = option(
        ["prompts.max_texts=50", "prompts.samples=8", "sampling.max_ratio=8", "every=1"],
        "overrides for every `rrpo audit` (all held-out sentences x 5 emotions x 8 samples "
        "= 200 judged utterances per run and checkpoint; every=1: every checkpoint, the whole path; "
        "the start is scored once per fold and seed and shared by every system's audit)",
    )
    phone_judge: str = option(
        "",
        "phone model folder (rrpo phones train, trained on real transcribed speech) given to every audit: "
        "the phone error rate of every audited utterance and ceiling, a naturalness signal and a column of "
        "the tables; empty: one trained on `transcribed` (no PER without either)",
    )
    tolerance: float = option(
        0.10,
        "RRPO's artifact rates and distances count as 'within' SFT's up to this "
        "relative excess (10 %: the comparison's goal, docs/RESULTS.md)",
    )
    n_boot: int = option(2000, "bootstrap resamples of every interval and paired difference in the results")
    n_perm: int = option(
        5000, "random swap patterns of a paired permutation test (exact enumeration when 2^pairs is at most 65,536)"
    )
    stats_seed: int = option(0, "seed of the bootstrap and permutation draws")

    def __post_init__(self):
        check(self.jobs >= 1, "jobs", "must be >= 1")
        systems = {}
        for name, spec in self.systems.items():
            if not isinstance(spec, System):
                check(isinstance(spec, dict), f"systems.{name}", "must be a mapping of label, algo, reward, ...")
                unknown = sorted(set(spec) - {"label", "algo", "reward", "watch", "overrides"})
                check(not unknown, f"systems.{name}", f"unknown key(s) {unknown}")
                spec = System(**{"label": name, **spec})
            check(str(name).replace("_", "").isalnum(), "systems", f"'{name}' is not a plain name (letters, digits, _)")
            systems[str(name)] = spec
        self.systems = systems
        for need in ("diffro", "rrpo"):
            check(need in self.systems, "systems", f"needs '{need}' (the verdicts compare DiffRO and RRPO)")
        check(len(self.heldout_speakers) > 0, "heldout_speakers", "needs at least one CASIA speaker (one fold each)")
        check(
            len(set(self.heldout_speakers)) == len(self.heldout_speakers),
            "heldout_speakers",
            f"lists a speaker twice: {self.heldout_speakers}",
        )
        check(
            all(str(h).replace("_", "").replace("-", "").isalnum() for h in self.heldout_speakers),
            "heldout_speakers",
            "must be plain speaker names (letters, digits, _ or -)",
        )
        check("casia" in self.judge_corpora, "judge_corpora", "must include casia (the held-out speakers' corpus)")
        check("esd" not in self.judge_corpora, "judge_corpora", "must not include esd (the judge's cross-lingual test)")
        bad = sorted(set(self.policy_pretrain_corpora) - set(POLICY_CORPORA))
        check(not bad, "policy_pretrain_corpora", f"{bad} not among {list(POLICY_CORPORA)} (corpora with transcripts)")
        from rrpo.demo import OVERRIDE_TARGETS
        from rrpo.stages import check_stage_overrides

        check_stage_overrides(self, {**OVERRIDE_TARGETS, **EXPERIMENT_OVERRIDE_TARGETS})
        check(self.guidance >= 0, "guidance", "must be >= 0 (1 = no guidance)")
        drops = [float(o.split("=", 1)[1]) for o in self.sft if o.startswith("data.drop_emotion=")]
        check(
            self.guidance == 1 or (drops and drops[-1] > 0),
            "guidance",
            f"{self.guidance:g} needs an SFT that learns the unconditional prompt: data.drop_emotion > 0 in sft",
        )


@dataclass
class ExperimentArgs:
    data: str = option("", "folder holding casia/ and esd/ (e.g. ../shared/data)")
    out: str = option("runs/comparison", "folder for every stage's outputs")
    force: list[str] = option(
        [], "stages to redo even if done (a per-fold stage's plain name, e.g. rm_vanilla, redoes it in every fold)"
    )

    def __post_init__(self):
        check(bool(self.data), "data", "is required (the folder holding casia/ and esd/)")


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.args import add_config_args

    p = sub.add_parser(
        "experiment", help="the paper's comparison on real CASIA speech: SFT vs DiffRO vs RRPO, several seeds, audited"
    )
    add_config_args(
        p,
        ExperimentConfig,
        io=ExperimentArgs,
        old={"--data": ("data", "value"), "--out": ("out", "value"), "--force": ("force", "list")},
    )
    p.set_defaults(func=cmd_experiment)


# --------------------------------------------------------------------------------------------- data
def extra_corpora(cfg: ExperimentConfig, tokenised: bool = False) -> list[str]:
    """Corpora of ``data`` besides CASIA and ESD: the reward models' and the policy's pre-training sets
    (``tokenised``: only these, which need codec tokens) and the judge's extra corpora."""
    out = []
    for c in [*cfg.rm_pretrain_corpora, *cfg.policy_pretrain_corpora, *([] if tokenised else cfg.judge_corpora)]:
        if c not in ("synth", "casia", "esd") and c not in out:
            out.append(c)
    return out


# -------------------------------------------------------------------------------------------- folds
def several_folds(cfg: ExperimentConfig) -> bool:
    return len(cfg.heldout_speakers) > 1


def fold_dir(o: Path, cfg: ExperimentConfig, speaker: str) -> Path:
    """A fold's folder: the run folder itself with one fold (the layout before folds), else ``folds/<speaker>``."""
    return o / "folds" / speaker if several_folds(cfg) else o


def fold_stage(cfg: ExperimentConfig, name: str, speaker: str) -> str:
    """A fold's stage name: ``name`` with one fold, else ``name@speaker``."""
    return f"{name}@{speaker}" if several_folds(cfg) else name


def expand_force(force, names: list[str]) -> set[str]:
    """``force`` with each plain name of a per-fold stage (``rm_vanilla``) widened to that stage in every
    fold (``rm_vanilla@A``, ``rm_vanilla@B``); other names are kept as given (unknown ones are refused
    by the stage runner)."""
    out = set()
    for f in force:
        fold_names = [n for n in names if n.split("@", 1)[0] == f and "@" in n]
        out.update(fold_names if f not in names and fold_names else [f])
    return out


def prepare_data(data: Path, out: Path, cfg: ExperimentConfig) -> None:
    """Prepare CASIA, ESD and the pre-training corpora, mark CASIA's held-out sentences as split 'test',
    write the codec's manifest."""
    from rrpo.data.corpora import prepare_corpus
    from rrpo.data.manifest import read_manifest, write_manifest

    for corpus in ("casia", "esd", *extra_corpora(cfg)):
        if not (data / corpus).is_dir():
            raise RrpoError(f"no {corpus}/ folder here (expected the shared corpora, e.g. ../shared/data)", data)
    out.mkdir(parents=True, exist_ok=True)
    for corpus in ("casia", "esd"):
        prepare_corpus(corpus, data / corpus, out / f"{corpus}_raw.jsonl")
    for corpus in extra_corpora(cfg):
        prepare_corpus(corpus, data / corpus, out / f"{corpus}.jsonl")
    raw = read_manifest(out / "casia_raw.jsonl")
    speakers = sorted({u.speaker for u in raw})
    for h in cfg.heldout_speakers:
        if h not in speakers:
            raise RrpoError(
                f"held-out speaker '{h}' is not in CASIA (speakers: {', '.join(speakers)})", out / "casia_raw.jsonl"
            )
    if not set(speakers) - set(cfg.heldout_speakers):
        raise RrpoError(
            "every CASIA speaker is held out: the codec and the reward models need at least one other",
            out / "casia_raw.jsonl",
        )
    sentences = {u.extra.get("sentence") for u in raw}
    missing = sorted(set(cfg.heldout_sentences) - sentences)
    if missing:
        raise RrpoError(f"held-out sentence id(s) {missing} are not in CASIA", out / "casia_raw.jsonl")
    held = set(cfg.heldout_sentences)
    recs = []
    for u in raw:
        u.audio = str(raw.audio_path(u).resolve())
        u.split = "test" if u.extra.get("sentence") in held else "train"
        recs.append(u)
    write_manifest(out / "casia.jsonl", recs)
    write_manifest(out / "casia_codec.jsonl", [u for u in recs if u.speaker not in cfg.heldout_speakers])
    esd = read_manifest(out / "esd_raw.jsonl")
    for u in esd:
        u.audio = str(esd.audio_path(u).resolve())
    write_manifest(out / "esd.jsonl", esd)


# ------------------------------------------------------------------------------------------- stages
def seed_runs(cfg: ExperimentConfig) -> list[tuple[str, str, int, str]]:
    """(run name, system, seed, fold) of every optimisation run: seed-major, then fold, then system (a
    fold's run ``<system>_s<seed>`` lives in that fold's ``runs/``)."""
    return [(f"{m}_s{s}", m, s, h) for s in cfg.seeds for h in cfg.heldout_speakers for m in cfg.systems]


def ensemble_members(f: Path, cfg: ExperimentConfig) -> list[Path]:
    """The robust RM and its ``rm_ensemble_seeds`` siblings of the fold whose folder is ``f``."""
    return [f / "rm" / "robust", *[f / "rm" / f"robust_s{k}" for k in cfg.rm_ensemble_seeds]]


def rm_seed(cfg: ExperimentConfig, system: System, seed: int) -> int:
    """The reward-model seed a run of ``system`` with optimisation seed ``seed`` optimises against:
    ``seed`` itself with ``rm_seed_per_run`` (0 is the fold's rm/vanilla or rm/robust), else 0; 0 for
    the ensemble, whose members are the same for every run."""
    return seed if cfg.rm_seed_per_run and system.reward != "robust_ensemble" else 0


def rm_folder(f: Path, reward: str, seed: int) -> Path:
    """A fold's reward model of kind ``reward`` (vanilla | robust) and fine-tuning seed ``seed``."""
    return f / "rm" / (reward if seed == 0 else f"{reward}_s{seed}")


def reward_term(f: Path, cfg: ExperimentConfig, system: System, seed: int = 0) -> str:
    """The ``rewards`` value of a system's ``rrpo optimize`` run of seed ``seed`` in the fold whose folder is ``f``."""
    if system.reward == "robust_ensemble":
        return (
            f"rewards=[{{name: emotion, paths: {yaml_list(ensemble_members(f, cfg))}, "
            f"aggregate: {cfg.rm_ensemble_aggregate}}}]"
        )
    return f"rewards=[{{name: emotion, path: {rm_folder(f, system.reward, rm_seed(cfg, system, seed))}}}]"


# ------------------------------------------------------------------------------ policy pre-training
def pretrain_key(cfg: ExperimentConfig, codec: Path, manifests: dict[str, Path]) -> tuple[str, dict]:
    """(hex key, what it hashes) of the policy's pre-training: its settings, the synthetic corpus'
    settings, the codec's files and the bytes of the real corpora's manifests (their audio paths
    included), and rrpo's version. The same key means the same pre-trained policy (training is
    deterministic), so a run with the same settings and data reuses it."""
    import hashlib

    from rrpo import __version__
    from rrpo.io import DESCRIPTIVE_FILES, sha256_files

    codec_files = sorted(p for p in codec.rglob("*") if p.is_file() and p.name not in DESCRIPTIVE_FILES)

    what = {
        "rrpo": __version__,
        "corpora": list(cfg.policy_pretrain_corpora),
        "policy_pretrain": list(cfg.policy_pretrain),
        "policy_synth": list(cfg.policy_synth) if "synth" in cfg.policy_pretrain_corpora else None,
        "codec": sha256_files(codec_files),
        "manifests": {k: sha256_files([m]) for k, m in sorted(manifests.items())},
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20], what


def policy_pretrain(cfg: ExperimentConfig, o: Path, tok: dict[str, Path], run_verb) -> None:
    """Pre-train the starting policy on many text-speech pairs (cached under `cache`, reused across runs)."""
    import os

    from rrpo.io import read_json, write_json

    d = o / "data"
    real = {
        c: d / ("casia.jsonl" if c == "casia" else f"{c}.jsonl") for c in cfg.policy_pretrain_corpora if c != "synth"
    }
    key, what = pretrain_key(cfg, o / "codec", real)
    root = (Path(cfg.cache).resolve() / "policy_pretrain" / key) if cfg.cache else o / "policy_pretrain" / "cached"
    reused = (root / ".done").exists()
    t0 = time.perf_counter()
    if not reused:
        root.mkdir(parents=True, exist_ok=True)
        mans, toks = [], []
        if "synth" in cfg.policy_pretrain_corpora:
            for args in (
                ["synth", f"out={root / 'synth'}", *cfg.policy_synth],
                [
                    "tokenize",
                    f"codec={o / 'codec'}",
                    f"manifest={root / 'synth' / 'manifest.jsonl'}",
                    f"out={root / 'tokens_synth'}",
                ],
            ):
                if run_verb(args) != 0:
                    raise RrpoError(f"policy pre-training: `rrpo {args[0]}` failed", root)
            mans.append(root / "synth" / "manifest.jsonl")
            toks.append(root / "tokens_synth")
        for c, m in real.items():
            mans.append(m)
            toks.append(tok[c])
        # CASIA's held-out sentences (split test) stay out of training, like the synthetic test split
        args = [
            "policy",
            "sft",
            f"out={root / 'run'}",
            f"data.manifests={yaml_list(mans)}",
            f"data.tokens={yaml_list(toks)}",
            "data.heldout_by=split",
            "data.heldout=[test]",
            *cfg.policy_pretrain,
        ]
        if run_verb(args) != 0:
            raise RrpoError("policy pre-training failed; run the same command again to resume it", root)
        write_json(
            root / "pretrain.json",
            {"key": key, "hashed": what, "command": args, "seconds": round(time.perf_counter() - t0, 1)},
        )
        (root / ".done").write_text("ok\n")
    made = read_json(root / "pretrain.json")
    here = o / "policy_pretrain"
    here.mkdir(parents=True, exist_ok=True)
    link = here / "run"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(root / "run", link, target_is_directory=True)
    write_json(
        here / "pretrain.json",
        {
            "key": key,
            "cache": str(root),
            "reused": reused,
            "seconds_to_make": made["seconds"],
            "seconds_this_run": round(time.perf_counter() - t0, 1),
            "corpora": list(cfg.policy_pretrain_corpora),
            "command": made["command"],
            "hashed": what,
        },
    )


def build_stages(cfg: ExperimentConfig, data: Path, out: Path, run_verb) -> list:
    """The experiment's stages; ``run_verb(argv) -> status`` is the ``rrpo`` dispatcher (:func:`rrpo.cli.main`).

    Shared by the folds: data, synth, codec, tokens, the reward models' pre-training, the policy's
    pre-training and SFT. Per fold (:func:`fold_model_stages`): the fine-tuned reward models and their
    evaluation, the judges, every system's runs and audits, the second judge's re-judging."""
    from rrpo.stages import Stage

    if not cfg.seeds:
        raise RrpoError("seeds is empty: give at least one optimisation seed")
    o = out.resolve()
    d = o / "data"
    casia, synth = d / "casia.jsonl", o / "synth" / "manifest.jsonl"
    tok = {
        "casia": o / "tokens" / "casia",
        "esd": o / "tokens" / "esd",
        "synth": o / "tokens" / "synth",
        **{c: o / "tokens" / c for c in extra_corpora(cfg, tokenised=True)},
    }
    pre_mans = ([synth] if cfg.rm_pretrain_synth else []) + [d / f"{c}.jsonl" for c in cfg.rm_pretrain_corpora]
    pre_toks = ([tok["synth"]] if cfg.rm_pretrain_synth else []) + [tok[c] for c in cfg.rm_pretrain_corpora]
    if not pre_mans:
        raise RrpoError("the reward models have no pre-training data: set rm_pretrain_corpora or rm_pretrain_synth")
    from rrpo.experiment_phones import phone_stages

    phones, content_keys, phone_judge = phone_stages(cfg, o, synth, d / "casia_codec.jsonl", run_verb)
    cls = f"classes=[{', '.join(CLASSES)}]"

    def pretrain() -> None:
        """rrpo synth + tokenize + policy sft: pre-train the starting policy (cached under `cache`, reused when its key matches)"""
        policy_pretrain(cfg, o, tok, run_verb)

    stages = [
        Stage("data", d, lambda: prepare_data(data, d, cfg)),
        Stage("synth", o / "synth", ["synth", f"out={o / 'synth'}", *cfg.synth]),
        *phones,
        Stage(
            "codec",
            o / "codec",
            [
                "codec",
                "train",
                f"manifests={yaml_list([d / 'casia_codec.jsonl', synth])}",
                f"out={o / 'codec'}",
                *content_keys,
                *cfg.codec,
            ],
        ),
        *[
            Stage(f"tokens_{k}", tok[k], ["tokenize", f"codec={o / 'codec'}", f"manifest={man}", f"out={tok[k]}"])
            for k, man in (
                ("casia", casia),
                ("esd", d / "esd.jsonl"),
                ("synth", synth),
                *[(c, d / f"{c}.jsonl") for c in extra_corpora(cfg, tokenised=True)],
            )
        ],
        Stage(
            "rm_pretrain",
            o / "rm" / "pretrain",
            [
                "rm",
                "train",
                f"out={o / 'rm' / 'pretrain'}",
                f"data.manifests={yaml_list(pre_mans)}",
                f"data.tokens={yaml_list(pre_toks)}",
                f"model.token_features={o / 'codec'}",
                "train.progress=true",
                cls,
                *cfg.rm_pretrain,
            ],
        ),
    ]
    for h in cfg.heldout_speakers:
        stages += fold_model_stages(cfg, o, h, tok, run_verb)
    stages += [
        *([Stage("policy_pretrain", o / "policy_pretrain", pretrain)] if cfg.policy_pretrain_corpora else []),
        Stage(
            "sft",
            o / "sft",
            [
                "policy",
                "sft",
                f"out={o / 'sft'}",
                f"data.manifest={casia}",
                f"data.shards={tok['casia']}",
                "data.heldout_by=split",
                "data.heldout=[test]",
                *([f"model.init={o / 'policy_pretrain' / 'run'}"] if cfg.policy_pretrain_corpora else []),
                *cfg.sft,
            ],
        ),
    ]
    runs = seed_runs(cfg)
    for run, name, seed, h in runs:
        f = fold_dir(o, cfg, h)
        system = cfg.systems[name]
        watch = (
            [f"watch.judge={f / 'judge'}", f"watch.codec={o / 'codec'}", f"watch.manifest={casia}", *cfg.watch]
            if system.watch
            else []
        )
        stages.append(
            Stage(
                fold_stage(cfg, run, h),
                f / "runs" / run,
                [
                    "optimize",
                    f"out={f / 'runs' / run}",
                    f"algo={system.algo}",
                    f"policy={o / 'sft'}",
                    reward_term(f, cfg, system, seed),
                    f"prompts.manifest={casia}",
                    "prompts.splits=[train]",
                    f"prompts.exclude_speakers=[{h}]",
                    f"train.seed={seed}",
                    f"sampling.guidance={cfg.guidance:g}",
                    *cfg.optimize,
                    *watch,
                    *system.overrides,
                ],
                parallel=True,
            )
        )
        stages.append(
            Stage(
                fold_stage(cfg, f"audit_{run}", h),
                f / "runs" / run / "audit",
                [
                    "audit",
                    f"run={f / 'runs' / run}",
                    f"codec={o / 'codec'}",
                    f"judge={f / 'judge'}",
                    f"prompts.manifest={casia}",
                    "prompts.splits=[test]",
                    f"prompts.speakers=[{h}]",
                    "anchor.splits=[train]",  # the held-out speaker's other sentences anchor the judge
                    f"seed={1234 + seed}",
                    f"sampling.guidance={cfg.guidance:g}",
                    f"start_cache={f / 'audit_start' / f's{seed}'}",
                    *([f"phone_judge={phone_judge}"] if phone_judge else []),
                    *cfg.audit,
                ],
                parallel=True,
                needs=(fold_stage(cfg, run, h),),
            )
        )
    if cfg.second_judge != "none":
        for h in cfg.heldout_speakers:
            f = fold_dir(o, cfg, h)
            fold_runs = [r for r, _, _, hh in runs if hh == h]

            def rejudge(f=f, fold_runs=fold_runs) -> None:
                """the second judge on every run's audited audio (start and last step)"""
                from rrpo.experiment_judges import rejudge_all

                rejudge_all(f, fold_runs)

            stages.append(Stage(fold_stage(cfg, "judges", h), f / "judges", rejudge))
    fold_tag = (lambda h: f", {h}") if several_folds(cfg) else (lambda h: "")
    stages.append(
        Stage(
            "report",
            o / "report",
            [
                "report",
                f"runs={yaml_list([fold_dir(o, cfg, h) / 'runs' / r for r, _, _, h in runs])}",
                f"names={yaml_list([f'{cfg.systems[m].label} seed {s}{fold_tag(h)}' for _, m, s, h in runs])}",
                f"out={o / 'report'}",
            ],
        )
    )
    stages.append(Stage("results", o / "results", lambda: write_results(o, cfg)))
    return stages


def fold_model_stages(cfg: ExperimentConfig, o: Path, h: str, tok: dict[str, Path], run_verb) -> list:
    """One fold's models: both reward models (and the ensemble's siblings) fine-tuned without speaker
    ``h``, their evaluation, the eGeMAPS judge and the second judge trained without ``h``, and their
    evaluation on ``h``'s real speech and on ESD English. The judges' features are cached in the run
    folder's ``features/`` (computed once for all folds)."""
    from rrpo.stages import Stage

    f = fold_dir(o, cfg, h)
    d = o / "data"
    casia, esd = d / "casia.jsonl", d / "esd.jsonl"
    ensemble = any(sy.reward == "robust_ensemble" for sy in cfg.systems.values())
    # the reward-model seeds other than 0 that the runs (rm_seed_per_run) and the ensemble need

    def run_seeds(kind: str) -> list[int]:
        return [k for s in cfg.seeds for sy in cfg.systems.values() if sy.reward == kind and (k := rm_seed(cfg, sy, s))]

    robust_seeds = list(dict.fromkeys([*(cfg.rm_ensemble_seeds if ensemble else []), *run_seeds("robust")]))
    vanilla_seeds = list(dict.fromkeys(run_seeds("vanilla")))
    cls = f"classes=[{', '.join(CLASSES)}]"
    ft = [
        "rm",
        "train",
        f"data.manifests=[{casia}]",
        f"data.tokens=[{tok['casia']}]",
        "data.splits=[train]",
        f"data.exclude_speakers=[{h}]",
        f"init_from={o / 'rm' / 'pretrain'}",
        "train.progress=true",
        cls,
        *cfg.rm_finetune,
    ]

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
    return [
        Stage(
            fold_stage(cfg, "rm_vanilla", h),
            f / "rm" / "vanilla",
            [*ft[:2], f"out={f / 'rm' / 'vanilla'}", *ft[2:]],
            parallel=True,
        ),
        Stage(
            fold_stage(cfg, "rm_robust", h),
            f / "rm" / "robust",
            [*ft[:2], f"out={f / 'rm' / 'robust'}", *ft[2:], *cfg.robust],
            parallel=True,
        ),
        *[
            Stage(
                fold_stage(cfg, f"rm_robust_s{k}", h),
                f / "rm" / f"robust_s{k}",
                [*ft[:2], f"out={f / 'rm' / f'robust_s{k}'}", *ft[2:], *cfg.robust, f"train.seed={k}"],
                parallel=True,
            )
            for k in robust_seeds
        ],
        *[
            Stage(
                fold_stage(cfg, f"rm_vanilla_s{k}", h),
                f / "rm" / f"vanilla_s{k}",
                [*ft[:2], f"out={f / 'rm' / f'vanilla_s{k}'}", *ft[2:], f"train.seed={k}"],
                parallel=True,
            )
            for k in vanilla_seeds
        ],
        Stage(fold_stage(cfg, "rm_eval", h), f / "rm" / "eval", rm_eval),
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
                cls,
                *cfg.judge,
            ],
        ),
        Stage(fold_stage(cfg, "judge_eval", h), f / "judge" / "eval", judge_eval),
        *(
            [
                Stage(
                    fold_stage(cfg, "judge2", h),
                    f / "judge2",
                    [
                        "judge",
                        "train-mel",
                        f"manifests={yaml_list([casia])}",
                        f"out={f / 'judge2'}",
                        f"exclude_speakers=[{h}]",
                        cls,
                        *cfg.second_judge_cnn,
                    ]
                    if cfg.second_judge == "logmel-cnn"
                    else [
                        "judge",
                        "train",
                        f"manifests={yaml_list([casia])}",
                        f"out={f / 'judge2'}",
                        f"exclude_speakers=[{h}]",
                        f"feature_cache={o / 'features'}",
                        cls,
                        "features=logmel-stats",
                        *cfg.second_judge_stats,
                    ],
                ),
                Stage(fold_stage(cfg, "judge2_eval", h), f / "judge2" / "eval", judge2_eval),
            ]
            if cfg.second_judge != "none"
            else []
        ),
    ]


# ------------------------------------------------------------------------------------------ results
#: (key, label, lower is better) of the audited figures in the table.
METRICS = [
    ("proxy", "proxy p(target)", False),
    ("judge_acc", "judge accuracy", False),
    ("judge_p", "judge p(target)", False),
    ("artifacts", "artifacts /s", True),
    ("mcd_db", "MCD dB", True),
    ("f0_rmse_cents", "F0 RMSE cents", True),
    ("voicing_error", "voicing error", True),
    ("frechet_egemaps", "Fréchet eGeMAPS", True),
    ("token_repetition", "token repetition", True),
    ("typicality", "typicality", True),
    ("atypical", "atypical share", True),
    ("per", "PER", True),
    ("sqrt_kl", "√KL to SFT", True),
]
QUALITY = ["artifacts", "mcd_db", "f0_rmse_cents", "voicing_error", "frechet_egemaps", "typicality", "per"]
#: figures only some experiments have (PER needs ``phone_judge``): left out of a table where no system has them
OPTIONAL = {"per"}
QUALITY_TICKS = {
    "artifacts": "artifacts",
    "mcd_db": "MCD",
    "f0_rmse_cents": "F0 RMSE",
    "voicing_error": "voicing",
    "frechet_egemaps": "Fréchet",
    "typicality": "typicality",
    "per": "PER",
}


def point_per(p: dict) -> float:
    """The pooled phone error rate of an audited point (NaN where the audit had no phone judge)."""
    per = (p.get("per") or {}).get("per")
    return float(per["stat"]) if per and per.get("stat") is not None else math.nan


def _present(summary: dict, key: str) -> bool:
    """Whether any system of ``summary`` (name -> key -> (mean, std)) has a finite ``key``."""
    return any(math.isfinite((d.get(key) or (math.nan,))[0]) for d in summary.values())


def point_metrics(p: dict) -> dict[str, float]:
    """The table's figures from one audited checkpoint of ``audit.json``."""
    return {
        "proxy": p["proxy_prob"],
        "judge_acc": p["judge"]["accuracy"],
        "judge_p": p["judge"]["target_prob"],
        "artifacts": sum(a["events_per_s"] for a in p["artifacts"].values()),
        **{k: p["distances"][k] for k in ("mcd_db", "f0_rmse_cents", "voicing_error", "frechet_egemaps")},
        "token_repetition": p["token_repetition"],
        "typicality": (p.get("typicality") or {}).get("distance", math.nan),
        "atypical": (p.get("typicality") or {}).get("atypical", math.nan),
        "per": point_per(p),
        "sqrt_kl": p["sqrt_kl"],
        "mean_len_s": p["mean_len_s"],
        "hacking_flag": float(bool(p.get("hacking_flag", False))),
    }


def verdicts(means: dict[str, dict[str, float]], tol: float) -> dict[str, dict]:
    """The comparison's two goals (docs/RESULTS.md, "Against the goals"), decided on the seed means.

    hacking (DiffRO): its proxy above SFT's (under the vanilla RM) and every artifact rate / distance
    (and the phone error rate, when the audits had a phone judge) above SFT's by more than ``tol``
    (relative; for a zero SFT artifact rate, any rise counts).
    rrpo: judge accuracy above SFT's and at least DiffRO's, and every artifact rate / distance at most
    ``(1 + tol)`` × SFT's."""
    sft, dif, rr = means["sft"], means["diffro"], means["rrpo"]

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else (math.inf if a > 0 else 1.0)

    # a measure a run did not produce (typicality without the eGeMAPS features, say) is left out
    keys = [k for k in QUALITY if all(math.isfinite(d.get(k, math.nan)) for d in (sft, dif, rr))]
    worse = {k: ratio(dif[k], sft[k]) for k in keys}
    within = {k: ratio(rr[k], sft[k]) for k in keys}
    hack = {
        "proxy_up": dif["proxy"] > sft["proxy_vanilla"],
        "quality_ratios_vs_sft": worse,
        "quality_clearly_worse": all(r > 1 + tol for r in worse.values()),
    }
    hack["met"] = hack["proxy_up"] and hack["quality_clearly_worse"]
    good = {
        "judge_above_sft": rr["judge_acc"] > sft["judge_acc"],
        "judge_at_least_diffro": rr["judge_acc"] >= dif["judge_acc"],
        "quality_ratios_vs_sft": within,
        "quality_within_tol": all(r <= 1 + tol for r in within.values()),
    }
    good["met"] = good["judge_above_sft"] and good["judge_at_least_diffro"] and good["quality_within_tol"]
    return {"diffro_hacks": hack, "rrpo_goal": good}


def collect(o: Path, cfg: ExperimentConfig) -> dict:
    """Per-run figures (one row per fold and seed) of SFT (step 0) and every system (last step) from the
    audits, their means over all runs of all folds, the statistics and the folds' model evaluations."""
    from rrpo.config import to_dict
    from rrpo.io import read_json

    per_seed: dict[str, list[dict]] = {"sft": [], **{m: [] for m in cfg.systems}}
    judged: dict[str, list[dict]] = {"sft": [], **{m: [] for m in cfg.systems}}
    for s in cfg.seeds:
        for h in cfg.heldout_speakers:
            f = fold_dir(o, cfg, h)
            aud = {m: read_json(f / "runs" / f"{m}_s{s}" / "audit" / "audit.json") for m in cfg.systems}
            judged["sft"].append(aud["diffro"]["start"])
            for m in cfg.systems:
                judged[m].append(aud[m]["final"])
            sft = point_metrics(aud["diffro"]["start"])
            sft["proxy_vanilla"] = aud["diffro"]["start"]["proxy_prob"]
            sft["proxy_robust"] = aud["rrpo"]["start"]["proxy_prob"]
            per_seed["sft"].append({"fold": h, "seed": s, **sft})
            for m in cfg.systems:
                fin = point_metrics(aud[m]["final"])
                fin["step"] = aud[m]["final"]["step"]
                fin["flagged_steps"] = aud[m]["flagged_steps"]
                fin["first_flag"] = first_flags(aud[m])
                per_seed[m].append({"fold": h, "seed": s, **fin})
    keys = [k for k, _, _ in METRICS] + ["proxy_vanilla", "proxy_robust", "mean_len_s", "hacking_flag"]
    summary = {
        m: {k: mean_std([r[k] for r in rows if k in r]) for k in keys if any(k in r for r in rows)}
        for m, rows in per_seed.items()
    }
    means = {m: {k: v[0] for k, v in d.items()} for m, d in summary.items()}
    rm: dict[str, dict] = {}
    judge: dict[str, dict] = {}
    for h in cfg.heldout_speakers:
        f = fold_dir(o, cfg, h)
        rm[h] = {}
        for name in ("vanilla", "robust"):
            for ev in ("casia_heldout", "esd"):
                p = f / "rm" / "eval" / f"{name}_{ev}.json"
                if p.exists():
                    rm[h][f"{name}_{ev}"] = read_json(p)
        judge[h] = {p.stem: read_json(p) for p in sorted((f / "judge" / "eval").glob("*.json"))}
    from rrpo.audit.summary import pooled_recall
    from rrpo.experiment_stats import CEILINGS, comparison_stats, pairs_for, system_points

    points = system_points(o, list(cfg.seeds), list(cfg.systems), folds=fold_dirs(o, cfg))
    stats = comparison_stats(
        points,
        cfg.n_boot,
        cfg.n_perm,
        cfg.stats_seed,
        rm_seed_of=lambda system, seed: rm_seed(cfg, cfg.systems[system], seed) if system in cfg.systems else 0,
        pairs=pairs_for(cfg.systems),
    )
    pre = o / "policy_pretrain" / "pretrain.json"
    res = {
        "folds": list(cfg.heldout_speakers),
        "systems": {m: to_dict(sy) for m, sy in cfg.systems.items()},
        "policy_pretrain": read_json(pre) if pre.exists() else None,
        "per_seed": per_seed,
        "summary": summary,
        "verdicts": verdicts(means, cfg.tolerance),
        "trajectories": trajectories(o, cfg),
        "reward_models": rm,
        "judge": judge,
        "ceilings": {
            name: {
                **{
                    k: v
                    for k, v in stats["intervals"].get(name, {}).items()
                    if k in ("judge_acc", "typicality", "atypical", "per")
                },
                "recall": pooled_recall([p for _, p in points[name]], CLASSES),
            }
            for name in CEILINGS
            if name in points
        },
        "recall": {m: pooled_recall(pts, CLASSES) for m, pts in judged.items()},
        "stats": stats,
    }
    if cfg.second_judge != "none" and all((f / "judges").is_dir() for f in fold_dirs(o, cfg).values()):
        from rrpo.experiment_judges import second_judge_results

        proxy_up = {
            "diffro": means["diffro"]["proxy"] > means["sft"]["proxy_vanilla"],
            "rrpo": means["rrpo"]["proxy"] > means["sft"]["proxy_robust"],
        }
        res["second_judge"] = second_judge_results(
            fold_dirs(o, cfg), list(cfg.seeds), stats, proxy_up, cfg.n_boot, cfg.n_perm, cfg.stats_seed
        )
        res["second_judge"]["eval"] = {
            h: {p.stem: read_json(p) for p in sorted((fold_dir(o, cfg, h) / "judge2" / "eval").glob("*.json"))}
            for h in cfg.heldout_speakers
        }
        res["second_judge"]["kind"] = cfg.second_judge
    return res


def fold_dirs(o: Path, cfg: ExperimentConfig) -> dict[str, Path]:
    """``{held-out speaker: its fold's folder}`` in config order."""
    return {h: fold_dir(o, cfg, h) for h in cfg.heldout_speakers}


def trajectories(o: Path, cfg: ExperimentConfig) -> dict[str, dict[str, list]]:
    """Per method, every audited step with the mean ± std over runs (folds × seeds) of proxy, judge
    accuracy and √KL.

    The table reads the last step only; over-optimisation shows in the path (the judge peaks, then
    falls while the proxy keeps rising)."""
    from rrpo.io import read_json

    out = {}
    for m in cfg.systems:
        by_step: dict[int, list[dict]] = {}
        for s in cfg.seeds:
            for f in fold_dirs(o, cfg).values():
                for p in read_json(f / "runs" / f"{m}_s{s}" / "audit" / "audit.json").get("points", []):
                    by_step.setdefault(int(p["step"]), []).append(point_metrics(p))
        steps = sorted(by_step)
        out[m] = {
            "step": steps,
            **{
                k: [mean_std([r[k] for r in by_step[t]]) for t in steps]
                for k in ("proxy", "judge_acc", "judge_p", "sqrt_kl")
            },
        }
    return out


def _fmt(m: float, s: float, pct: bool = False) -> str:
    if m is None or math.isnan(m):
        return "n/a"
    if pct:
        return f"{100 * m:.1f} ± {100 * s:.1f}"
    digits = 1 if abs(m) >= 100 else 3 if abs(m) < 10 else 2
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _acc(d: dict, key: str) -> float:
    v = d.get(key)
    return math.nan if v is None else float(v)


def table_markdown(res: dict, cfg: ExperimentConfig) -> str:
    """The results as Markdown: the main table, the ceiling, the reward models and the goal verdicts."""
    s = res["summary"]
    n = len(cfg.seeds)
    folds = list(cfg.heldout_speakers)
    lines = [
        f"Means ± sample std over {n * len(folds)} run(s): {n} seed(s) ({', '.join(map(str, cfg.seeds))}) × "
        f"{len(folds)} fold(s), held-out speaker{'s' if len(folds) > 1 else ''} "
        f"{', '.join(f'`{h}`' for h in folds)}; held-out sentences {cfg.heldout_sentences} × 5 target emotions. "
        "Proxy = p(target) under the reward model the run optimised (SFT: vanilla / robust).",
        "",
    ]
    metrics = [m for m in METRICS if m[0] not in OPTIONAL or _present(s, m[0])]
    lines += [
        "| method | " + " | ".join(lbl for _, lbl, _ in metrics) + " |",
        "| --- |" + " --- |" * len(metrics),
    ]
    names = {"sft": "SFT (start)", **{m: sy.label for m, sy in cfg.systems.items()}}
    for m in names:
        cells = []
        for k, _, _ in metrics:
            if m == "sft" and k == "proxy":
                cells.append(f"{_fmt(*s['sft']['proxy_vanilla'])} / {_fmt(*s['sft']['proxy_robust'])}")
            elif m == "sft" and k == "sqrt_kl":
                cells.append("0")
            else:
                cells.append(_fmt(*s[m][k], pct=k == "judge_acc"))
        lines.append(f"| {names[m]} | " + " | ".join(cells) + " |")
    j = res["judge"]
    lines += ceilings_markdown(res, s)
    lines += flags_markdown(res, names)
    lines += [
        "",
        "Judge accuracy in %. Artifacts /s = clicks + bursts + clipping + silence + repetition events per "
        "second. Distances are to the real recording of the same sentence, speaker and emotion."
        + (
            " PER = phone error rate of the phone judge (Σ phone edits / Σ phonemes of the text, espeak-ng)."
            if any(k == "per" for k, _, _ in metrics)
            else ""
        ),
        "",
    ]
    lines += recall_markdown(res, names)
    if any(j.values()):
        lines += [
            f"| judge (eGeMAPS on {', '.join(cfg.judge_corpora)}, trained without the fold's speaker) | fold | n | "
            "accuracy | UA [95 %] | ECE |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for h, jh in j.items():
            for k, v in jh.items():
                ci = v.get("ua_ci95") or []
                iv = f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if len(ci) == 2 else ""
                ece = "n/a" if v.get("ece") is None else f"{v['ece']:.3f}"
                lines.append(
                    f"| {k} | {h} | {v.get('n', 'n/a')} | {100 * _acc(v, 'wa'):.1f} | {100 * _acc(v, 'ua'):.1f}{iv} | {ece} |"
                )
        lines.append("")
    rm = res["reward_models"]
    if any(rm.values()):
        lines += [
            "| reward model | fold | held-out speaker UA | held-out speaker WA | ESD English UA (cross-lingual) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for h, rmh in rm.items():
            for name in ("vanilla", "robust"):
                a, b = rmh.get(f"{name}_casia_heldout", {}), rmh.get(f"{name}_esd", {})
                lines.append(
                    f"| {name} | {h} | {100 * _acc(a, 'ua'):.1f} | {100 * _acc(a, 'wa'):.1f} | {100 * _acc(b, 'ua'):.1f} |"
                )
        lines.append("")
    tr = res.get("trajectories", {})
    if tr:
        steps = sorted(set().union(*(tr[m]["step"] for m in tr)))
        lines += [
            "Along the way (seed means at every audited step; the table above is the last step; a run "
            "stopped by the judge watch has no later steps):",
            "",
            "| method | step | " + " | ".join(str(t) for t in steps) + " |",
            "| --- | --- |" + " --- |" * len(steps),
        ]
        for m in cfg.systems:
            for k, lbl in (("proxy", "proxy p(target)"), ("judge_acc", "judge accuracy %")):
                at = dict(zip(tr[m]["step"], tr[m][k]))
                vals = [
                    ("" if t not in at else f"{100 * at[t][0]:.1f}" if k == "judge_acc" else f"{at[t][0]:.3f}")
                    for t in steps
                ]
                lines.append(f"| {names[m]} | {lbl} | " + " | ".join(vals) + " |")
        lines.append("")
    from rrpo.experiment_judges import judges_markdown
    from rrpo.experiment_stats import stats_markdown

    lines += stats_markdown(res.get("stats", {}), names)
    j2 = res.get("second_judge", {})
    if any((j2.get("eval") or {}).values()):
        lines += [
            f"| second judge ({cfg.second_judge}, trained without the fold's speaker) | fold | n | accuracy | UA |",
            "| --- | --- | --- | --- | --- |",
        ]
        for h, jh in j2["eval"].items():
            for k, v in jh.items():
                lines.append(
                    f"| {k} | {h} | {v.get('n', 'n/a')} | {100 * _acc(v, 'wa'):.1f} | {100 * _acc(v, 'ua'):.1f} |"
                )
        lines.append("")
    lines += judges_markdown(j2, names)
    v = res["verdicts"]
    h, g = v["diffro_hacks"], v["rrpo_goal"]
    tol = cfg.tolerance

    def ratios(d: dict, m: str) -> str:
        """``k r×`` per figure; a rise from SFT's zero (infinite ratio) as ``k 0 → value``."""
        return ", ".join(
            f"{k} {r:.2f}×" if math.isfinite(r) else f"{k} 0 → {res['summary'][m][k][0]:.3f} (SFT's is 0)"
            for k, r in d.items()
        )

    per_too = " / PER" if "per" in h["quality_ratios_vs_sft"] else ""
    lines += [
        f"- **DiffRO hacks** (proxy up and every artifact rate / distance{per_too} > {1 + tol:.2f}× SFT's): "
        f"{'met' if h['met'] else 'not met'}. Proxy up: {h['proxy_up']}; ratios to SFT: {ratios(h['quality_ratios_vs_sft'], 'diffro')}.",
        f"- **RRPO goal** (judge accuracy > SFT's and ≥ DiffRO's; every artifact rate / distance{per_too} ≤ {1 + tol:.2f}× SFT's): "
        f"{'met' if g['met'] else 'not met'}. Judge above SFT: {g['judge_above_sft']}; at least DiffRO: "
        f"{g['judge_at_least_diffro']}; ratios to SFT: {ratios(g['quality_ratios_vs_sft'], 'rrpo')}.",
    ]
    return "\n".join(lines) + "\n"


def first_flags(audit: dict) -> dict[str, dict | None]:
    """Per flag (emotion, naturalness): the first audited step where it fired, with √KL there and, for
    naturalness, the signals that fired; None where it never fired. Example: points at steps 0, 60, 120
    with the emotion flag at 120 only → {"emotion": {"step": 120, "sqrt_kl": ...}, "naturalness": None}."""
    out: dict[str, dict | None] = {"emotion": None, "naturalness": None}
    for p in audit.get("points", []):
        for kind in out:
            f = (p.get("flags") or {}).get(kind) or {}
            if out[kind] is None and f.get("flag"):
                out[kind] = {"step": p["step"], "sqrt_kl": p["sqrt_kl"]}
                if kind == "naturalness":
                    out[kind]["signals"] = [k for k, v in f.get("signals", {}).items() if v.get("flag")]
    return out


def flags_markdown(res: dict, names: dict[str, str]) -> list[str]:
    """Per run, where each of the audit's two flags first fired (or that it never did), with the
    largest √KL the run reached: what a hacking claim may rest on."""
    rows = []
    for m, runs in res["per_seed"].items():
        for r in runs:
            ff = r.get("first_flag")
            if m == "sft" or ff is None:
                continue

            def cell(f):
                if not f:
                    return "never"
                sig = f" ({', '.join(f['signals'])})" if f.get("signals") else ""
                return f"step {f['step']}, √KL {f['sqrt_kl']:.2f}{sig}"

            rows.append(
                f"| {names.get(m, m)} | {r['fold']} | {r['seed']} | {cell(ff['emotion'])} | "
                f"{cell(ff['naturalness'])} | {r.get('sqrt_kl', math.nan):.2f} |"
            )
    if not rows:
        return []
    return [
        "",
        "The audit's flags along each run (every checkpoint; docs/audit.md): emotion = the judge fell after "
        "its peak by more than its sampling noise while the proxy rose; naturalness = artifacts, token "
        "repetition, typicality or the phone error rate (with a phone judge) rose beyond their noise and "
        "beyond real speech through the codec while the proxy rose. First step where each fired:",
        "",
        "| run | fold | seed | emotion flag | naturalness flag | √KL at the last step |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
    ]


CEILING_NAMES = {
    "ceiling_real": "ceiling: real held-out speech",
    "ceiling_codec": "ceiling: real held-out speech through the codec",
}


def ceilings_markdown(res: dict, summary: dict) -> list[str]:
    """SFT and the ceilings side by side: judge accuracy [95 % interval], typicality, atypical share and,
    when the audits had a phone judge, the phone error rate. Every one is judged with statistics fixed
    from real recordings before any policy was scored."""
    ceil = res.get("ceilings") or {}
    sft = (res.get("stats") or {}).get("intervals", {}).get("sft", {})
    if not ceil and not sft:
        return []

    def cell(d: dict | None, k: str) -> str:
        if not d or k not in d:
            return "n/a"
        v = d[k]
        f = (lambda x: f"{100 * x:.1f}") if k == "judge_acc" else (lambda x: f"{x:.3f}")
        return f"{f(v['stat'])} [{f(v['lo'])}, {f(v['hi'])}]"

    keys = ["judge_acc", "typicality", "atypical"]
    head = "| | judge accuracy % | typicality | atypical share |"
    if any("per" in d for d in (sft, *ceil.values())):
        keys.append("per")
        head += " PER |"
    lines = [
        "",
        "SFT beside the ceilings, all judged with each held-out speaker's statistics fixed from its real "
        "recordings of other sentences (through the codec for SFT and the codec ceiling), before any policy "
        "was scored; [95 % hierarchical bootstrap]:",
        "",
        head,
        "| --- |" + " --- |" * len(keys),
        "| SFT (start) | " + " | ".join(cell(sft, k) for k in keys) + " |",
    ]
    for name, label in CEILING_NAMES.items():
        if name in ceil:
            lines.append(f"| {label} | " + " | ".join(cell(ceil[name], k) for k in keys) + " |")
    return lines


def recall_markdown(res: dict, names: dict[str, str]) -> list[str]:
    """The judge's recall of each target emotion per system (pooled over runs; SFT = the audits' step 0),
    with the judge on the held-out speakers' real speech before and after the codec for reference."""
    rec = res.get("recall") or {}
    if not any(rec.values()):
        return []
    rows = [(names.get(m, m), r) for m, r in rec.items() if r]
    for name, label in CEILING_NAMES.items():
        r = ((res.get("ceilings") or {}).get(name) or {}).get("recall")
        if r:
            rows.append((label, r))
    lines = [
        "Judge recall per target emotion (the share of utterances asked for that emotion that the judge "
        "hears as it; pooled over runs), and the lowest:",
        "",
        "| method | " + " | ".join(CLASSES) + " | lowest |",
        "| --- |" + " --- |" * (len(CLASSES) + 1),
    ]
    for name, r in rows:
        vals = [r.get(c) for c in CLASSES]
        cells = ["n/a" if v is None or math.isnan(v) else f"{100 * v:.0f}" for v in vals]
        known = [v for v in vals if v is not None and not math.isnan(v)]
        low = f"{100 * min(known):.0f}" if known else "n/a"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {low} |")
    return [*lines, ""]


#: Bar colours: SFT grey, then one per system in config order.
COLOURS = ["#d62728", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def plot_results(res: dict, path: Path) -> None:
    """Bars of judge accuracy, proxy and the quality ratios to SFT per system (mean ± std over seeds),
    and the proxy and judge along training."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["summary"]
    systems = [m for m in res.get("systems", {"diffro": {}, "rrpo": {}}) if m in s]
    label = {m: res.get("systems", {}).get(m, {}).get("label", m) for m in systems}
    methods = [("sft", "SFT")] + [(m, textwrap.fill(label[m], 14)) for m in systems]
    colour = {"sft": "#888", **{m: COLOURS[i % len(COLOURS)] for i, m in enumerate(systems)}}
    n = len(methods)
    fig, axes = plt.subplots(1, 4, figsize=(6 + 3.2 * n, 4.8))
    ax = axes[0]
    ax.bar(
        range(n),
        [100 * s[m]["judge_acc"][0] for m, _ in methods],
        yerr=[100 * s[m]["judge_acc"][1] for m, _ in methods],
        color=[colour[m] for m, _ in methods],
        capsize=4,
    )
    ceil = (((res.get("ceilings") or {}).get("ceiling_real") or {}).get("judge_acc") or {}).get("stat")
    if ceil is not None:
        ax.axhline(100 * ceil, ls="--", c="k", lw=1, label="judge on real held-out speech")
        ax.legend(fontsize=8, loc="upper left")
    ax.axhline(20, ls=":", c="grey", lw=1)
    ax.set_xticks(range(n), [t for _, t in methods], fontsize=7)
    ax.set_ylabel("judge accuracy (%)")
    ax.set_title("emotion as the independent judge hears it")
    ax = axes[1]
    ax.bar(
        range(n),
        [s[m]["proxy"][0] if m != "sft" else s["sft"]["proxy_vanilla"][0] for m, _ in methods],
        yerr=[s[m]["proxy"][1] if m != "sft" else s["sft"]["proxy_vanilla"][1] for m, _ in methods],
        color=[colour[m] for m, _ in methods],
        capsize=4,
    )
    ax.set_xticks(range(n), [t for _, t in methods], fontsize=7)
    ax.set_ylabel("proxy p(target)")
    ax.set_title("reward the run optimised (SFT: vanilla RM)")
    ax = axes[2]
    w, top = 0.8 / max(1, len(systems)), 1.3
    quality = [k for k in QUALITY if k not in OPTIONAL or _present(s, k)]
    for i, m in enumerate(systems):
        vals = [s[m][k][0] / s["sft"][k][0] if s["sft"][k][0] > 0 else math.nan for k in quality]
        ax.bar(
            [x + (i - (len(systems) - 1) / 2) * w for x in range(len(quality))],
            vals,
            w,
            color=colour[m],
            label=label[m],
        )
        top = max([top] + [1.25 * v for v in vals if math.isfinite(v)])
    ax.set_ylim(0, top)
    ax.axhline(1.0, c="k", lw=1)
    ax.axhline(1.1, ls="--", c="grey", lw=1, label="SFT + 10 %")
    ticks = [QUALITY_TICKS[k] for k in quality]
    if not s["sft"]["artifacts"][0] > 0:
        ticks[0] = "artifacts\n(SFT's rate is 0:\nno ratio, see table)"
    ax.set_xticks(range(len(quality)), ticks, fontsize=8)
    ax.set_ylabel("ratio to SFT (lower is better)")
    ax.set_title("artifacts and distances to real speech")
    ax.legend(fontsize=6, loc="upper center", ncol=2)
    ax = axes[3]
    for m in systems:
        tr = res.get("trajectories", {}).get(m)
        if not tr:
            continue
        ax.errorbar(
            tr["step"],
            [100 * a for a, _ in tr["judge_acc"]],
            yerr=[100 * b for _, b in tr["judge_acc"]],
            color=colour[m],
            marker="o",
            capsize=3,
            label=f"{label[m]}: judge accuracy (%)",
        )
        ax.plot(
            tr["step"],
            [100 * a for a, _ in tr["proxy"]],
            color=colour[m],
            ls="--",
            marker="x",
            label=f"{label[m]}: proxy (×100)",
        )
    ax.set_xlabel("optimisation step")
    ax.set_title("proxy vs judge along training")
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(o: Path, cfg: ExperimentConfig) -> dict:
    """Collect the audits into results/results.json, results/table.md and results/results.png."""
    from rrpo.io import atomic_open, write_json

    res = collect(o, cfg)
    out = o / "results"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", res)
    with atomic_open(out / "table.md") as f:
        f.write(table_markdown(res, cfg))
    plot_results(res, out / "results.png")
    return res


def cmd_experiment(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.stages import run_stages, stage_seconds

    cfg, io = config_from_args(ExperimentConfig, args, io=ExperimentArgs)
    out = Path(io.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stages = build_stages(cfg, Path(io.data), out, args.dispatch)
    force = expand_force(io.force, [st.name for st in stages])
    times = run_stages(stages, args.dispatch, force, tag="experiment", jobs=cfg.jobs, log_dir=out / "logs")
    rec = out / "results" / "stage_seconds.json"
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
    print((out / "results" / "table.md").read_text())
    print(f"results: {(out / 'results').resolve()}\nreport: {(out / 'report' / 'index.html').resolve()}")
    return 0
