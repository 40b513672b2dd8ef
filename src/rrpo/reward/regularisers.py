"""The hybrid regularisers of the reward-model fine-tuning loss (docs/method.md §3).

- :func:`smooth_labels`: y' = (1−ε)·y + ε/K.
- :func:`energy_adaptive_mixup` (EAM) on the low-level embedded features F. For each sample i (length
  l_i) a partner j is drawn at random from the batch (any label); a segment of length
  l ~ U{1, …, ⌊l_i/2⌋} of j is mixed into i at a random offset at a signal-to-noise ratio
  r ~ U[snr_min_db, snr_max_db]. Energies are the per-token energies of the audio behind the tokens
  (token shards): E_i is i's mean token energy, E_j the mean token energy of j's segment.

  Sign convention (``snr_convention``):

  * ``target_over_interferer`` (our default, the usual meaning of SNR): r = 10·log10(E_i / E'_j),
    i.e. E'_j = E_i · 10^(−r/10): at r = 10 dB the interferer is 10 times weaker than i.
  * ``interferer_over_target``: r = 10·log10(E'_j / E_i), E'_j = E_i · 10^(+r/10).

  j's audio would be scaled by the gain g = sqrt(E'_j / E_j). Embeddings are not audio, so the sum is
  modelled in embedding space as the amplitude-weighted average of the two frames' embeddings:
  for every mixed position t (partner position s), with amplitudes a_i = sqrt(e_i,t) and
  a_j = g·sqrt(e_j,s), F_i,t ← (1 − w_t)·F_i,t + w_t·F_j,s with w_t = a_j / (a_i + a_j)
  (the louder source dominates the mixed frame; norms stay bounded).

  Label weight: λ_i = (l / l_i) · E'_j / (E_i + E'_j); loss
  L_emo = mean_i [(1−λ_i)·CE(ŷ_i, y'_i) + λ_i·CE(ŷ_i, y'_j)]  (:func:`mixup_loss`).
- :func:`fgm_delta`: FGM on the encoder output h': δ = r_b · g / ‖g‖₂, g = ∇_{h'} L_emo, the norm
  taken per utterance over all its positions and channels; δ is a constant (detached).
  Total L_ser = L_emo + α·L_adv with L_adv = L_emo recomputed from h' + δ.

  The radius r_b is scale-aware by default (``eps_mode: relative``): r_b = ε·‖h'_b‖₂ over the
  utterance's valid positions, i.e. ε times the per-position RMS norm of h' times √T_b. At ε = 0.1
  every position may move by 10 % of its own norm on average, whatever the utterance's length and
  the model's width; h' is LayerNorm-ed, so a position's norm is about √d. ``absolute`` keeps a fixed
  L2 radius ε per utterance (which shrinks relative to h' as T grows).
- :func:`hotflip_substitute`: token-space adversarial training (``reg.tat``, our addition to the
  method: the policy's hacking acts through the tokens it picks, not through h'). With g_t = ∇_{F_t} L_emo
  at the embedded tokens (before EAM), substituting token v at position t raises the loss, to first
  order, by s_t,v = (E_v − E_{x_t})·g_t. Each position's candidate is its best v ≠ x_t; the
  k_b = max(1, round(frac·n_b)) positions of the largest gain among the n_b speech positions are
  substituted at once (one HotFlip step), and L_tok = label-smoothed CE of the true labels on the
  substituted tokens. Total L_ser = L_emo + α·L_adv + β·L_tok.
- Classes a corpus lacks (``avail``, (B, K) bool): their logits are left out of the softmax of that
  corpus' utterances (filled with −1e9 before log-softmax) and label smoothing spreads ε over the
  available classes only, so an absent class is never pushed down as a negative. For a mixed pair
  the classes available to either utterance count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from rrpo.config import check, option, section


@dataclass
class EAMConfig:
    enabled: bool = option(False, "energy-adaptive mixup on the embedded features")
    prob: float = option(1.0, "probability that a sample is mixed (our default: every sample)")
    snr_min_db: float = option(-5.0, "lowest signal-to-noise ratio r (dB)")
    snr_max_db: float = option(10.0, "highest signal-to-noise ratio r (dB)")
    snr_convention: Literal["target_over_interferer", "interferer_over_target"] = option(
        "target_over_interferer", "r = 10·log10(E_i/E'_j) (target over interferer) or its inverse"
    )
    max_segment_frac: float = option(0.5, "segment length l ~ U[1, frac·l_i] (the method: half the utterance)")

    def __post_init__(self):
        check(0 <= self.prob <= 1, "reg.eam.prob", "must be in [0, 1]")
        check(self.snr_min_db <= self.snr_max_db, "reg.eam.snr_min_db", "must be <= reg.eam.snr_max_db")
        check(0 < self.max_segment_frac <= 1, "reg.eam.max_segment_frac", "must be in (0, 1]")


@dataclass
class FGMConfig:
    enabled: bool = option(False, "adversarial training: FGM on the encoder output h'")
    eps: float = option(
        0.1, "ε_adv: perturbation radius, relative to ‖h'‖ per utterance (eps_mode relative) or an absolute L2 norm"
    )
    eps_mode: Literal["relative", "absolute"] = option(
        "relative", "relative: radius ε·‖h'_b‖ (scale-aware); absolute: radius ε per utterance"
    )
    alpha: float = option(0.5, "α: weight of L_adv in L_emo + α·L_adv")

    def __post_init__(self):
        check(self.eps >= 0, "reg.fgm.eps", "must be >= 0")
        check(self.eps_mode in ("relative", "absolute"), "reg.fgm.eps_mode", "must be 'relative' or 'absolute'")
        check(self.alpha >= 0, "reg.fgm.alpha", "must be >= 0")


@dataclass
class TATConfig:
    enabled: bool = option(False, "token-space adversarial training: token substitutions against the true labels")
    frac: float = option(0.05, "fraction of each utterance's speech positions substituted (at least one)")
    search: Literal["hotflip", "greedy"] = option(
        "hotflip",
        "hotflip: the positions of largest first-order gain change at once; greedy: one change per round, "
        "the best of `candidates` HotFlip proposals by the model's actual loss, kept only if it raises the loss",
    )
    candidates: int = option(8, "greedy search: substitutions tried per round (one forward pass each)")
    beta: float = option(1.0, "β: weight of L_tok in L_emo + α·L_adv + β·L_tok")
    chunk: int = option(4096, "candidate tokens scored per matrix product (bounds memory, not the result)")

    def __post_init__(self):
        check(0 < self.frac <= 1, "reg.tat.frac", "must be in (0, 1]")
        check(self.beta >= 0, "reg.tat.beta", "must be >= 0")
        check(self.chunk >= 1, "reg.tat.chunk", "must be >= 1")
        check(self.search in ("hotflip", "greedy"), "reg.tat.search", "must be 'hotflip' or 'greedy'")
        check(self.candidates >= 1, "reg.tat.candidates", "must be >= 1")


@dataclass
class RegConfig:
    label_smoothing: float = option(0.0, "ε of label smoothing (the robust model: 0.1; 0 = off)")
    eam: EAMConfig = section(EAMConfig, "energy-adaptive mixup")
    fgm: FGMConfig = section(FGMConfig, "FGM adversarial training on h'")
    tat: TATConfig = section(TATConfig, "token-space adversarial training (HotFlip substitutions)")

    def __post_init__(self):
        check(0 <= self.label_smoothing < 1, "reg.label_smoothing", "must be in [0, 1)")


# ---------------------------------------------------------------------------- label smoothing


def smooth_labels(y: torch.Tensor, num_classes: int, eps: float, avail: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) class ids -> (B, K) targets y' = (1−ε)·onehot(y) + ε/K; with ``avail`` (B, K) bool the ε is
    spread over the K_b available classes of each row only (ε/K_b there, 0 elsewhere)."""
    onehot = torch.nn.functional.one_hot(y.long(), num_classes).float()
    if avail is None:
        return (1.0 - eps) * onehot + eps / num_classes
    a = avail.float()
    return (1.0 - eps) * onehot + eps * a / a.sum(-1, keepdim=True).clamp_min(1.0)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, avail: torch.Tensor | None = None) -> torch.Tensor:
    """(B, K) logits, (B, K) target distributions -> (B,) CE = −Σ_k q_k·log softmax(logits)_k; with
    ``avail`` (B, K) bool the softmax runs over the available classes of each row only."""
    logits = logits.float()
    if avail is not None:
        logits = logits.masked_fill(~avail, -1e9)
    return -(target * torch.log_softmax(logits, -1)).sum(-1)


