"""Policy-optimisation objectives over one batch of sampled sequences.

All three take the policy's teacher-forced logits at the sampled speech positions, so the
trainer, logging and budget accounting are shared; they differ only in how the reward reaches
the parameters:

- :func:`diffro_loss`: the reward model sees the straight-through relaxed tokens and its gradient
  flows into the logits (DiffRO; RRPO is the same with a robust reward model).
- :func:`reinforce_loss`: the reward is a scalar per sample; score-function gradient with a
  baseline.
- :func:`grpo_loss`: group-relative advantages and the clipped ratio of PPO/GRPO.

Each returns ``(loss, metrics)``; ``metrics`` are floats namespaced ``policy/...`` and per reward
term ``reward/<name>``. The KL to the reference (β) uses :func:`rrpo.optimize.relax.token_kl`.

:data:`OBJECTIVES` maps each ``algo`` to its whole step objective (sample, teacher-force the policy
and the reference, score, loss): ``OBJECTIVES[algo](ctx, batch) -> (loss, metrics)``. The trainer
(:mod:`rrpo.optimize.trainer`) and ``bench/optimize.py`` both call these, so the paper's step
exists once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rrpo.errors import RrpoError
from rrpo.optimize.relax import lengths_to_mask, straight_through, token_entropy, token_kl, upcast
from rrpo.policy.generate import generate, guided_logits
from rrpo.policy.settings import SamplingConfig
from rrpo.policy.sft import token_loss

#: A reward term: (relaxed or one-hot tokens (B, T, V), lens (B,), target (B,)) -> (B,) reward.
RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class RewardTerm:
    """One frozen reward model in a weighted sum; ``vocab`` is how many leading token ids it reads
    (speech tokens; the end-of-speech and special rows of the policy head are cut off)."""

    name: str
    fn: RewardFn
    weight: float
    vocab: int


def _rewards(terms: Sequence[RewardTerm], y: torch.Tensor, lens: torch.Tensor, target: torch.Tensor):
    total = torch.zeros(y.shape[0], device=y.device, dtype=upcast(y).dtype)
    metrics = {}
    for t in terms:
        x = y if t.vocab == y.shape[-1] else y[..., : t.vocab]  # no slice view (and copy) when widths agree
        r = upcast(t.fn(x, lens, target))  # (B,)
        total = total + t.weight * r
        metrics[f"reward/{t.name}"] = r.detach().mean().item()
    return total, metrics


def diffro_loss(
    logits: torch.Tensor,
    ref_logits: torch.Tensor,
    tokens: torch.Tensor,
    lens: torch.Tensor,
    target: torch.Tensor,
    terms: Sequence[RewardTerm],
    *,
    beta: float = 0.1,
    tau: float = 1.0,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """DiffRO: loss = mean_b [ −Σ_m w_m R_m(y_b) + β·KL_b ], KL_b the per-token mean (length-normalised).

    logits, ref_logits (B, T, V) at the sampled positions; tokens (B, T) sampled ids (padding
    anywhere past ``lens``); lens (B,) number of speech tokens (end-of-speech excluded); target (B,)
    emotion index per reward model; noise (B, T, V) the sampling noise or None.
    """
    mask = lengths_to_mask(lens, tokens.shape[1])
    width = max(t.vocab for t in terms)  # the columns the reward models read (speech ids)
    # (B, T, W) forward exactly one-hot, zero past lens; the only copy of the relaxed tensor
    y = straight_through(logits, tokens, noise, tau, width=width, mask=mask)
    reward, metrics = _rewards(terms, y, lens, target)
    kl = token_kl(logits, ref_logits, mask)
    loss = (-reward + beta * kl).mean()
    metrics.update(_policy_metrics(reward, kl, logits, mask, lens))
    return loss, metrics


def sequence_logprob(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token log π(token) (B, T), zero at invalid positions."""
    logp = torch.log_softmax(upcast(logits), dim=-1).gather(-1, tokens.masked_fill(~mask, 0).unsqueeze(-1)).squeeze(-1)
    return logp * mask.to(logp.dtype)


