"""Sampling speech tokens from the policy, with a KV cache, in batches.

Per step and row the sampler follows CosyVoice2's ``ras_sampling``, in one of two upstream
versions (``sampling.ras``):

``current`` (FunAudioLLM/CosyVoice ace7c47, the sampler since Feb 2026; the default):

1. scores ``z / temperature`` over all ``S + 3`` ids (speech, end-of-speech, the two special rows);
2. below the minimum length end-of-speech is masked (score ``-inf``) *before* the filter; rrpo
   masks the two special rows there too (upstream does not, and would let a draw of one end a
   sample below the minimum, even empty, which the objectives cannot score);
3. nucleus filter on the softmax of those scores: keep the most likely ids while the probability
   mass before them is < ``top_p`` and fewer than ``top_k`` are kept; draw from the kept set;
4. repetition-aware sampling: if the drawn id occurs at least ``ras_window * ras_tau`` times among
   the row's last ``ras_window`` ids, ban it and draw again from the whole remaining distribution;
5. stop when the drawn id is end-of-speech or either special row (``S``, ``S+1``, ``S+2``), or after
   ``max_len`` ids.

``release`` (77d8cf13, the release-era sampler):

1. scores over the speech ids and end-of-speech only (rrpo never draws the two special rows;
   upstream skips a step that draws one);
2. nucleus filter and draw as above, end-of-speech included;
3. repetition-aware sampling: on a repeat draw again from the whole distribution, the repeated id
   included;
4. below the minimum length a draw of end-of-speech is rejected and the whole step is drawn
   again (up to 100 times, as upstream);
5. stop at end-of-speech or after ``max_len`` ids.

Lengths: ``min_len = floor(min_ratio * n_text)``, ``max_len = ceil(max_ratio * n_text)``, with
``n_text`` the tokens of the text to speak (not the instruction).

**Replaying a sample (for DiffRO).** Every draw is Gumbel-max: ``id = argmax_{k in kept} (z_k/T +
g_k)`` with ``g`` standard Gumbel noise from the row's own generator. :class:`Generation` returns
``noise[b, t] = T * g`` on the set the draw used and ``-inf`` outside it, so for the logits ``z``
of a later teacher-forced :meth:`~rrpo.policy.model.TTSPolicy.forward` on the same sequence::

    argmax_k (z[b, t, k] + noise[b, t, k]) == ids[b, t]   for t < lens[b]
    argmax_k (z[b, lens[b], k] + noise[b, lens[b], k]) == stop[b]   where ended[b]  (eos, or S+1/S+2)

exactly, whenever the teacher-forced logits equal the sampling-time logits (same weights and
dtype; the test checks it in fp32 — under bf16 autocast the two passes may differ in the last bits
and, rarely, flip a near-tie). ``softmax((z + noise) / tau)`` is then the Gumbel-softmax relaxation
of the very sample drawn. Rows ``t > lens[b]`` (and ``t = lens[b]`` where not ended) hold zeros
and must be masked.

**Classifier-free guidance** (``sampling.guidance`` = w, CosyVoice2-style instruct TTS with the
emotion instruction as the condition): every step scores each row twice, with its prompt and with
the same prompt without the instruction (:meth:`~rrpo.policy.model.Prompts.unconditional`), both
fed the same drawn ids, and samples from ``z = z_uncond + w (z_cond - z_uncond)`` (one batch of
2B rows). w = 1 skips the second pass, so it is exactly the plain sampler. :func:`guided_logits`
gives the same combination teacher-forced, so the replay contract above holds for guided samples.

Each row draws two Gumbel vectors per step (per trial, for the release sampler's eos re-draws) from its own ``torch.Generator`` seeded by
``seeds[b]``, whatever happens in other rows, so a batch and one-by-one generation with the same
row seeds give the same ids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rrpo.errors import RrpoError
from rrpo.policy.model import Prompts, TTSPolicy
from rrpo.policy.settings import SamplingConfig


@dataclass
class Generation:
    """What :func:`generate` returns. ``ids`` (B, T) speech ids padded with 0; ``lens`` (B,);
    ``ended`` (B,) True where end-of-speech was drawn (else ``max_len`` was reached); ``noise``
    (B, T+1, V_out) float32 as described in the module docstring (None if not requested);
    ``prompts`` the encoded prompts, for the teacher-forced replay; ``stop`` (B,) the id that ended
    each row (eos, or with the current sampler possibly S+1/S+2; -1 where ``max_len`` was reached);
    ``guidance`` the classifier-free guidance scale the draws used (:func:`guided_logits`)."""

    ids: torch.Tensor
    lens: torch.Tensor
    ended: torch.Tensor
    noise: torch.Tensor | None
    prompts: Prompts
    stop: torch.Tensor | None = None
    guidance: float = 1.0

    def to(self, device) -> Generation:
        """The same generation with every tensor (and the prompts) on ``device``."""
        mv = lambda x: None if x is None else x.to(device)  # noqa: E731
        return Generation(
            mv(self.ids),
            mv(self.lens),
            mv(self.ended),
            mv(self.noise),
            self.prompts.to(device),
            mv(self.stop),
            self.guidance,
        )

    def tokens(self, b: int) -> torch.Tensor:
        return self.ids[b, : int(self.lens[b])]


def gumbel(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) float32 standard Gumbel noise ``-log(-log u)``, u uniform in (0, 1)."""
    u = torch.rand(n, generator=generator).clamp_(1e-20, 1.0 - 2**-24)
    return -torch.log(-torch.log(u))