# ---------------------------------------------------------------------------- EAM


def interferer_energy(e_target: torch.Tensor, snr_db: torch.Tensor, convention: str) -> torch.Tensor:
    """E'_j: the energy the partner's segment is scaled to, at ratio r (dB) to E_i (see module doc)."""
    if convention == "target_over_interferer":
        return e_target * torch.pow(10.0, -snr_db / 10.0)
    if convention == "interferer_over_target":
        return e_target * torch.pow(10.0, snr_db / 10.0)
    raise ValueError(f"unknown SNR convention {convention!r}")


def mixup_weight(
    seg_len: torch.Tensor, length: torch.Tensor, e_target: torch.Tensor, e_interf: torch.Tensor
) -> torch.Tensor:
    """λ = (l / l_i) · E'_j / (E_i + E'_j), elementwise."""
    return seg_len.float() / length.float() * e_interf / (e_target + e_interf)


@dataclass
class MixupDraw:
    """What :func:`energy_adaptive_mixup` drew, per sample (B,): partner j, λ and the draws behind it."""

    partner: torch.Tensor
    lam: torch.Tensor
    seg_len: torch.Tensor
    offset: torch.Tensor
    partner_start: torch.Tensor
    snr_db: torch.Tensor
    gain: torch.Tensor


def mix_segment(
    f_i: torch.Tensor, f_j: torch.Tensor, e_i: torch.Tensor, e_j: torch.Tensor, gain: float | torch.Tensor
) -> torch.Tensor:
    """Mix frames (l, d) of j into (l, d) of i: amplitudes a_i = √e_i, a_j = g·√e_j per frame (l,);
    w = a_j / (a_i + a_j); result (1−w)·f_i + w·f_j."""
    a_i = e_i.clamp_min(0).sqrt()
    a_j = gain * e_j.clamp_min(0).sqrt()
    w = (a_j / (a_i + a_j).clamp_min(1e-12))[:, None].to(f_i.dtype)  # (l, 1)
    return (1 - w) * f_i + w * f_j


