"""Where ``rrpo experiment`` puts things and what it names them: folds, runs, settings, reward models.

With one fold the stages and folders are named as they always were; with several, a fold's stages
are named ``<stage>@<speaker>`` and live under ``folds/<speaker>/``. A run of system ``m`` with
optimisation seed ``s`` is ``<m>_s<s>``, in its fold's ``runs/``; with ``settings`` it lives in
``runs/<setting>/`` and its stages are named ``<m>_s<s>+<setting>`` (``audit_<m>_s<s>+<setting>``),
``@<speaker>`` after that with several folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rrpo.args import yaml_list
from rrpo.experiment.config import ExperimentConfig, System


# -------------------------------------------------------------------------------------------- folds
def several_folds(cfg: ExperimentConfig) -> bool:
    return len(cfg.heldout_speakers) > 1


def fold_dir(o: Path, cfg: ExperimentConfig, speaker: str) -> Path:
    """A fold's folder: the run folder itself with one fold (the layout before folds), else ``folds/<speaker>``."""
    return o / "folds" / speaker if several_folds(cfg) else o


def fold_dirs(o: Path, cfg: ExperimentConfig) -> dict[str, Path]:
    """``{held-out speaker: its fold's folder}`` in config order."""
    return {h: fold_dir(o, cfg, h) for h in cfg.heldout_speakers}


def fold_stage(cfg: ExperimentConfig, name: str, speaker: str) -> str:
    """A fold's stage name: ``name`` with one fold, else ``name@speaker``."""
    return f"{name}@{speaker}" if several_folds(cfg) else name


def stage_base(name: str) -> str:
    """A stage name without its fold and setting: ``rrpo_s0+beta0@A`` → ``rrpo_s0``."""
    return name.split("@", 1)[0].split("+", 1)[0]


def expand_force(force, names: list[str]) -> set[str]:
    """``force`` with each plain name widened to every stage it stands for: a per-fold stage's name
    (``rm_vanilla``) to that stage in every fold (``rm_vanilla@A``, ``rm_vanilla@B``), a run's name
    (``rrpo_s0``, ``audit_rrpo_s0``) to it in every setting and fold, a run in one setting
    (``rrpo_s0+beta0``) to it in every fold; other names are kept as given (unknown ones are refused
    by the stage runner)."""
    out = set()
    for f in force:
        wide = [n for n in names if n != f and (n.split("@", 1)[0] == f or stage_base(n) == f)]
        out.update(wide if f not in names and wide else [f])
    return out


# --------------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Run:
    """One optimisation run: a system at a seed in a fold, under a setting ("" = no settings)."""

    system: str
    seed: int
    fold: str
    setting: str = ""

    @property
    def name(self) -> str:
        """``<system>_s<seed>``: the run's folder name and, in the comparison, its stage name."""
        return f"{self.system}_s{self.seed}"

    @property
    def path(self) -> str:
        """The run's folder under its fold's ``runs/``: ``<setting>/<name>`` with settings."""
        return f"{self.setting}/{self.name}" if self.setting else self.name

    @property
    def tag(self) -> str:
        """The run's stage name in its fold: ``<name>+<setting>`` with settings."""
        return f"{self.name}+{self.setting}" if self.setting else self.name


def setting_names(cfg: ExperimentConfig) -> list[str]:
    """The settings in config order; ``[""]`` (one unnamed setting) without any."""
    return list(cfg.settings) or [""]


def experiment_runs(cfg: ExperimentConfig) -> list[Run]:
    """Every optimisation run: seed-major, then setting, fold and system (so an interrupted experiment
    has whole seeds done: every setting, fold and system of them)."""
    return [
        Run(m, s, h, k)
        for s in cfg.seeds
        for k in setting_names(cfg)
        for h in cfg.heldout_speakers
        for m in cfg.systems
    ]


def seed_runs(cfg: ExperimentConfig) -> list[tuple[str, str, int, str]]:
    """(run folder under ``runs/``, system, seed, fold) of every optimisation run (:func:`experiment_runs`)."""
    return [(r.path, r.system, r.seed, r.fold) for r in experiment_runs(cfg)]


def run_dir(o: Path, cfg: ExperimentConfig, run: Run) -> Path:
    return fold_dir(o, cfg, run.fold) / "runs" / run.path


# ------------------------------------------------------------------------------------ reward models
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