def reinforce_loss(
    logits,
    ref_logits,
    tokens,
    lens,
    target,
    reward: torch.Tensor,
    *,
    beta: float = 0.1,
    baseline: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """REINFORCE with a baseline: loss = mean_b [ −(R_b − b)·mean_t log π(a_t) + β·KL_b ].

    ``reward`` (B,) scalar rewards (no gradient); ``baseline`` defaults to the batch mean.
    """
    mask = lengths_to_mask(lens, tokens.shape[1])
    reward = reward.detach().float()
    b = reward.mean() if baseline is None else baseline
    logp = sequence_logprob(logits, tokens, mask).sum(-1) / mask.sum(-1).clamp_min(1)
    kl = token_kl(logits, ref_logits, mask)
    loss = (-(reward - b) * logp + beta * kl).mean()
    return loss, _policy_metrics(reward, kl, logits, mask, lens)


def grpo_loss(
    logits,
    ref_logits,
    tokens,
    lens,
    target,
    reward: torch.Tensor,
    group: int,
    *,
    beta: float = 0.1,
    clip: float = 0.2,
    old_logp: torch.Tensor | None = None,
    eps: float = 1e-4,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO: samples come in groups of ``group`` per prompt (consecutive rows).

    A_i = (R_i − mean_g R)/(std_g R + eps); per token ρ_t = π_θ(a_t)/π_old(a_t);
    loss = mean_b [ −mean_t min(ρ_t A_b, clip(ρ_t, 1−c, 1+c) A_b) + β·KL_b ]. ``old_logp`` (B, T)
    defaults to the current log-probs detached (one update per sample: ρ = 1, gradient A·∇log π).
    """
    B = reward.shape[0]
    if B % group:
        raise ValueError(f"batch of {B} is not a whole number of groups of {group}")
    mask = lengths_to_mask(lens, tokens.shape[1])
    r = reward.detach().float().view(-1, group)
    adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True, unbiased=False) + eps)).view(B)
    logp = sequence_logprob(logits, tokens, mask)
    old = logp.detach() if old_logp is None else old_logp
    ratio = torch.exp(logp - old)
    surr = torch.minimum(ratio * adv[:, None], ratio.clamp(1 - clip, 1 + clip) * adv[:, None])
    m = mask.to(surr.dtype)
    pg = (surr * m).sum(-1) / m.sum(-1).clamp_min(1)
    kl = token_kl(logits, ref_logits, mask)
    loss = (-pg + beta * kl).mean()
    metrics = _policy_metrics(reward.float(), kl, logits, mask, lens)
    metrics["policy/adv_abs"] = adv.abs().mean().item()
    return loss, metrics


def _policy_metrics(reward, kl, logits, mask, lens) -> dict[str, float]:
    return {
        "policy/reward": reward.detach().mean().item(),
        "policy/kl_ref": kl.detach().mean().item(),
        "policy/entropy": token_entropy(logits.detach(), mask).mean().item(),
        "policy/len": lens.float().mean().item(),
    }


# ------------------------------------------------------------------------ one step per algorithm


@dataclass
class StepContext:
    """What a step objective needs besides its batch: the policy being trained, the frozen
    reference, the reward terms and the objective's hyper-parameters (``OptimizeConfig``'s)."""

    policy: Any
    ref: Any
    terms: Sequence[RewardTerm] = ()
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    beta: float = 0.1
    tau: float = 1.0
    group: int = 4
    clip: float = 0.2
    bf16: bool = False


#: ``objective(ctx, batch) -> (loss, metrics)``.
StepObjective = Callable[[StepContext, dict], "tuple[torch.Tensor, dict[str, float]]"]


def _sample_and_replay(ctx: StepContext, batch: dict, noise: bool):
    """Sample ``batch["prompts"]`` without gradient (sampling seeds ``batch["seeds"]``, else drawn
    from torch's global generator), then the policy's logits with gradient and the reference's
    without, at the sampled positions: (gen, logits, ref_logits, ids, lens) on the logits' device."""
    prompts = batch["prompts"]
    seeds = batch.get("seeds")
    if seeds is None:
        seeds = torch.randint(0, 2**31 - 1, (len(batch["emotions"]),)).tolist()
    gen = generate(ctx.policy, prompts, ctx.sampling, seeds, return_noise=noise, bf16=ctx.bf16)
    ctx.policy.train()
    T = gen.ids.shape[1]
    if T == 0:
        raise RrpoError("the policy produced only empty samples; check sampling.min_ratio")
    # a guided sample (sampling.guidance) is replayed guided: the policy being optimised is the guided one
    logits = guided_logits(ctx.policy, gen.prompts, gen.ids, gen.lens, gen.guidance)[:, :T]  # (B, T, V_out)
    with torch.no_grad():
        ref_logits = guided_logits(ctx.ref, gen.prompts, gen.ids, gen.lens, gen.guidance)[:, :T]
    return gen, logits, ref_logits, gen.ids.to(logits.device), gen.lens.to(logits.device)


def _budget(metrics: dict, lens: torch.Tensor) -> dict:
    metrics["budget/samples"] = float(len(lens))
    metrics["budget/tokens"] = float(lens.sum())
    return metrics


def _scalar_rewards(terms: Sequence[RewardTerm], ids, lens, target) -> tuple[torch.Tensor, dict]:
    """Summed weighted reward of the sampled ids (no gradient) and ``reward/<name>`` per term."""
    with torch.no_grad():
        reward = torch.zeros(len(target), device=ids.device)
        metrics = {}
        for t in terms:
            r = t.fn(ids, lens, target).float()
            reward += t.weight * r
            metrics[f"reward/{t.name}"] = r.mean().item()
    return reward, metrics


def diffro_step(ctx: StepContext, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """DiffRO/RRPO: one sample per prompt, its sampling noise reused by the relaxation; :func:`diffro_loss`."""
    gen, logits, ref_logits, ids, lens = _sample_and_replay(ctx, batch, noise=True)
    loss, metrics = diffro_loss(
        logits,
        ref_logits,
        ids,
        lens,
        batch["emotions"],
        ctx.terms,
        beta=ctx.beta,
        tau=ctx.tau,
        noise=gen.noise[:, : ids.shape[1]].to(logits.device),
    )
    return loss, _budget(metrics, lens)


def reinforce_step(ctx: StepContext, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """REINFORCE: scalar rewards of the samples, batch-mean baseline; :func:`reinforce_loss`."""
    _, logits, ref_logits, ids, lens = _sample_and_replay(ctx, batch, noise=False)
    reward, metrics = _scalar_rewards(ctx.terms, ids, lens, batch["emotions"])
    loss, m2 = reinforce_loss(logits, ref_logits, ids, lens, batch["emotions"], reward, beta=ctx.beta)
    return loss, _budget({**metrics, **m2}, lens)


def grpo_step(ctx: StepContext, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO: the batch holds ``ctx.group`` consecutive copies of each prompt; :func:`grpo_loss`."""
    _, logits, ref_logits, ids, lens = _sample_and_replay(ctx, batch, noise=False)
    reward, metrics = _scalar_rewards(ctx.terms, ids, lens, batch["emotions"])
    loss, m2 = grpo_loss(
        logits, ref_logits, ids, lens, batch["emotions"], reward, ctx.group, beta=ctx.beta, clip=ctx.clip
    )
    return loss, _budget({**metrics, **m2}, lens)


def sft_step(ctx: StepContext, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Continued teacher-forced cross-entropy on real recordings' tokens (``rrpo.policy.sft.collate`` batch)."""
    loss, _, _ = token_loss(ctx.policy, batch)
    return loss, _budget({"policy/loss": loss.item()}, batch["speech_lens"])


#: The step objective of each ``algo`` of ``rrpo optimize`` (RRPO is ``diffro`` with a robust reward model).
OBJECTIVES: dict[str, StepObjective] = {
    "diffro": diffro_step,
    "grpo": grpo_step,
    "reinforce": reinforce_step,
    "sft": sft_step,
}