def energy_adaptive_mixup(
    F: torch.Tensor, lens: torch.Tensor, energy: torch.Tensor, cfg: EAMConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, MixupDraw]:
    """Mix a partner segment into every sample of F (B, T, d); ``energy`` (B, T) per-token energies.

    Returns the mixed features (B, T, d) (a new tensor; gradients flow to F) and the draws. Samples
    not mixed (probability 1 − prob, or a batch of one) have λ = 0 and partner = themselves.
    """
    B = F.shape[0]
    g = generator
    dev = F.device

    def rand(*shape):
        return torch.rand(*shape, generator=g, device="cpu").to(dev)

    lens_c = lens.cpu()
    partner = torch.arange(B)
    if B > 1:
        partner = (partner + torch.randint(1, B, (B,), generator=g)) % B  # anyone but i
    mixed = rand(B) < cfg.prob if B > 1 else torch.zeros(B, dtype=torch.bool)
    snr = cfg.snr_min_db + (cfg.snr_max_db - cfg.snr_min_db) * rand(B).cpu()
    seg_len = torch.zeros(B, dtype=torch.long)
    offset = torch.zeros(B, dtype=torch.long)
    start = torch.zeros(B, dtype=torch.long)
    lam = torch.zeros(B)
    gain = torch.zeros(B)
    rows = []
    for i in range(B):
        j = int(partner[i])
        li, lj = int(lens_c[i]), int(lens_c[j])
        if not mixed[i] or li < 1 or lj < 1:
            rows.append(F[i])
            partner[i] = i
            continue
        lmax = max(1, min(int(math.floor(li * cfg.max_segment_frac)), lj))
        l = int(torch.randint(1, lmax + 1, (1,), generator=g))
        o = int(torch.randint(0, li - l + 1, (1,), generator=g))
        s = int(torch.randint(0, lj - l + 1, (1,), generator=g))
        e_i_all = energy[i, :li].float().cpu()
        e_j_seg = energy[j, s : s + l].float().cpu()
        E_i = e_i_all.mean().clamp_min(1e-10)
        E_j = e_j_seg.mean().clamp_min(1e-10)
        E_jp = interferer_energy(E_i, snr[i], cfg.snr_convention)
        gn = torch.sqrt(E_jp / E_j)
        seg = mix_segment(
            F[i, o : o + l], F[j, s : s + l], energy[i, o : o + l].float(), energy[j, s : s + l].float(), gn.to(dev)
        )
        rows.append(torch.cat([F[i, :o], seg, F[i, o + l :]], 0))
        seg_len[i], offset[i], start[i], gain[i] = l, o, s, gn
        lam[i] = mixup_weight(torch.tensor(l), torch.tensor(li), E_i, E_jp)
    out = torch.stack(rows, 0)
    return out, MixupDraw(partner.to(dev), lam.to(dev), seg_len, offset, start, snr, gain)


