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


def vdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ_k a_k b_k over the last axis without a product tensor, in the inputs' precision (autocast
    would run ``vecdot`` in bf16)."""
    try:
        ctx = torch.autocast(a.device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know: nothing to switch off
        import contextlib

        ctx = contextlib.nullcontext()
    with ctx:
        return torch.linalg.vecdot(a, b)


def sample_gumbel(shape, generator: torch.Generator | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise: -log(-log U), U ~ Uniform(0, 1)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    tiny = torch.finfo(dtype).tiny
    e = (-torch.log(u.clamp_min(tiny))).clamp_min(tiny)  # Exp(1)
    return -torch.log(e)


def conditional_gumbel(
    logits: torch.Tensor, tokens: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
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


class _StraightThrough(torch.autograd.Function):
    """Forward: one-hot of the tokens (B, T, W) where ``valid``; backward: through softmax((z+g)/τ).

    Memory: the only (B, T, V) tensor kept for the backward pass is the soft sample itself (float32);
    the one-hot is built by a scatter (no int64 one-hot, no ``hard − soft + soft`` chain), and the
    backward pass works in place on one buffer."""

    @staticmethod
    def forward(ctx, logits, tokens, noise, tau, width, valid):
        soft = logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits.clone()  # fresh (B, T, V)
        if noise is not None:
            soft.add_(noise)
        soft.div_(tau)
        soft = torch.softmax(soft, dim=-1)  # (B, T, V) float32, saved
        ctx.save_for_backward(soft, valid)
        ctx.tau, ctx.width, ctx.in_dtype = tau, width, logits.dtype
        y = soft.new_zeros(soft.shape[:-1] + (width,))  # (B, T, W)
        y.scatter_(-1, tokens.clamp(0, width - 1).unsqueeze(-1), valid.unsqueeze(-1).to(y.dtype))
        return y

    @staticmethod
    def backward(ctx, grad):
        soft, valid = ctx.saved_tensors
        W = ctx.width
        g = grad.to(soft.dtype) * valid.unsqueeze(-1).to(soft.dtype)  # (B, T, W): masked rows get nothing
        inner = vdot(g, soft[..., :W]).unsqueeze(-1)  # (B, T, 1) = Σ_k g_k s_k
        out = soft * inner.neg_()  # (B, T, V) = −s·⟨g, s⟩
        out[..., :W].addcmul_(soft[..., :W], g)  # + s·g on the columns the reward reads
        out.div_(ctx.tau)
        return out.to(ctx.in_dtype), None, None, None, None, None


def straight_through(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    noise: torch.Tensor | None = None,
    tau: float = 1.0,
    *,
    width: int | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Straight-through Gumbel-Softmax: forward = one_hot(tokens), backward = d softmax((z+g)/τ).

    logits (B, T, V) with gradient; tokens (B, T) int64 sampled ids; noise (B, T, V) or None (no
    noise: plain softmax(z/τ) as the soft path). ``width`` W ≤ V keeps only the first W columns of
    the output (the ids a reward model reads; the softmax still runs over all V); ``mask`` (B, T)
    True = valid zeroes the other rows (and their gradient), as does a token ≥ W. Returns y
    (B, T, W) in float32 for half-precision logits (what a reward model's ``p·E`` wants), else in
    the logits' dtype.
    """
    width = logits.shape[-1] if width is None else int(width)
    valid = tokens < width
    if mask is not None:
        valid = valid & mask
    return _StraightThrough.apply(logits, tokens, noise, float(tau), width, valid)


class _TokenKL(torch.autograd.Function):
    """KL_t (B, T) = Σ_k p_k (log p_k − log q_k) with p = softmax(z), q = softmax(z_ref).

    Keeps only the two inputs for the backward pass (no float32 log p, p, log p − log q copies: in
    bf16 that is one float32 (B, T, V) tensor's worth instead of three) and recomputes there:
    dKL_t/dz_k = p_k (log p_k − log q_k − KL_t)."""

    @staticmethod
    def _parts(logits, ref_logits):
        logp = F.log_softmax(upcast(logits), dim=-1)  # (B, T, V)
        d = F.log_softmax(upcast(ref_logits), dim=-1).to(logp.dtype).neg_().add_(logp)  # log p − log q
        p = logp.exp_()  # in place: logp is no longer needed
        return p, d

    @staticmethod
    def forward(ctx, logits, ref_logits):
        ctx.save_for_backward(logits, ref_logits)
        p, d = _TokenKL._parts(logits.detach(), ref_logits.detach())
        return vdot(p, d)  # (B, T)

    @staticmethod
    def backward(ctx, grad):
        logits, ref_logits = ctx.saved_tensors
        p, d = _TokenKL._parts(logits, ref_logits)
        kl = vdot(p, d).unsqueeze(-1)  # (B, T, 1)
        out = d.sub_(kl).mul_(p).mul_(grad.to(d.dtype).unsqueeze(-1))  # (B, T, V), in d's buffer
        return out.to(logits.dtype), None


def token_kl(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean token-level KL(π_θ || π_ref) over valid positions.

    KL_t = Σ_k π_θ(k|t) (log π_θ(k|t) − log π_ref(k|t)); returns (B,) = Σ_t mask·KL_t / Σ_t mask.
    logits, ref_logits (B, T, V); mask (B, T) True = valid. The reference gets no gradient.
    Example: π_θ = (0.5, 0.5), π_ref = (0.25, 0.75) gives 0.5·ln 2 + 0.5·ln(2/3) = 0.1438.
    """
    kl_t = _TokenKL.apply(logits, ref_logits.detach())  # (B, T) float32
    m = mask.to(kl_t.dtype)
    return (kl_t * m).sum(-1) / m.sum(-1).clamp_min(1.0)


@torch.no_grad()
def token_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean entropy of the policy over valid positions (B,), in nats (no gradient)."""
    logp = F.log_softmax(upcast(logits), dim=-1)
    h = -vdot(logp.exp(), logp)  # (B, T)
    m = mask.to(h.dtype)
    return (h * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def lengths_to_mask(lens: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool mask, True = valid."""
    max_len = int(lens.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]
