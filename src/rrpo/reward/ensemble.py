"""Reward-model ensembles with pessimistic aggregation (Coste et al., 2023, "Reward model ensembles
help mitigate overoptimization").

M reward models of one class set score the same input; their rewards r (M, B) are aggregated per
utterance:

- ``mean``: (1/M)·Σ_m r_m;
- ``min``: min_m r_m (worst case; the gradient goes to the member that is lowest);
- ``mean_minus_std``: mean − k·std, the population standard deviation over members
  (√((1/M)·Σ_m (r_m − mean)²)) weighted by k = ``std_weight`` (uncertainty-weighted optimisation).

All three are differentiable in the members' inputs, so DiffRO can optimise through them. The std
uses √(max(var, 1e-12)), so members that agree exactly give a zero (not NaN) gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rrpo.errors import RrpoError

AGGREGATES = ("mean", "min", "mean_minus_std")


def aggregate_rewards(r: torch.Tensor, how: str = "mean", std_weight: float = 1.0) -> torch.Tensor:
    """(M, B) member rewards -> (B,) by ``how`` (see the module doc)."""
    if how == "mean":
        return r.mean(0)
    if how == "min":
        return r.min(0).values
    if how == "mean_minus_std":
        mean = r.mean(0)
        var = ((r - mean) ** 2).mean(0)
        return mean - std_weight * torch.sqrt(var.clamp_min(1e-12))
    raise RrpoError(f"unknown ensemble aggregate '{how}' (known: {', '.join(AGGREGATES)})")


class RewardEnsemble:
    """Several frozen reward models behaving as one: same ``classes``, ``vocab_size`` and ``reward``."""

    def __init__(
        self, models: Sequence, aggregate: str = "mean", std_weight: float = 1.0, names: Sequence[str] | None = None
    ):
        if not models:
            raise RrpoError("an ensemble needs at least one reward model")
        if aggregate not in AGGREGATES:
            raise RrpoError(f"unknown ensemble aggregate '{aggregate}' (known: {', '.join(AGGREGATES)})")
        names = list(names or [f"member {i}" for i in range(len(models))])
        first = models[0]
        for m, name in zip(models[1:], names[1:]):
            if tuple(m.classes) != tuple(first.classes):
                raise RrpoError(
                    f"ensemble members disagree on classes: {list(first.classes)} vs {list(m.classes)}", name
                )
            if m.vocab_size != first.vocab_size:
                raise RrpoError(
                    f"ensemble members read different token vocabularies ({first.vocab_size} vs {m.vocab_size})", name
                )
        self.models = list(models)
        self.aggregate = aggregate
        self.std_weight = float(std_weight)
        self.classes = tuple(first.classes)
        self.vocab_size = first.vocab_size
        self.training = False

    def member_rewards(self, x: torch.Tensor, lens: torch.Tensor, target) -> torch.Tensor:
        """(M, B) rewards of every member."""
        return torch.stack([m.reward(x, lens, target) for m in self.models], 0)

    def reward(self, x: torch.Tensor, lens: torch.Tensor, target) -> torch.Tensor:
        """(B,) aggregated reward, differentiable w.r.t. a relaxed ``x``."""
        return aggregate_rewards(self.member_rewards(x, lens, target), self.aggregate, self.std_weight)

    def class_index(self, target) -> torch.Tensor:
        return self.models[0].class_index(target)

    def __call__(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) as the log of the members' mean probability (for metrics and attacks)."""
        p = torch.stack([torch.softmax(m(x, lens).float(), -1) for m in self.models], 0).mean(0)
        return torch.log(p.clamp_min(1e-30))

    def parameters(self):
        for m in self.models:
            yield from m.parameters()

    def to(self, device):
        self.models = [m.to(device) for m in self.models]
        return self

    def eval(self):
        return self.train(False)

    def train(self, mode: bool = True):
        for m in self.models:
            m.train(mode)
        self.training = mode
        return self


def load_reward(
    paths: Sequence[str] | str, aggregate: str = "mean", std_weight: float = 1.0, device: str | torch.device = "cpu"
):
    """One frozen reward model (a single path) or a :class:`RewardEnsemble` of several folders."""
    from rrpo.reward.model import load_reward_model

    if isinstance(paths, str):
        paths = [paths]
    models = [load_reward_model(p, device=device) for p in paths]
    if len(models) == 1:
        return models[0]
    return RewardEnsemble(models, aggregate, std_weight, names=[str(p) for p in paths])