def nucleus_mask(scores: torch.Tensor, top_p: float, top_k: int) -> torch.Tensor:
    """Bool mask of the ids CosyVoice2's nucleus filter keeps from ``scores`` (V,) (-inf = excluded):
    in order of probability, id i is kept while the mass before it is < ``top_p`` and fewer than
    ``top_k`` are kept. Example: probabilities (0.5, 0.3, 0.2), top_p 0.8 -> keeps the first two
    (mass before them 0 and 0.5; before the third 0.8, not < 0.8). Equal probabilities are
    ordered by id (upstream sorts stably)."""
    probs = torch.softmax(scores.float(), -1)
    vals, order = probs.sort(descending=True, stable=True)  # ties: lower id first, as upstream
    vals, order = vals[:top_k], order[:top_k]
    before = vals.cumsum(-1) - vals
    keep_sorted = (before < top_p) & (vals > 0)
    keep_sorted[0] = True
    keep = torch.zeros(probs.shape[0], dtype=torch.bool)
    keep[order] = keep_sorted
    return keep


def _sample_row(
    z: torch.Tensor,
    history: list[int],
    step: int,
    min_len: int,
    eos: int,
    n_speech: int,
    cfg: SamplingConfig,
    gen: torch.Generator,
) -> tuple[int, torch.Tensor]:
    """One draw for one row from logits ``z`` (V_out,) float32; returns (id, noise row (V_out,)).
    An id >= ``eos`` ends the row (only eos in ``release`` mode)."""
    t = cfg.temperature
    neg = torch.tensor(-math.inf)
    current = getattr(cfg, "ras", "current") == "current"
    n = z.shape[0] if current else n_speech + 1  # candidate ids
    zs = z[:n] / t
    base = torch.ones(n, dtype=torch.bool)
    if step < min_len:
        base[eos:] = False  # every stop id (upstream's current sampler masks eos only; see the docstring)
    scores = torch.where(base, zs, neg)
    window = history[-cfg.ras_window :] if cfg.ras_window else []

    def repeated(tok: int) -> bool:
        return (
            bool(cfg.ras_window)
            and tok < n_speech
            and sum(1 for h in window if h == tok) >= cfg.ras_window * cfg.ras_tau
        )

    if current:
        kept = nucleus_mask(scores, cfg.top_p, cfg.top_k) & base
        if not kept.any():
            kept[int(scores.argmax())] = True
        g1, g2 = gumbel(n, gen), gumbel(n, gen)
        used, g = kept, g1
        tok = int(torch.where(kept, scores + g1, neg).argmax())
        if repeated(tok):
            rest = base.clone()
            rest[tok] = False
            if rest.any():
                used, g = rest, g2
                tok = int(torch.where(rest, scores + g2, neg).argmax())
    else:
        kept = nucleus_mask(zs, cfg.top_p, cfg.top_k)
        for _ in range(100):
            g1, g2 = gumbel(n, gen), gumbel(n, gen)
            used, g = kept, g1
            tok = int(torch.where(kept, zs + g1, neg).argmax())
            if repeated(tok):
                used, g = torch.ones(n, dtype=torch.bool), g2
                tok = int((zs + g2).argmax())
            if tok != eos or step >= min_len:
                break
        else:  # upstream raises after 100 trials; take the best non-eos id instead
            used, g = base, g1
            tok = int(torch.where(base, zs + g1, neg).argmax())
    noise = torch.full_like(z, -math.inf)
    noise[:n] = torch.where(used, t * g, neg)
    return tok, noise


