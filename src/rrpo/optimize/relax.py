"""Gumbel-Softmax relaxation of sampled speech tokens, and token-level KL.

DiffRO makes the policy's discrete token choice differentiable. The policy samples tokens without
gradient; later a teacher-forced pass gives logits z (B, T, V) at the same positions with gradient.
:func:`straight_through` turns (z, sampled ids, Gumbel noise g) into y (B, T, V) whose forward
value is exactly the one-hot of the sampled ids and whose gradient is that of the soft sample
softmax((z + g)/τ). Reusing the sampling step's noise makes soft and hard agree; where that noise
is not at hand, :func:`conditional_gumbel` draws noise from the Gumbel distribution *conditioned on*
the observed argmax, which is the exact posterior of the noise given the sample (Maddison et al.
2014, "A* sampling", top-down construction of the Gumbel-max process).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upcast(x: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision tensors (softmax and logs in bf16 lose too much), else as is."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def sample_gumbel(shape, generator: torch.Generator | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise: -log(-log U), U ~ Uniform(0, 1)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    tiny = torch.finfo(dtype).tiny
    e = (-torch.log(u.clamp_min(tiny))).clamp_min(tiny)  # Exp(1)
    return -torch.log(e)


def conditional_gumbel(logits: torch.Tensor, tokens: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel noise g (B, T, V) such that argmax(logits + g) == tokens, drawn from the posterior.

    The maximum of the perturbed logits is Gumbel(logsumexp(logits)); given it, every other entry
    is Gumbel(logit) truncated below that maximum. Returns the noise (perturbed minus logits).
    Positions where a logit is -inf (filtered by top-k/top-p) get -inf perturbed values.
    """
    logits = logits.detach().float()
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)  # (B, T, 1)
    top = lse + sample_gumbel(lse.shape, generator, logits.device)  # (B, T, 1) value of the max
    g = logits + sample_gumbel(logits.shape, generator, logits.device)  # (B, T, V) unconstrained
    # truncate every entry below `top`: -log(exp(-top) + exp(-g))
    trunc = -torch.logaddexp(-top, -g)
    perturbed = trunc.scatter(-1, tokens.unsqueeze(-1), top)
    noise = perturbed - logits
    return torch.where(torch.isfinite(logits), noise, torch.zeros_like(noise))


def straight_through(logits: torch.Tensor, tokens: torch.Tensor, noise: torch.Tensor | None = None,
                     tau: float = 1.0) -> torch.Tensor:
    """Straight-through Gumbel-Softmax: forward = one_hot(tokens), backward = d softmax((z+g)/τ).

    logits (B, T, V) with gradient; tokens (B, T) int64 sampled ids; noise (B, T, V) or None (no
    noise: plain softmax(z/τ) as the soft path). Returns y (B, T, V) in the logits' dtype.
    """
    z = logits if noise is None else logits + noise.to(logits.dtype)
    soft = F.softmax(upcast(z) / tau, dim=-1)
    hard = F.one_hot(tokens, soft.shape[-1]).to(soft.dtype)
    return (hard - soft.detach() + soft).to(logits.dtype)


def token_kl(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean token-level KL(π_θ || π_ref) over valid positions.

    KL_t = Σ_k π_θ(k|t) (log π_θ(k|t) − log π_ref(k|t)); returns (B,) = Σ_t mask·KL_t / Σ_t mask.
    logits, ref_logits (B, T, V); mask (B, T) True = valid.
    Example: π_θ = (0.5, 0.5), π_ref = (0.25, 0.75) gives 0.5·ln 2 + 0.5·ln(2/3) = 0.1438.
    """
    logp = F.log_softmax(upcast(logits), dim=-1)
    logq = F.log_softmax(upcast(ref_logits), dim=-1)
    kl_t = (logp.exp() * (logp - logq)).sum(-1)  # (B, T)
    m = mask.to(kl_t.dtype)
    return (kl_t * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def token_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean entropy of the policy over valid positions (B,), in nats."""
    logp = F.log_softmax(upcast(logits), dim=-1)
    h = -(logp.exp() * logp).sum(-1)
    m = mask.to(h.dtype)
    return (h * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def lengths_to_mask(lens: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool mask, True = valid."""
    max_len = int(lens.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]
