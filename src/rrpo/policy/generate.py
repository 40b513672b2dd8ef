"""Sampling speech tokens from the policy, with a KV cache, in batches.

Per step and row the sampler follows CosyVoice2:

1. scores ``z / temperature`` over the speech ids and end-of-speech (the two special rows are never
   sampled);
2. nucleus filter: keep the most likely ids while the probability mass before them is < ``top_p``
   and fewer than ``top_k`` are kept;
3. below the minimum length end-of-speech is removed from the kept set (CosyVoice2 re-draws until
   it is not eos, which is the same distribution);
4. draw from the kept set; if the drawn id occurs at least ``ras_window * ras_tau`` times among the
   row's last ``ras_window`` ids (repetition-aware sampling), draw again from the whole
   distribution instead;
5. stop at end-of-speech or after ``max_len`` ids.

Lengths: ``min_len = floor(min_ratio * n_text)``, ``max_len = ceil(max_ratio * n_text)``, with
``n_text`` the tokens of the text to speak (not the instruction).

**Replaying a sample (for DiffRO).** Every draw is Gumbel-max: ``id = argmax_{k in kept} (z_k/T +
g_k)`` with ``g`` standard Gumbel noise from the row's own generator. :class:`Generation` returns
``noise[b, t] = T * g`` on the set the draw used and ``-inf`` outside it, so for the logits ``z``
of a later teacher-forced :meth:`~rrpo.policy.model.TTSPolicy.forward` on the same sequence::

    argmax_k (z[b, t, k] + noise[b, t, k]) == ids[b, t]   for t < lens[b]
    argmax_k (z[b, lens[b], k] + noise[b, lens[b], k]) == eos   where ended[b]

exactly, whenever the teacher-forced logits equal the sampling-time logits (same weights and
dtype; the test checks it in fp32 — under bf16 autocast the two passes may differ in the last bits
and, rarely, flip a near-tie). ``softmax((z + noise) / tau)`` is then the Gumbel-softmax relaxation
of the very sample drawn. Rows ``t > lens[b]`` (and ``t = lens[b]`` where not ended) hold zeros
and must be masked.

Each row draws two Gumbel vectors per step from its own ``torch.Generator`` seeded by
``seeds[b]``, whatever happens in other rows, so a batch and one-by-one generation with the same
row seeds give the same ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from rrpo.policy.model import Prompts, TTSPolicy
from rrpo.policy.settings import SamplingConfig


@dataclass
class Generation:
    """What :func:`generate` returns. ``ids`` (B, T) speech ids padded with 0; ``lens`` (B,);
    ``ended`` (B,) True where end-of-speech was drawn (else ``max_len`` was reached); ``noise``
    (B, T+1, V_out) float32 as described in the module docstring (None if not requested);
    ``prompts`` the encoded prompts, for the teacher-forced replay."""

    ids: torch.Tensor
    lens: torch.Tensor
    ended: torch.Tensor
    noise: torch.Tensor | None
    prompts: Prompts

    def tokens(self, b: int) -> torch.Tensor:
        return self.ids[b, :int(self.lens[b])]


def gumbel(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) float32 standard Gumbel noise ``-log(-log u)``, u uniform in (0, 1)."""
    u = torch.rand(n, generator=generator).clamp_(1e-20, 1.0 - 2 ** -24)
    return -torch.log(-torch.log(u))


def nucleus_mask(scores: torch.Tensor, top_p: float, top_k: int) -> torch.Tensor:
    """Bool mask of the ids CosyVoice2's nucleus filter keeps from ``scores`` (V,) (-inf = excluded):
    in order of probability, id i is kept while the mass before it is < ``top_p`` and fewer than
    ``top_k`` are kept. Example: probabilities (0.5, 0.3, 0.2), top_p 0.8 -> keeps the first two
    (mass before them 0 and 0.5; before the third 0.8, not < 0.8)."""
    probs = torch.softmax(scores.float(), -1)
    vals, order = probs.topk(min(top_k, probs.shape[0]))  # descending
    before = vals.cumsum(-1) - vals
    keep_sorted = (before < top_p) & (vals > 0)
    keep_sorted[0] = True
    keep = torch.zeros(probs.shape[0], dtype=torch.bool)
    keep[order] = keep_sorted
    return keep


def _sample_row(z: torch.Tensor, history: list[int], step: int, min_len: int, eos: int, n_speech: int,
                cfg: SamplingConfig, gen: torch.Generator) -> tuple[int, torch.Tensor]:
    """One draw for one row from logits ``z`` (V_out,) float32; returns (id, noise row (V_out,))."""
    t = cfg.temperature
    zs = z[:n_speech + 1] / t  # speech ids and eos; the special rows are never drawn
    base = torch.ones(n_speech + 1, dtype=torch.bool)
    if step < min_len:
        base[eos] = False
    neg = torch.tensor(-math.inf)
    scores = torch.where(base, zs, neg)
    kept = nucleus_mask(zs, cfg.top_p, cfg.top_k) & base
    if not kept.any():
        kept[int(scores.argmax())] = True
    g1, g2 = gumbel(n_speech + 1, gen), gumbel(n_speech + 1, gen)
    used, g = kept, g1
    tok = int(torch.where(kept, scores + g1, neg).argmax())
    if cfg.ras_window and tok != eos:
        window = history[-cfg.ras_window:]
        if sum(1 for h in window if h == tok) >= cfg.ras_window * cfg.ras_tau:
            used, g = base, g2
            tok = int(torch.where(base, scores + g2, neg).argmax())
    noise = torch.full_like(z, -math.inf)
    noise[:n_speech + 1] = torch.where(used, t * g, neg)
    return tok, noise


