"""Stress tests of a reward model.

- :func:`h_attack_accuracy`: accuracy when the encoder output h' is perturbed against the true label
  by FGM (one step, δ = r·g/‖g‖₂ per utterance) or PGD (``steps`` L2 steps of size 2.5·r/steps,
  projected onto the r-ball per utterance). The radius r is ε·‖h'_b‖ over the utterance's valid
  positions (``eps_mode: relative``, the default, as in FGM training) or ε itself (``absolute``).
- :func:`token_attack`: what a policy optimised against the reward would do. For each utterance the
  model classifies correctly, the target is a wrong emotion (the most probable wrong one); the
  attack ascends log p(target) through Gumbel-softmax relaxed token choices: logits A (T, V) start
  at ``init_logit`` on the original tokens, Adam on A for ``steps`` steps with fresh Gumbel noise
  at temperature τ. Each position's candidate is its best alternative token in A, ranked by its
  gain over the original token. Hard substitutions are then made greedily, one per round: the
  ``candidates`` best-ranked unused positions are tried and the one raising log p(target) most is
  kept. The attack succeeds at a budget (a fraction of the utterance's tokens, at least one) if
  the hard prediction is the target after that many changes (an utterance stops once it is).
  Its success is also given per third of the attacked utterances ranked by the model's clean
  probability of the true class (:func:`confidence_thirds`): at a held-out accuracy near 50 %, many
  correct predictions are barely correct, and those are the ones a few tokens flip.
All attacks work on the logits restricted to ``columns`` (the evaluated class subset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rrpo.config import check, option
from rrpo.reward.regularisers import best_substitution, fgm_delta, perturbation_radius, project_l2


@dataclass
class AttackConfig:
    eps: list[float] = option(
        [0.05, 0.1, 0.2], "FGM/PGD radii: relative to ‖h'‖ per utterance (eps_mode relative) or absolute L2 norms"
    )
    eps_mode: str = option("relative", "relative: radius ε·‖h'_b‖ (as reg.fgm.eps_mode); absolute: radius ε")
    pgd_steps: int = option(10, "PGD steps")
    budgets: list[float] = option([0.02, 0.05, 0.1, 0.2], "token-attack budgets: fraction of tokens changed")
    token_steps: int = option(30, "token attack: Adam steps on the relaxed token logits")
    token_lr: float = option(0.5, "token attack: Adam learning rate")
    token_tau: float = option(1.0, "token attack: Gumbel-softmax temperature")
    init_logit: float = option(3.0, "token attack: initial logit of the original token (others 0)")
    candidates: int = option(8, "token attack: candidate substitutions tried per greedy round")
    max_utterances: int = option(200, "attack at most this many utterances (0 = all), evenly spread over the set")
    batch_size: int = option(16, "utterances per attack batch")
    seed: int = option(0, "seed of the Gumbel noise")

    def __post_init__(self):
        check(all(e >= 0 for e in self.eps), "attack.eps", "must be >= 0")
        check(self.eps_mode in ("relative", "absolute"), "attack.eps_mode", "must be 'relative' or 'absolute'")
        check(all(0 < b <= 1 for b in self.budgets), "attack.budgets", "must be fractions in (0, 1]")
        check(self.pgd_steps >= 1 and self.token_steps >= 0, "attack.pgd_steps", "steps must be >= 1")
        check(self.batch_size >= 1 and self.max_utterances >= 0, "attack.batch_size", "must be >= 1")


def _restricted(logits: torch.Tensor, columns: Sequence[int] | None) -> torch.Tensor:
    return logits if columns is None else logits[:, list(columns)]


def _batches(items, cfg: AttackConfig):
    from rrpo.reward.data import collate

    if cfg.max_utterances and len(items) > cfg.max_utterances:  # evenly spread over the (sorted) set
        step = len(items) / cfg.max_utterances
        items = [items[int(k * step)] for k in range(cfg.max_utterances)]
    for a in range(0, len(items), cfg.batch_size):
        yield collate(items[a : a + cfg.batch_size], 0, random_crop=False)


def _labels(batch, columns):
    y = batch["labels"]
    if columns is not None:
        pos = {c: i for i, c in enumerate(columns)}
        y = torch.tensor([pos[int(l)] for l in y])
    return y


def h_attack_accuracy(model, items, cfg: AttackConfig, columns: Sequence[int] | None = None) -> dict:
    """{"fgm": {eps: acc}, "pgd": {eps: acc}, "clean": acc, "n": n} on the (restricted) logits, over the
    attacked subset (``max_utterances``); eps keys as strings."""
    model.eval()
    correct = {k: {e: 0 for e in cfg.eps} for k in ("fgm", "pgd")}
    n = clean = 0
    for b in _batches(items, cfg):
        x, y = b["tokens"], _labels(b, columns)
        lens = model.input_mask(x, b["lens"])  # (B, T) mask: what the model reads
        with torch.no_grad():
            h = model.encode(model.embed(x), lens).float()  # (B, T, d)

        def loss_grad(hh, lens=lens, y=y):
            hh = hh.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = torch.nn.functional.cross_entropy(
                    _restricted(model.head(hh, lens), columns).float(), y, reduction="sum"
                )
                (g,) = torch.autograd.grad(loss, hh)
            return g

        g0 = loss_grad(h)
        with torch.no_grad():
            clean += int((_restricted(model.head(h, lens), columns).argmax(-1) == y).sum())
        for e_key in cfg.eps:
            e = perturbation_radius(e_key, h, lens, cfg.eps_mode) if cfg.eps_mode == "relative" else e_key
            with torch.no_grad():
                pred = _restricted(model.head(h + fgm_delta(g0, e), lens), columns).argmax(-1)
            correct["fgm"][e_key] += int((pred == y).sum())
            delta = torch.zeros_like(h)
            step = 2.5 * e / cfg.pgd_steps
            for _ in range(cfg.pgd_steps):
                g = loss_grad(h + delta)
                delta = project_l2(delta + fgm_delta(g, step), e)
            with torch.no_grad():
                pred = _restricted(model.head(h + delta, lens), columns).argmax(-1)
            correct["pgd"][e_key] += int((pred == y).sum())
        n += len(y)
    return {k: {str(e): v / max(n, 1) for e, v in d.items()} for k, d in correct.items()} | {
        "n": n,
        "clean": clean / max(n, 1),
    }


def confidence_thirds(conf: torch.Tensor, hits: dict) -> dict:
    """Success rates by confidence: ``conf`` (N,) the clean probability of the true class of N attacked
    utterances, ``hits`` {budget: (N,) bool} whether the attack succeeded on each. The utterances are
    ranked by ``conf`` (ascending, ties in input order) and cut into thirds of N // 3, N // 3 and the
    rest; returns {"low" | "mid" | "high": {budget: rate or None (empty third)}, "n": [3 sizes]}."""
    n = int(conf.numel())
    order = torch.sort(conf.reshape(-1).double(), stable=True).indices
    cuts = [0, n // 3, 2 * (n // 3), n]
    out = {"n": [cuts[i + 1] - cuts[i] for i in range(3)]}
    for i, name in enumerate(("low", "mid", "high")):
        idx = order[cuts[i] : cuts[i + 1]]
        out[name] = {
            str(b): (float(torch.as_tensor(h).reshape(-1)[idx].float().mean()) if len(idx) else None)
            for b, h in hits.items()
        }
    return out


def token_attack(model, items, cfg: AttackConfig, columns: Sequence[int] | None = None) -> dict:
    """Success rate per budget of the Gumbel-relaxed token-substitution attack (see module doc).

    Returns {"success": {budget: rate}, "flipped": {budget: rate}, "by_confidence": ..., "attacked":
    n_correct, "tried": n} where rates are over the utterances first classified correctly; "flipped"
    counts any wrong prediction, "success" the target one; "by_confidence" is :func:`confidence_thirds`
    of the success."""
    model.eval()
    gen = torch.Generator().manual_seed(cfg.seed)
    V = model.vocab_size
    succ = {b: 0 for b in cfg.budgets}
    flip = {b: 0 for b in cfg.budgets}
    attacked = tried = 0
    conf_all, won_all = [], {b: [] for b in cfg.budgets}  # per attacked utterance, for confidence_thirds
    for b in _batches(items, cfg):
        x, lens, y = b["tokens"], b["lens"], _labels(b, columns)
        with torch.no_grad():
            logits = _restricted(model(x, lens), columns).float()
        ok = logits.argmax(-1) == y
        tried += len(y)
        if not ok.any():
            continue
        x, lens, y, logits = x[ok], lens[ok], y[ok], logits[ok]
        attacked += len(y)
        conf_all.append(torch.softmax(logits, -1).gather(1, y[:, None]).squeeze(1))
        target = logits.scatter(1, y[:, None], float("-inf")).argmax(-1)  # most probable wrong class
        B, T = x.shape
        valid = torch.arange(T)[None, :] < lens[:, None]  # (B, T)
        onehot = torch.nn.functional.one_hot(x, V).float()  # (B, T, V)
        A = (cfg.init_logit * onehot).requires_grad_(True)
        opt = torch.optim.Adam([A], lr=cfg.token_lr)
        for _ in range(cfg.token_steps):
            u = torch.rand(A.shape, generator=gen).clamp(1e-9, 1 - 1e-9)
            gumbel = -torch.log(-torch.log(u))
            with torch.enable_grad():
                p = torch.softmax((A + gumbel) / cfg.token_tau, -1)
                p = torch.where(valid[..., None], p, onehot)  # padding stays as it was
                lp = torch.log_softmax(_restricted(model(p, lens), columns).float(), -1)
                loss = -lp.gather(1, target[:, None]).sum()
                opt.zero_grad()
                loss.backward()
            opt.step()
        with torch.no_grad():
            A_ = A.detach()
            a_orig = A_.gather(2, x[..., None]).squeeze(-1)  # (B, T)
            alt = A_.scatter(2, x[..., None], float("-inf"))
            best, cand = alt.max(-1)  # (B, T) best alternative token per position
            gain = torch.where(valid, best - a_orig, torch.full_like(best, float("-inf")))
            kb = {bud: torch.clamp((bud * lens.float()).round().long(), min=1) for bud in cfg.budgets}
            rounds = int(max(int(k.max()) for k in kb.values()))
            x_adv = x.clone()
            used = ~valid  # positions already changed (or padding)
            hit = torch.zeros(B, dtype=torch.bool)
            won = {bud: torch.zeros(B, dtype=torch.bool) for bud in cfg.budgets}

            def target_logprob(ids, rows, lens=lens, target=target):  # log p(target) of each variant
                lp = torch.log_softmax(_restricted(model(ids, lens[rows]), columns).float(), -1)
                return lp.gather(1, target[rows, None]).squeeze(1)

            for r in range(rounds + 1):
                pred = _restricted(model(x_adv, lens), columns).argmax(-1)
                hit |= pred == target  # an utterance that reached the target stops changing
                for bud, k in kb.items():
                    done_now = k == r  # utterances whose budget is exactly r changes
                    succ[bud] += int((hit & done_now).sum())
                    won[bud] |= hit & done_now
                    flip[bud] += int(((pred != y) & done_now).sum())
                if r == rounds:
                    break
                # greedy round: try the best remaining (position, token) candidates, keep the best
                pick, _ = best_substitution(target_logprob, x_adv, cand, gain, used, cfg.candidates)
                g_ = gain.masked_fill(used, float("-inf"))
                act = ~hit & torch.isfinite(g_.max(1).values)
                rows = torch.arange(B)[act]
                x_adv[rows, pick[act]] = cand[rows, pick[act]]
                used[rows, pick[act]] = True
            for bud in cfg.budgets:
                won_all[bud].append(won[bud])
    by_conf = confidence_thirds(
        torch.cat(conf_all) if conf_all else torch.zeros(0),
        {bud: torch.cat(v) if v else torch.zeros(0, dtype=torch.bool) for bud, v in won_all.items()},
    )
    rate = lambda d: {str(k): v / attacked if attacked else None for k, v in d.items()}  # noqa: E731
    return {
        "success": rate(succ),
        "flipped": rate(flip),
        "by_confidence": by_conf,
        "attacked": attacked,
        "tried": tried,
    }