def combine_guidance(cond: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + w (cond - uncond)``; w = 1 returns ``cond`` itself (no
    rounding), w = 0 ``uncond``. Example: cond (2, 0), uncond (1, 1), w 3 -> (4, -2)."""
    if w == 1:
        return cond
    return uncond + w * (cond - uncond)


def check_guidance(policy: TTSPolicy, w: float) -> None:
    """A guidance scale other than 1 needs a policy that learnt the prompt without an instruction."""
    if w != 1 and not policy.knows_unconditional:
        raise RrpoError(
            f"sampling.guidance={w:g} needs a policy trained with emotion dropout (rrpo policy sft "
            "data.drop_emotion > 0); this one never saw a prompt without an instruction"
        )


def guided_logits(
    policy: TTSPolicy, prompts: Prompts, speech: torch.Tensor, speech_lens: torch.Tensor, w: float = 1.0
) -> torch.Tensor:
    """Teacher-forced logits (B, T+1, V_out) as :meth:`TTSPolicy.forward`, guided with scale ``w``:
    the conditional and unconditional rows run as one batch of 2B and combine as
    :func:`combine_guidance` (w = 1: one plain forward)."""
    if w == 1:
        return policy(prompts, speech, speech_lens)
    b = len(prompts)
    both = Prompts.cat([prompts, prompts.unconditional()])
    logits = policy(both, torch.cat([speech, speech]), torch.cat([speech_lens, speech_lens]))
    return combine_guidance(logits[:b], logits[b:], w)


def _bf16(device: torch.device, enabled: bool):
    """bf16 autocast on ``device``, or no context at all when off."""
    import contextlib

    from rrpo.precision import use_bf16

    if not use_bf16(device, enabled):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.no_grad()
def generate(
    policy: TTSPolicy,
    prompts: Prompts,
    cfg: SamplingConfig | None = None,
    seeds: int | Sequence[int] = 0,
    *,
    return_noise: bool = True,
    bf16: bool = False,
    max_len: int | None = None,
    min_len: int | None = None,
) -> Generation:
    """Sample speech ids for a batch of prompts (see the module docstring).

    ``seeds``: one per row, or an int ``s`` meaning rows ``s, s+1, ...``. ``max_len``/``min_len``
    override the text-length rule for every row (benchmarks, tests). ``bf16`` runs the decoder
    under bf16 autocast (sampling itself is in fp32).
    """
    cfg = cfg or SamplingConfig()
    w = float(getattr(cfg, "guidance", 1.0))
    check_guidance(policy, w)
    was_training = policy.training
    policy.eval()
    b = len(prompts)
    rows = Prompts.cat([prompts, prompts.unconditional()]) if w != 1 else prompts  # guided: B cond + B uncond
    if isinstance(seeds, int):
        seeds = [seeds + i for i in range(b)]
    if len(seeds) != b:
        raise ValueError(f"{len(seeds)} seeds for {b} prompts")
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    n = prompts.content_lens.float()
    mins = (torch.full((b,), min_len) if min_len is not None else torch.floor(n * cfg.min_ratio)).long().tolist()
    maxs = (
        (torch.full((b,), max_len) if max_len is not None else torch.ceil(n * cfg.max_ratio))
        .long()
        .clamp(min=1)
        .tolist()
    )
    eos, s_vocab = policy.eos_id, policy.speech_vocab_size
    dev = policy.llm_embedding.weight.device
    dtype_ctx = _bf16(dev, bf16)

    with dtype_ctx:
        emb, mask = policy.prompt_embeddings(rows)  # (B or 2B, P, D), (B or 2B, P)
        past = None
        if cfg.use_cache:
            from transformers import DynamicCache

            past = DynamicCache()
            hidden, past = policy.decode(emb, mask, past)
        else:
            hidden = policy.decode(emb, mask)
        logits = policy.llm_decoder(hidden[:, -1]).float()  # (B or 2B, V_out)
        logits = combine_guidance(logits[:b], logits[b:], w)  # (B, V_out)

    history: list[list[int]] = [[] for _ in range(b)]
    done = [False] * b
    ended = [False] * b
    stops = [-1] * b
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
            if tok >= eos:  # eos, or (current sampler) either special row
                done[i] = ended[i] = True
                stops[i] = tok
            else:
                history[i].append(tok)
                toks[i] = tok
        noises.append(noise_t)
        step += 1
        if all(done):
            break
        with dtype_ctx:
            fed = toks if w == 1 else torch.cat([toks, toks])  # both halves read the drawn id
            new = policy.speech_embedding(fed.to(dev))[:, None]  # (B or 2B, 1, D)
            mask = torch.cat([mask, torch.ones(len(fed), 1, dtype=torch.bool, device=dev)], 1)
            if cfg.use_cache:
                pos = (mask.long().sum(-1) - 1)[:, None]
                hidden, past = policy.decode(new, mask, past, position_ids=pos)
            else:
                seq_emb = torch.cat([seq_emb, new.to(seq_emb.dtype)], 1)
                hidden = policy.decode(seq_emb, mask)
            logits = policy.llm_decoder(hidden[:, -1]).float()
            logits = combine_guidance(logits[:b], logits[b:], w)

    lens = torch.tensor([len(h) for h in history], dtype=torch.long)
    t_max = int(lens.max()) if b else 0
    ids = torch.zeros(b, t_max, dtype=torch.long)
    for i, h in enumerate(history):
        ids[i, : len(h)] = torch.tensor(h, dtype=torch.long)
    noise = None
    if return_noise:
        noise = torch.stack(noises, 1)[:, : t_max + 1] if noises else torch.zeros(b, 1, policy.n_out)
        if noise.shape[1] < t_max + 1:
            noise = torch.cat([noise, noise.new_zeros(b, t_max + 1 - noise.shape[1], noise.shape[2])], 1)
        # rows after a row's end: zeros (a finished row's later noise rows were never used)
        after = torch.arange(noise.shape[1])[None] > lens[:, None]
        after |= (torch.arange(noise.shape[1])[None] == lens[:, None]) & ~torch.tensor(ended)[:, None]
        noise = noise.masked_fill(after[..., None], 0.0)
    if was_training:
        policy.train()
    return Generation(ids, lens, torch.tensor(ended), noise, prompts, torch.tensor(stops, dtype=torch.long), w)


def replay_logits(policy: TTSPolicy, gen: Generation, bf16: bool = False) -> torch.Tensor:
    """Teacher-forced logits (B, T+1, V_out) over ``gen``'s prompts and sampled ids, with gradient.

    Row ``t < lens`` scores ``gen.ids[:, t]``, row ``lens`` scores end-of-speech. Mask with
    :func:`replay_mask`. This is the forward DiffRO differentiates (``softmax((logits + gen.noise)
    / tau)`` relaxes the very sample drawn); a guided generation is replayed guided, with its scale.
    """
    dev = policy.llm_embedding.weight.device
    with _bf16(dev, bf16):
        return guided_logits(policy, gen.prompts, gen.ids.to(dev), gen.lens.to(dev), gen.guidance)


def replay_mask(gen: Generation) -> torch.Tensor:
    """(B, T+1) True where a row of :func:`replay_logits` scored a drawn id (speech ids, and the
    end-of-speech row where the sample ended with it)."""
    pos = torch.arange(gen.ids.shape[1] + 1)[None]
    return (pos < gen.lens[:, None]) | ((pos == gen.lens[:, None]) & gen.ended[:, None])