@torch.no_grad()
def generate(policy: TTSPolicy, prompts: Prompts, cfg: SamplingConfig | None = None,
             seeds: int | Sequence[int] = 0, *, return_noise: bool = True, bf16: bool = False,
             max_len: int | None = None, min_len: int | None = None) -> Generation:
    """Sample speech ids for a batch of prompts (see the module docstring).

    ``seeds``: one per row, or an int ``s`` meaning rows ``s, s+1, ...``. ``max_len``/``min_len``
    override the text-length rule for every row (benchmarks, tests). ``bf16`` runs the decoder
    under bf16 autocast (sampling itself is in fp32).
    """
    cfg = cfg or SamplingConfig()
    was_training = policy.training
    policy.eval()
    b = len(prompts)
    if isinstance(seeds, int):
        seeds = [seeds + i for i in range(b)]
    if len(seeds) != b:
        raise ValueError(f"{len(seeds)} seeds for {b} prompts")
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    n = prompts.content_lens.float()
    mins = (torch.full((b,), min_len) if min_len is not None else torch.floor(n * cfg.min_ratio)).long().tolist()
    maxs = (torch.full((b,), max_len) if max_len is not None else torch.ceil(n * cfg.max_ratio)).long().clamp(min=1).tolist()
    eos, s_vocab = policy.eos_id, policy.speech_vocab_size
    dev = policy.llm_embedding.weight.device
    dtype_ctx = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16)

    with dtype_ctx:
        emb, mask = policy.prompt_embeddings(prompts)  # (B, P, D), (B, P)
        past = None
        if cfg.use_cache:
            from transformers import DynamicCache
            past = DynamicCache()
            hidden, past = policy.decode(emb, mask, past)
        else:
            hidden = policy.decode(emb, mask)
        logits = policy.llm_decoder(hidden[:, -1]).float()  # (B, V_out)

    history: list[list[int]] = [[] for _ in range(b)]
    done = [False] * b
    ended = [False] * b
    noises: list[torch.Tensor] = []
    seq_emb = emb
    step = 0
    while not all(done):
        toks = torch.zeros(b, dtype=torch.long)
        noise_t = torch.zeros(b, logits.shape[-1])
        for i in range(b):
            if done[i]:
                continue
            if step >= maxs[i]:
                done[i] = True
                continue
            tok, noise_row = _sample_row(logits[i].cpu(), history[i], step, mins[i], eos, s_vocab, cfg, gens[i])
            noise_t[i] = noise_row
            if tok == eos:
                done[i] = ended[i] = True
            else:
                history[i].append(tok)
                toks[i] = tok
        noises.append(noise_t)
        step += 1
        if all(done):
            break
        with dtype_ctx:
            new = policy.speech_embedding(toks.to(dev))[:, None]  # (B, 1, D)
            mask = torch.cat([mask, torch.ones(b, 1, dtype=torch.bool, device=dev)], 1)
            if cfg.use_cache:
                pos = (mask.long().sum(-1) - 1)[:, None]
                hidden, past = policy.decode(new, mask, past, position_ids=pos)
            else:
                seq_emb = torch.cat([seq_emb, new.to(seq_emb.dtype)], 1)
                hidden = policy.decode(seq_emb, mask)
            logits = policy.llm_decoder(hidden[:, -1]).float()

    lens = torch.tensor([len(h) for h in history], dtype=torch.long)
    t_max = int(lens.max()) if b else 0
    ids = torch.zeros(b, t_max, dtype=torch.long)
    for i, h in enumerate(history):
        ids[i, :len(h)] = torch.tensor(h, dtype=torch.long)
    noise = None
    if return_noise:
        noise = torch.stack(noises, 1)[:, :t_max + 1] if noises else torch.zeros(b, 1, policy.n_out)
        if noise.shape[1] < t_max + 1:
            noise = torch.cat([noise, noise.new_zeros(b, t_max + 1 - noise.shape[1], noise.shape[2])], 1)
        # rows after a row's end: zeros (a finished row's later noise rows were never used)
        after = torch.arange(noise.shape[1])[None] > lens[:, None]
        after |= (torch.arange(noise.shape[1])[None] == lens[:, None]) & ~torch.tensor(ended)[:, None]
        noise = noise.masked_fill(after[..., None], 0.0)
    if was_training:
        policy.train()
    return Generation(ids, lens, torch.tensor(ended), noise, prompts)


def replay_logits(policy: TTSPolicy, gen: Generation, bf16: bool = False) -> torch.Tensor:
    """Teacher-forced logits (B, T+1, V_out) over ``gen``'s prompts and sampled ids, with gradient.

    Row ``t < lens`` scores ``gen.ids[:, t]``, row ``lens`` scores end-of-speech. Mask with
    :func:`replay_mask`. This is the forward DiffRO differentiates (``softmax((logits + gen.noise)
    / tau)`` relaxes the very sample drawn).
    """
    dev = policy.llm_embedding.weight.device
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
        return policy(gen.prompts, gen.ids.to(dev), gen.lens.to(dev))


def replay_mask(gen: Generation) -> torch.Tensor:
    """(B, T+1) True where a row of :func:`replay_logits` scored a drawn id (speech ids, and the
    end-of-speech row where the sample ended with it)."""
    pos = torch.arange(gen.ids.shape[1] + 1)[None]
    return (pos < gen.lens[:, None]) | ((pos == gen.lens[:, None]) & gen.ended[:, None])
