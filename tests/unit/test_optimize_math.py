"""Relaxation, KL and the three policy objectives, against values worked by hand."""

import math

import pytest
import torch

from rrpo.optimize.objectives import RewardTerm, diffro_loss, grpo_loss, reinforce_loss
from rrpo.optimize.relax import (
    conditional_gumbel,
    lengths_to_mask,
    sample_gumbel,
    straight_through,
    token_entropy,
    token_kl,
)


def test_token_kl_hand_value():
    """π_θ = (0.5, 0.5), π_ref = (0.25, 0.75): KL = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75)
    = 0.5·0.693147 + 0.5·(−0.405465) = 0.143841. A second, masked position must not count."""
    p = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]))
    q = torch.log(torch.tensor([[[0.25, 0.75], [0.1, 0.9]]]))
    kl = token_kl(p, q, torch.tensor([[True, False]]))
    assert kl.item() == pytest.approx(0.143841, abs=1e-6)


def test_kl_zero_when_policy_equals_reference():
    z = torch.randn(3, 5, 7)
    assert torch.allclose(token_kl(z, z.clone(), torch.ones(3, 5, dtype=torch.bool)), torch.zeros(3), atol=1e-7)


def test_entropy_hand_value():
    """Uniform over 4 tokens: H = ln 4 = 1.386294."""
    z = torch.zeros(1, 2, 4)
    assert token_entropy(z, torch.ones(1, 2, dtype=torch.bool)).item() == pytest.approx(math.log(4), abs=1e-6)


def test_straight_through_forward_is_the_sample_and_backward_is_soft():
    torch.manual_seed(0)
    z = torch.randn(2, 3, 5, requires_grad=True)
    tok = torch.tensor([[0, 4, 2], [1, 1, 3]])
    g = sample_gumbel(z.shape)
    y = straight_through(z, tok, g, tau=0.7)
    assert torch.equal(y.detach(), torch.nn.functional.one_hot(tok, 5).float())
    w = torch.randn(2, 3, 5)
    (y * w).sum().backward()
    z2 = z.detach().clone().requires_grad_(True)
    (torch.softmax((z2 + g) / 0.7, -1) * w).sum().backward()
    assert torch.allclose(z.grad, z2.grad, atol=1e-6)


def test_conditional_gumbel_reproduces_the_observed_argmax():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(4, 50, 9, generator=gen)
    z[..., 0] = -math.inf  # a filtered (top-k) entry never wins and stays finite-free
    tok = torch.randint(1, 9, (4, 50), generator=gen)
    g = conditional_gumbel(z, tok, gen)
    assert torch.equal((z + g).argmax(-1), tok)


def test_conditional_gumbel_max_is_gumbel_of_logsumexp():
    """The max of the perturbed logits is Gumbel(logsumexp z): mean lse + γ (Euler 0.5772)."""
    gen = torch.Generator().manual_seed(2)
    z = torch.tensor([1.0, 0.0, -1.0]).expand(20000, 1, 3)
    tok = torch.zeros(20000, 1, dtype=torch.long)
    top = (z + conditional_gumbel(z, tok, gen)).max(-1).values
    lse = torch.logsumexp(torch.tensor([1.0, 0.0, -1.0]), 0)
    assert top.mean().item() == pytest.approx(lse.item() + 0.5772, abs=0.03)


def _linear_reward(W):
    def fn(y, lens, target):
        return (y * W[: y.shape[0], : y.shape[1], : y.shape[2]]).sum((-1, -2))

    return fn


