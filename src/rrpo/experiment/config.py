"""``rrpo experiment``'s settings: the compared systems, the folds, every stage's overrides, the study
(which results it writes) and its settings (named ``rrpo optimize`` overrides that multiply the runs)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from rrpo.config import check, option
from rrpo.errors import ConfigError

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
#: Studies whose runs may be multiplied by ``settings`` (the comparison's tables hold one setting).
STUDIES_WITH_SETTINGS = ("overoptimisation",)
#: A setting's name: it names a folder (runs/<setting>/) and ends stage names (<run>+<setting>).
SETTING_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
#: `rrpo optimize` keys a setting may not change: the experiment sets them per system, seed and fold.
SET_BY_EXPERIMENT = (
    "out",
    "algo",
    "policy",
    "rewards",
    "train.seed",
    "prompts.manifest",
    "prompts.splits",
    "prompts.exclude_speakers",
    "sampling.guidance",
    "watch",
)
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
    study: Literal["comparison", "overoptimisation"] = option(
        "comparison",
        "which results the runs feed: 'comparison' (results/table.md, results.json, results.png: the systems at "
        "their last step against SFT, the verdicts) or 'overoptimisation' (results/overopt.json, overopt.png, "
        "overopt.md: every system's judge and proxy along √KL per setting, where each breaks; docs/overoptimisation.md)",
    )
    settings: dict[str, list[str]] = option(
        {},
        "named `rrpo optimize` overrides, each applied after `optimize` to every system, seed and fold: "
        "{beta0.1: [beta=0.1], beta0: [beta=0]} runs every run once per setting (runs/<setting>/, stages "
        "<run>+<setting>); {} = one setting, the layout of the comparison (study=overoptimisation only)",
    )
    synth: list[str] = option([], "overrides for `rrpo synth` (the reward models' pre-training corpus)")
    codec: list[str] = option(
        ["spectral_clusters=128", "pitch_bins=8", "energy_bins=4", "max_train_frames=80000", "kmeans_iters=30"],
        "overrides for `rrpo codec train`",
    )
    content: Literal["phonetic", "spectral"] = option(
        "spectral",
        "the codec's content ids: 'spectral' (k-means of the envelope) or 'phonetic' (k-means of a phone "
        "recogniser's states, trained on the transcribed corpora and the synthetic speech; measured no better "
        "on words with today's decoders, docs/codec.md)",
    )
    transcribed: dict[str, str] = option(
        {},
        "transcribed corpora the phone models learn from, as {preparer: root in the corpus' own layout}, e.g. "
        "{librispeech: ~/LibriSpeech, an4: ~/an4, aishell: ~/data_aishell} (README says where to download them); "
        "the phone judge (PER in every audit) is trained on them; content=phonetic needs them",
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
    codec_transcribed_hours: float = option(
        0.0,
        "hours of each transcribed corpus (a seeded random draw of its utterances) added to the codec's training "
        "audio, so its content ids and decoder learn the sounds of those languages; 0: none. Measured with 2 h of "
        "LibriSpeech: fewer words lost through the codec (ESD English WER 91 -> 81 %), a lower emotion probe on "
        "ESD English (50.6 -> 46.4 UA; docs/codec.md)",
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
        ["prompts.max_texts=50", "prompts.samples=4", "sampling.max_ratio=8", "every=3"],
        "overrides for every `rrpo audit` (all held-out sentences x 5 emotions x 4 samples "
        "= 100 judged utterances per run and audited checkpoint; every=3: every third checkpoint and the last; "
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
        self._check_study()
        check(self.guidance >= 0, "guidance", "must be >= 0 (1 = no guidance)")
        drops = [float(o.split("=", 1)[1]) for o in self.sft if o.startswith("data.drop_emotion=")]
        check(
            self.guidance == 1 or (drops and drops[-1] > 0),
            "guidance",
            f"{self.guidance:g} needs an SFT that learns the unconditional prompt: data.drop_emotion > 0 in sft",
        )

    def _check_study(self) -> None:
        """The study's own rules and every setting: a plain name, and overrides that make a valid
        `rrpo optimize` config after ``optimize`` without touching the keys the experiment sets itself."""
        check(
            not self.settings or self.study in STUDIES_WITH_SETTINGS,
            "settings",
            f"the {self.study} compares the systems under one setting; settings need study=overoptimisation",
        )
        check(
            self.study == "comparison" or self.second_judge == "none",
            "second_judge",
            f"only the comparison reads a second judge; set second_judge=none for study={self.study}",
        )
        from rrpo.config import load_config, parse_override
        from rrpo.optimize.trainer import OptimizeConfig

        for name, overrides in self.settings.items():
            check(
                bool(re.fullmatch(SETTING_NAME, str(name))),
                "settings",
                f"'{name}' is not a plain name (a letter or digit, then letters, digits, '.', '_' or '-')",
            )
            check(len(overrides) > 0, f"settings.{name}", "is empty: give the `rrpo optimize` keys it changes")
            for text in overrides:
                try:
                    key = parse_override(str(text))[0]
                except ConfigError as e:
                    raise ConfigError(f"config key 'settings.{name}': {e.reason}") from None
                check(
                    not any(key == k or key.startswith(k + ".") for k in SET_BY_EXPERIMENT),
                    f"settings.{name}",
                    f"'{key}' is set by the experiment (its systems, seeds and folds); a setting changes "
                    "optimisation keys such as beta or train.lr",
                )
            try:
                load_config(OptimizeConfig, None, [*self.optimize, *overrides])
            except ConfigError as e:
                raise ConfigError(f"config key 'settings.{name}' (overrides for OptimizeConfig): {e.reason}") from None


@dataclass
class ExperimentArgs:
    data: str = option("", "folder holding casia/ and esd/ (e.g. ../shared/data)")
    out: str = option("runs/comparison", "folder for every stage's outputs")
    force: list[str] = option(
        [], "stages to redo even if done (a per-fold stage's plain name, e.g. rm_vanilla, redoes it in every fold)"
    )

    def __post_init__(self):
        check(bool(self.data), "data", "is required (the folder holding casia/ and esd/)")