def mixup_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    partner: torch.Tensor | None,
    lam: torch.Tensor | None,
    eps: float,
    avail: torch.Tensor | None = None,
) -> torch.Tensor:
    """mean_i [(1−λ_i)·CE(ŷ_i, y'_i) + λ_i·CE(ŷ_i, y'_{partner_i})] with y' smoothed by ε.

    Without mixup (``partner``/``lam`` None) this is the label-smoothed cross-entropy. ``avail``
    (B, K) bool: the classes each utterance's corpus has (see module doc); a mixed sample uses the
    classes available to it or to its partner."""
    K = logits.shape[-1]
    if avail is not None and partner is not None and lam is not None:
        avail = avail | avail[partner]
    ce_i = soft_cross_entropy(logits, smooth_labels(y, K, eps, avail), avail)
    if partner is None or lam is None:
        return ce_i.mean()
    ce_j = soft_cross_entropy(logits, smooth_labels(y[partner], K, eps, avail), avail)
    lam = lam.float()
    return ((1 - lam) * ce_i + lam * ce_j).mean()


# ---------------------------------------------------------------------------- FGM


def perturbation_radius(
    eps: float, h: torch.Tensor | None = None, mask: torch.Tensor | None = None, mode: str = "relative"
) -> torch.Tensor | float:
    """The L2 radius per utterance: ``relative``: ε·‖h_b‖₂ over the valid positions (``mask`` (B, T)),
    (B,); ``absolute``: ε."""
    if mode == "absolute":
        return float(eps)
    if mode != "relative":
        raise ValueError(f"unknown eps mode {mode!r}")
    hh = h.detach().float()
    if mask is not None:
        hh = hh * mask.to(hh.dtype)[..., None]
    return eps * hh.flatten(1).norm(dim=1)