def test_diffro_gradient_matches_finite_differences_of_the_relaxed_objective():
    """With a reward linear in the tokens, R(y) = Σ W·y, the straight-through gradient equals the
    exact gradient of the relaxed objective f(z) = mean_b[−R(softmax((z+g)/τ)) + β KL_b(z)],
    which we check by central differences in float64."""
    torch.manual_seed(3)
    B, T, V, beta, tau = 2, 3, 4, 0.3, 0.8
    z = torch.randn(B, T, V, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(B, T, V, dtype=torch.float64)
    g = sample_gumbel((B, T, V), dtype=torch.float64)
    tok = (z.detach() + g).argmax(-1)
    lens = torch.tensor([3, 2])
    W = torch.randn(B, T, V, dtype=torch.float64)
    terms = [RewardTerm("lin", _linear_reward(W), 1.0, V)]
    loss, _ = diffro_loss(z, ref, tok, lens, torch.zeros(B, dtype=torch.long), terms, beta=beta, tau=tau, noise=g)
    loss.backward()

    mask = lengths_to_mask(lens, T)

    def relaxed(zz):
        soft = torch.softmax((zz + g) / tau, -1) * mask[..., None]
        return (-(soft * W).sum((-1, -2)) + beta * token_kl(zz, ref, mask)).mean()

    h = 1e-6
    fd = torch.zeros_like(z)
    for idx in torch.cartesian_prod(*(torch.arange(s) for s in z.shape)):
        i = tuple(idx.tolist())
        zp, zm = z.detach().clone(), z.detach().clone()
        zp[i] += h
        zm[i] -= h
        fd[i] = (relaxed(zp) - relaxed(zm)) / (2 * h)
    assert torch.allclose(z.grad, fd, atol=1e-7)
    assert torch.all(z.grad[1, 2] == 0)  # padded position gets no reward and no KL gradient


def test_diffro_reward_sees_exactly_the_sampled_tokens_and_slices_vocab():
    seen = {}

    def fn(y, lens, target):
        seen["y"] = y.detach().clone()
        return y.sum((-1, -2))

    z = torch.randn(1, 4, 6, requires_grad=True)
    tok = torch.tensor([[2, 5, 1, 0]])  # 5 is end-of-speech (outside the RM's 5-token vocab), masked by lens
    loss, m = diffro_loss(
        z, z.detach(), tok, torch.tensor([3]), torch.tensor([0]), [RewardTerm("emo", fn, 2.0, 5)], beta=0.1
    )
    expect = torch.zeros(1, 4, 5)
    expect[0, 0, 2] = expect[0, 2, 1] = 1.0
    assert seen["y"].shape == (1, 4, 5)
    assert torch.equal(seen["y"], expect)
    # reward = 2 tokens in vocab with value 1 -> R = 2, weight 2, KL = 0: loss = -4
    assert loss.item() == pytest.approx(-4.0)
    assert m["reward/emo"] == pytest.approx(2.0) and m["policy/kl_ref"] == pytest.approx(0.0, abs=1e-7)


def test_reinforce_hand_value():
    """Two samples, one token each, log π = ln 0.5 and ln 0.25; rewards (1, 0), baseline 0.5, β = 0:
    loss = mean(−0.5·ln 0.5, +0.5·ln 0.25) = (0.346574 − 0.693147)/2 = −0.173287."""
    z = torch.log(torch.tensor([[[0.5, 0.5]], [[0.25, 0.75]]]))
    loss, _ = reinforce_loss(
        z, z, torch.tensor([[0], [0]]), torch.tensor([1, 1]), None, torch.tensor([1.0, 0.0]), beta=0.0
    )
    assert loss.item() == pytest.approx(-0.173287, abs=1e-6)


def test_grpo_advantages_and_clipping():
    """Group of two with rewards (1, 3): A = (−1, +1). With ρ = 1 the loss is 0 and the gradient
    raises log π of the better sample. With old log-probs lower by ln 2 (ρ = 2) and clip 0.2, the
    positive-advantage sample is clipped at 1.2 and the negative one keeps ρ·A = −2:
    loss = −mean(min(2·(−1), 0.8·(−1)), min(2·1, 1.2·1)) = −mean(−2, 1.2) = 0.4."""
    z = torch.zeros(2, 1, 3, requires_grad=True)
    tok = torch.tensor([[0], [1]])
    loss, m = grpo_loss(
        z, z.detach(), tok, torch.tensor([1, 1]), None, torch.tensor([1.0, 3.0]), group=2, beta=0.0, eps=0.0
    )
    assert loss.item() == pytest.approx(0.0, abs=1e-7) and m["policy/adv_abs"] == pytest.approx(1.0)
    loss.backward()
    assert z.grad[1, 0, 1] < 0 < z.grad[0, 0, 0]  # descent raises the good sample, lowers the bad one
    old = torch.full((2, 1), math.log(1 / 3) - math.log(2))
    loss2, _ = grpo_loss(
        z.detach(),
        z.detach(),
        tok,
        torch.tensor([1, 1]),
        None,
        torch.tensor([1.0, 3.0]),
        2,
        beta=0.0,
        eps=0.0,
        old_logp=old,
    )
    assert loss2.item() == pytest.approx(0.4, abs=1e-6)
