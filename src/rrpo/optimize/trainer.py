"""``rrpo optimize``: DiffRO / RRPO and the sampled-RL baselines under one trainer.

One config, one loop (:func:`rrpo.train.loop.train`), four objectives chosen by ``algo``
(:data:`rrpo.optimize.objectives.OBJECTIVES`, shared with ``bench/optimize.py``):

- ``diffro``: sample without gradient, replay teacher-forced with gradient, relax with
  straight-through Gumbel-Softmax (reusing the sampling noise), score with the frozen reward
  model(s), add β·KL to the frozen reference. **RRPO is ``algo: diffro`` with a robust reward
  model** in ``rewards`` — a config value, not a second trainer.
- ``reinforce``: the same samples, scalar rewards, score-function gradient with a batch-mean baseline.
- ``grpo``: ``group`` samples per prompt, group-relative advantages, clipped ratio.
- ``sft``: continued teacher-forced cross-entropy on the real recordings' tokens (a baseline with
  the same budget accounting).

Every metric is namespaced: ``reward/<name>`` per reward term, ``policy/reward``, ``policy/kl_ref``,
``policy/entropy``, ``budget/samples``, ``budget/tokens``. Checkpoints every ``train.ckpt_every``
steps hold the full policy weights; the audit reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from rrpo.config import check, option, section, to_dict
from rrpo.data.manifest import ManifestFilter
from rrpo.errors import RrpoError
from rrpo.policy.settings import SamplingConfig
from rrpo.runs import OptimizeRunInfo
from rrpo.train.loop import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class RewardSpec:
    name: str = option("emotion", "name of this reward term in the logs (reward/<name>)")
    path: str = option("", "reward-model run folder or checkpoint (rrpo rm train)")
    paths: list[str] = option([], "several reward-model folders scored as one ensemble term (instead of path)")
    aggregate: Literal["mean", "min", "mean_minus_std"] = option(
        "mean", "how an ensemble's member rewards combine: mean, min, or mean − std_weight·std (pessimistic)"
    )
    std_weight: float = option(1.0, "k of aggregate mean_minus_std")
    weight: float = option(1.0, "weight of this term in the summed reward")

    def __post_init__(self):
        check(not (self.path and self.paths), "rewards.path", "give path or paths, not both")
        check(
            self.aggregate in ("mean", "min", "mean_minus_std"),
            "rewards.aggregate",
            "must be mean, min or mean_minus_std",
        )
        check(self.std_weight >= 0, "rewards.std_weight", "must be >= 0")

    def folders(self) -> list[str]:
        """The reward-model folders of this term (one, or an ensemble's members)."""
        return list(self.paths) or ([self.path] if self.path else [])

    def load(self, device="cpu"):
        """The frozen reward model, or a :class:`rrpo.reward.ensemble.RewardEnsemble` of ``paths``."""
        from rrpo.reward.ensemble import load_reward

        if not self.folders():
            raise RrpoError(f"config: reward term '{self.name}' has no path (or paths)")
        return load_reward(self.folders(), self.aggregate, self.std_weight, device=device)


@dataclass
class PromptConfig(ManifestFilter):
    """Where texts and target emotions come from: every (text, language, speaker) of the filtered
    manifest, times every target emotion."""

    shards: str = option("", "token shards of the manifest (algo=sft only: the real recordings' tokens)")


@dataclass
class JudgeWatch:
    every: int = option(0, "score the policy with the independent judge every N steps (0 = off)")
    judge: str = option("", "judge folder (rrpo judge train)")
    codec: str = option("", "codec folder that decodes the policy's tokens")
    manifest: str = option("", "held-out texts for the watch (default: prompts.manifest)")
    splits: list[str] = option([], "splits of that manifest to take texts from ([] = all)")
    max_texts: int = option(2, "distinct texts, each spoken in every target emotion")
    max_recordings: int = option(
        50, "real recordings per watched speaker (outside the watch's texts) that anchor the judge's statistics"
    )
    n_boot: int = option(500, "cluster-bootstrap draws of the emotion flag's noise margin")
    stop_on_flag: bool = option(False, "stop the run (after a checkpoint) when the hacking flag rises")

    RENAMED: ClassVar[dict[str, str]] = {"split": "splits"}


@dataclass
class OptimizeConfig:
    out: str = option("runs/optimize", "run folder to write (resumed if it holds checkpoints)")
    algo: Literal["diffro", "grpo", "reinforce", "sft"] = option("diffro", "objective")
    policy: str = option("", "starting policy: SFT run folder, policy folder or CosyVoice2 directory")
    rewards: list[RewardSpec] = option([], "frozen reward models, summed with their weights")
    prompts: PromptConfig = section(PromptConfig, "where texts and target emotions come from")
    sampling: SamplingConfig = section(SamplingConfig, "how samples are drawn")
    beta: float = option(0.1, "weight of the token-level KL to the reference policy")
    tau: float = option(1.0, "Gumbel-Softmax temperature (diffro)")
    group: int = option(4, "samples per prompt (grpo)")
    clip: float = option(0.2, "ratio clip (grpo)")
    train: TrainConfig = section(TrainConfig, "optimisation; train.batch_size = prompts per micro-batch")
    watch: JudgeWatch = section(JudgeWatch, "log the independent judge during training and optionally stop on hacking")

    def __post_init__(self):
        check(self.beta >= 0, "beta", "must be >= 0")
        check(self.tau > 0, "tau", "must be > 0")
        check(self.group >= 2 or self.algo != "grpo", "group", "grpo needs at least 2 samples per prompt")
        check(0 < self.clip < 1, "clip", "must be in (0, 1)")
        for i, r in enumerate(self.rewards):
            if isinstance(r, dict):  # lists of sections arrive as dicts from YAML
                self.rewards[i] = RewardSpec(**r)


def _load_rewards(cfg: OptimizeConfig, speech_vocab: int, device):
    from rrpo.optimize.objectives import RewardTerm

    if cfg.algo != "sft" and not cfg.rewards:
        raise RrpoError(f"config: algo={cfg.algo} needs at least one reward model in 'rewards'")
    terms, models = [], []
    for spec in cfg.rewards:
        rm = spec.load(device)
        for p in rm.parameters():
            p.requires_grad_(False)
        if rm.vocab_size != speech_vocab:
            raise RrpoError(
                f"reward model '{spec.name}' reads {rm.vocab_size} token ids but the policy "
                f"speaks {speech_vocab}: both must come from the same codec",
                spec.folders()[0],
            )

        def fn(y, lens, target, rm=rm):
            return rm.reward(y, lens, target)

        terms.append(RewardTerm(spec.name, fn, spec.weight, rm.vocab_size))
        models.append(rm)
    return terms, models


def _prompt_rows(cfg: OptimizeConfig, policy, rms) -> list[dict]:
    from rrpo.data.manifest import read_manifest

    if not cfg.prompts.manifest:
        raise RrpoError("config: prompts.manifest is required")
    man = cfg.prompts.apply(read_manifest(cfg.prompts.manifest))
    known = set(policy.emotions) if policy.emotions else None
    for rm in rms:
        known = set(rm.classes) if known is None else known & set(rm.classes)
    emotions = list(cfg.prompts.emotions) or sorted(known or [])
    bad = [e for e in emotions if known is not None and e not in known]
    if bad:
        raise RrpoError(
            f"target emotion(s) {bad} are not known to the policy and every reward model "
            f"(common: {sorted(known or [])})"
        )
    if not emotions:
        raise RrpoError("no target emotion is known to both the policy and the reward models")
    rows, seen = [], set()
    for u in man:
        for emo in emotions:
            key = (u.text, u.language, u.speaker, emo)
            if key in seen:
                continue
            seen.add(key)
            rows.append({"id": u.id, "text": u.text, "language": u.language, "speaker": u.speaker, "emotion": emo})
    if not rows:
        raise RrpoError("no prompts left after the manifest filters", cfg.prompts.manifest)
    return rows


@dataclass
class OptimizeState:
    """What a step hook may read once the optimiser is set up: the policy being trained, the frozen
    starting policy, the reward models, the run folder and this process' rank."""

    policy: Any
    start: Any
    reward_models: list
    run: Any
    rank: int


#: Builds the loop's ``on_step(step, metrics) -> stop?`` hook from the optimiser's state.
HookFactory = Callable[[OptimizeState], Callable[[int, dict], "bool | None"]]


def run_optimize(cfg: OptimizeConfig, argv: list[str] | None = None, on_step: HookFactory | None = None) -> dict:
    """Optimise the policy; return the last metrics. The run folder gets ``run.json`` (what audit and
    report read), ``policy/`` (description and final weights) and ``checkpoints/step_N`` (full policy
    weights) like an SFT run, so every verb that reads a policy reads an optimisation run too.

    ``on_step`` builds the training loop's step hook (the judge watch of ``watch.*`` is one,
    composed by :func:`rrpo.optimize.commands.optimize`); ``watch.every`` without a hook is refused."""
    import copy

    from rrpo.optimize.objectives import OBJECTIVES, StepContext
    from rrpo.policy.io import load_policy, save_policy
    from rrpo.runs import RunDir
    from rrpo.train.dist import init_from_env
    from rrpo.train.loop import EpochBatches, resolve_device, train, world

    if not cfg.policy:
        raise RrpoError("config: 'policy' (the starting policy) is required")
    if cfg.watch.every and on_step is None:
        raise RrpoError(
            "config: watch.every needs the judge watch: run `rrpo optimize` or rrpo.optimize.commands.optimize(cfg)"
        )
    init_from_env()  # joins the process group under torchrun / accelerate launch; no-op otherwise
    device = resolve_device(cfg.train.device)
    policy = load_policy(cfg.policy)
    ref = copy.deepcopy(policy).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    terms, rms = _load_rewards(cfg, policy.speech_vocab_size, device)
    ref.to(device)
    rows = _prompt_rows(cfg, policy, rms)
    rank = world()[0]
    run = RunDir.create(cfg.out, cfg, argv) if rank == 0 else RunDir(cfg.out)
    if rank == 0:
        OptimizeRunInfo(cfg.algo, cfg.policy, [to_dict(r) for r in cfg.rewards], cfg.prompts.manifest).write(run.path)
        save_policy(policy, run.path / "policy", weights=False)
    use_spk = policy.speaker_embedding is not None
    log.info("%s: %d prompts, %d reward term(s)", cfg.algo, len(rows), len(terms))

    sft_examples = None
    if cfg.algo == "sft":
        sft_examples = _sft_examples(cfg, policy)

    def collate(idx):
        if sft_examples is not None:
            from rrpo.policy.sft import collate as sft_collate

            return sft_collate(policy, [sft_examples[i] for i in idx])
        sel = [rows[i] for i in idx]
        if cfg.algo == "grpo":
            sel = [r for r in sel for _ in range(cfg.group)]
        prompts = policy.encode_prompts(
            [r["text"] for r in sel],
            [r["emotion"] for r in sel],
            [r["language"] for r in sel],
            [r["speaker"] for r in sel] if use_spk else None,
        )
        return {"prompts": prompts, "emotions": [r["emotion"] for r in sel]}

    n_items = len(sft_examples) if sft_examples is not None else len(rows)
    batches = EpochBatches(n_items, cfg.train.batch_size, collate, seed=cfg.train.seed)

    ctx = StepContext(
        policy,
        ref,
        terms,
        cfg.sampling,
        beta=cfg.beta,
        tau=cfg.tau,
        group=cfg.group,
        clip=cfg.clip,
        bf16=cfg.train.bf16,
    )
    step_objective = OBJECTIVES[cfg.algo]

    def objective(batch, step):
        return step_objective(ctx, batch)

    meta = {
        "optimize": {
            "algo": cfg.algo,
            "policy": cfg.policy,
            "rewards": [to_dict(r) for r in cfg.rewards],
            "n_prompts": len(rows),
        }
    }
    hook = on_step(OptimizeState(policy, ref, rms, run, rank)) if on_step is not None else None
    last = train(policy, objective, batches, cfg.train, run, meta=meta, on_step=hook)
    if rank == 0:
        save_policy(policy, run.path / "policy")
    return {**last, "run": str(run.path)}


def _sft_examples(cfg: OptimizeConfig, policy):
    from rrpo.codec.shards import TokenShards
    from rrpo.data.manifest import read_manifest
    from rrpo.policy.sft import Example

    if not cfg.prompts.shards:
        raise RrpoError("config: algo=sft needs prompts.shards (token shards of prompts.manifest)")
    shards = TokenShards(cfg.prompts.shards)
    man = cfg.prompts.apply(read_manifest(cfg.prompts.manifest), cfg.prompts.emotions or (policy.emotions or None))
    out = []
    for u in man:
        if u.id in shards and u.emotion_labelled:  # SFT conditions on the emotion: labelled records only
            out.append(Example(u.id, u.text, u.emotion, u.language, u.speaker, torch.as_tensor(shards.get(u.id)[0])))
    if not out:
        raise RrpoError("no utterance of prompts.manifest is in prompts.shards", cfg.prompts.shards)
    return out