def _per_row(r: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    return r[:, None, None].to(like.device) if isinstance(r, torch.Tensor) else r


def fgm_delta(grad: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
    """δ = r · g / ‖g‖₂ per utterance: ``grad`` (B, T, d) -> (B, T, d), detached, each ‖δ_b‖ = r_b
    (``eps``: one radius, or (B,) radii from :func:`perturbation_radius`)."""
    g = grad.detach().float()
    norm = g.flatten(1).norm(dim=1).clamp_min(1e-12)  # (B,)
    return _per_row(eps, g) * g / norm[:, None, None]


def project_l2(delta: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
    """Project each utterance's perturbation (B, T, d) onto the L2 ball of radius ε (a float or (B,))."""
    norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    r = eps if isinstance(eps, torch.Tensor) else torch.full_like(norm, float(eps))
    return delta * torch.clamp(r.to(norm.device) / norm, max=1.0)[:, None, None]


# ---------------------------------------------------------------------------- token-space adversarial


@torch.no_grad()
def hotflip_candidates(
    x: torch.Tensor, grad: torch.Tensor, table: torch.Tensor, mask: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """HotFlip proposals: ids ``x`` (B, T), ``grad`` = ∇_F L (B, T, d) at F = E[x], ``table`` E (V, d),
    ``mask`` (B, T) bool positions that may change. Returns (best_tok (B, T), gain (B, T)): per position
    the token v ≠ x_t of largest first-order gain (E_v − E_{x_t})·g_t, and that gain (−inf off the mask)."""
    B, T = x.shape
    g = grad.detach().float()
    E = table.detach().float()
    V = E.shape[0]
    base = (E[x] * g).sum(-1)  # (B, T): E_{x_t}·g_t
    best = torch.full((B, T), float("-inf"))
    best_tok = torch.zeros((B, T), dtype=torch.long)
    for a in range(0, V, chunk):
        s = torch.matmul(g, E[a : a + chunk].T)  # (B, T, C)
        own = (x >= a) & (x < a + chunk)  # the original token is not a candidate
        if own.any():
            s[own, (x[own] - a)] = float("-inf")
        v, i = s.max(-1)
        better = v > best
        best = torch.where(better, v, best)
        best_tok = torch.where(better, i + a, best_tok)
    return best_tok, (best - base).masked_fill(~mask, float("-inf"))


def _budget(mask: torch.Tensor, frac: float) -> torch.Tensor:
    """(B,) changes per row: max(1, round(frac·n_b)) of its n_b masked positions, 0 when n_b = 0."""
    n = mask.sum(1)
    return torch.where(n > 0, torch.clamp((frac * n.float()).round().long(), min=1), torch.zeros_like(n))


def hotflip_substitute(
    x: torch.Tensor, grad: torch.Tensor, table: torch.Tensor, mask: torch.Tensor, frac: float, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """One HotFlip step (see module doc): arguments as :func:`hotflip_candidates`. Returns (x_adv (B, T),
    changed (B, T) bool). Each row changes max(1, round(frac·n_b)) of its n_b masked positions (none if
    n_b = 0): those whose best alternative token v ≠ x_t has the largest gain (E_v − E_{x_t})·g_t."""
    best_tok, gain = hotflip_candidates(x, grad, table, mask, chunk)
    k = _budget(mask, frac)
    rank = gain.argsort(1, descending=True).argsort(1)  # (B, T) 0 = largest gain
    changed = (rank < k[:, None]) & mask
    return torch.where(changed, best_tok, x), changed


def best_substitution(
    score_fn, x: torch.Tensor, best_tok: torch.Tensor, gain: torch.Tensor, used: torch.Tensor, candidates: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One greedy round: each row of ``x`` (B, T) tries, one variant each, its ``candidates`` positions of
    largest ``gain`` not yet ``used`` (B, T) bool, with ``best_tok`` put there; ``score_fn(ids (N, T),
    rows (N,)) -> (N,)`` scores the variants of row ``rows[i]``. Returns (pos (B,), score (B,)): the
    position of each row's highest-scoring variant and its score (−inf for a candidate of gain −inf,
    i.e. none left)."""
    B, T = x.shape
    m = min(candidates, T)
    g = gain.masked_fill(used, float("-inf"))
    top = g.topk(m, dim=1).indices  # (B, m)
    var = x[:, None, :].repeat(1, m, 1)  # (B, m, T)
    var.scatter_(2, top[..., None], best_tok.gather(1, top)[..., None])
    score = score_fn(var.flatten(0, 1), torch.arange(B, device=x.device).repeat_interleave(m)).view(B, m)
    score = score.masked_fill(~torch.isfinite(g.gather(1, top)), float("-inf"))
    best, j = score.max(1)
    return top.gather(1, j[:, None]).squeeze(1), best


def greedy_substitute(
    loss_fn,
    x: torch.Tensor,
    best_tok: torch.Tensor,
    gain: torch.Tensor,
    mask: torch.Tensor,
    frac: float,
    candidates: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy token substitution checked by the model. ``loss_fn(ids (N, T), rows (N,)) -> (N,)`` is the
    loss of each variant of row ``rows[i]`` (no gradient needed). Each round (:func:`best_substitution`),
    every row that has budget left (:func:`_budget`) tries, one forward pass each, the ``candidates``
    unchanged positions of largest ``gain`` with their ``best_tok``, and keeps the variant of highest
    loss if it is higher than the row's current loss. Returns (x_adv, changed)."""
    B = x.shape[0]
    k = _budget(mask, frac)
    x_adv = x.clone()
    changed = torch.zeros_like(mask)
    rows_all = torch.arange(B)
    cur = loss_fn(x_adv, rows_all)
    for r in range(int(k.max()) if B else 0):
        pos, best = best_substitution(loss_fn, x_adv, best_tok, gain, changed, candidates)
        take = (r < k) & (best > cur)
        rows = rows_all[take]
        x_adv[rows, pos[take]] = best_tok[rows, pos[take]]
        changed[rows, pos[take]] = True
        cur = torch.where(take, best, cur)
    return x_adv, changed
