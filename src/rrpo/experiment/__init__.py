"""``rrpo experiment``: the paper's comparison on real speech (SFT vs DiffRO vs RRPO), and the
over-optimisation study built from the same stages.

    rrpo experiment --config configs/paper_comparison.yaml data=../shared/data out=runs/comparison
    rrpo experiment --config configs/overoptimisation.yaml data=../shared/data out=runs/overoptimisation

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

A *study* is a config and the results its runs feed (:mod:`rrpo.experiment.studies`): ``comparison``
(the above) or ``overoptimisation`` (longer runs of DiffRO, RRPO and the RRPO ensemble under every
``settings`` entry, e.g. β = 0.1, 0.01, 0 → ``results/overopt.json``, ``overopt.png``, ``overopt.md``:
:mod:`rrpo.experiment.overoptimisation`). A *setting* is a named list of ``rrpo optimize`` overrides
applied after ``optimize``; it multiplies the runs (``runs/<setting>/<system>_s<seed>``, stages
``<system>_s<seed>+<setting>``).

The modules: :mod:`~rrpo.experiment.config` (the keys), :mod:`~rrpo.experiment.layout` (folds, runs,
names), :mod:`~rrpo.experiment.pipeline` (the stages; :mod:`~rrpo.experiment.data`,
:mod:`~rrpo.experiment.fold_models`, :mod:`~rrpo.experiment.pretrain`), the studies' results
(:mod:`~rrpo.experiment.results`, :mod:`~rrpo.experiment.tables`, :mod:`~rrpo.experiment.plots`,
:mod:`~rrpo.experiment.overoptimisation`) and the verb (:mod:`~rrpo.experiment.command`). Every name
the earlier single module had is importable from here.
"""

from __future__ import annotations

from rrpo.experiment.command import cmd_experiment, register
from rrpo.experiment.config import (
    CLASSES,
    CORPUS_LISTS,
    DEFAULT_SYSTEMS,
    EXPERIMENT_OVERRIDE_TARGETS,
    POLICY_CORPORA,
    ExperimentArgs,
    ExperimentConfig,
    System,
)
from rrpo.experiment.data import extra_corpora, prepare_data
from rrpo.experiment.fold_models import fold_model_stages
from rrpo.experiment.layout import (
    Run,
    ensemble_members,
    expand_force,
    experiment_runs,
    fold_dir,
    fold_dirs,
    fold_stage,
    reward_term,
    rm_folder,
    rm_seed,
    seed_runs,
    several_folds,
)
from rrpo.experiment.metrics import METRICS, OPTIONAL, QUALITY, QUALITY_TICKS, first_flags, point_metrics, point_per
from rrpo.experiment.overoptimisation import overopt_results, write_overopt
from rrpo.experiment.pipeline import build_stages
from rrpo.experiment.plots import COLOURS, plot_results
from rrpo.experiment.pretrain import policy_pretrain, pretrain_key
from rrpo.experiment.results import collect, trajectories, verdicts, write_results
from rrpo.experiment.studies import STUDIES, Study
from rrpo.experiment.tables import (
    CEILING_NAMES,
    ceilings_markdown,
    flags_markdown,
    recall_markdown,
    table_markdown,
)

__all__ = [
    "CEILING_NAMES",
    "CLASSES",
    "COLOURS",
    "CORPUS_LISTS",
    "DEFAULT_SYSTEMS",
    "EXPERIMENT_OVERRIDE_TARGETS",
    "METRICS",
    "OPTIONAL",
    "POLICY_CORPORA",
    "QUALITY",
    "QUALITY_TICKS",
    "STUDIES",
    "ExperimentArgs",
    "ExperimentConfig",
    "Run",
    "Study",
    "System",
    "build_stages",
    "ceilings_markdown",
    "cmd_experiment",
    "collect",
    "ensemble_members",
    "expand_force",
    "experiment_runs",
    "extra_corpora",
    "first_flags",
    "flags_markdown",
    "fold_dir",
    "fold_dirs",
    "fold_model_stages",
    "fold_stage",
    "overopt_results",
    "plot_results",
    "point_metrics",
    "point_per",
    "policy_pretrain",
    "prepare_data",
    "pretrain_key",
    "recall_markdown",
    "register",
    "reward_term",
    "rm_folder",
    "rm_seed",
    "seed_runs",
    "several_folds",
    "table_markdown",
    "trajectories",
    "verdicts",
    "write_overopt",
    "write_results",
]
