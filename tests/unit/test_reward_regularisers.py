"""Hybrid regularisers against hand-worked values (docs/method.md §3)."""

import math

import pytest
import torch

from rrpo.reward.regularisers import (
    EAMConfig,
    best_substitution,
    energy_adaptive_mixup,
    fgm_delta,
    greedy_substitute,
    hotflip_substitute,
    interferer_energy,
    mix_segment,
    mixup_loss,
    mixup_weight,
    project_l2,
    smooth_labels,
    soft_cross_entropy,
)


def test_label_smoothing_values():
    """y = 2 of K = 5, ε = 0.1: y' = 0.9·onehot + 0.02 -> [0.02, 0.02, 0.92, 0.02, 0.02]."""
    y = smooth_labels(torch.tensor([2]), 5, 0.1)
    assert torch.allclose(y, torch.tensor([[0.02, 0.02, 0.92, 0.02, 0.02]]))
    assert torch.allclose(smooth_labels(torch.tensor([0]), 2, 0.0), torch.tensor([[1.0, 0.0]]))


def test_soft_cross_entropy_uniform_logits():
    """Zero logits give softmax 1/K, so CE = log K for any target distribution (K = 4: 1.386294)."""
    ce = soft_cross_entropy(torch.zeros(2, 4), smooth_labels(torch.tensor([1, 3]), 4, 0.3))
    assert torch.allclose(ce, torch.full((2,), math.log(4)))


def test_snr_convention_both_signs():
    """E_i = 2, r = 10 dB. target_over_interferer: E'_j = 2·10^-1 = 0.2; inverse: 2·10^1 = 20."""
    r = torch.tensor(10.0)
    assert float(interferer_energy(torch.tensor(2.0), r, "target_over_interferer")) == pytest.approx(0.2)
    assert float(interferer_energy(torch.tensor(2.0), r, "interferer_over_target")) == pytest.approx(20.0)
    # r = -5 dB, target over interferer: the interferer is 10^0.5 = 3.1623 times stronger
    assert float(interferer_energy(torch.tensor(1.0), torch.tensor(-5.0), "target_over_interferer")) == pytest.approx(
        10**0.5
    )


def test_lambda_formula():
    """l = 5, l_i = 20, E_i = 2, E'_j = 0.2: λ = 5/20 · 0.2/2.2 = 0.25 · 0.090909 = 0.0227273."""
    lam = mixup_weight(torch.tensor(5), torch.tensor(20), torch.tensor(2.0), torch.tensor(0.2))
    assert float(lam) == pytest.approx(0.0227273, rel=1e-5)


def test_mix_segment_amplitude_weights():
    """e_i = 1, e_j = 4, gain 0.5: a_i = 1, a_j = 0.5·2 = 1, w = 0.5 -> the mean of the two frames.
    e_i = 0 (silent target frame): w = 1 -> j's frame."""
    fi, fj = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 3.0], [0.0, 3.0]])
    out = mix_segment(fi, fj, torch.tensor([1.0, 0.0]), torch.tensor([4.0, 4.0]), 0.5)
    assert torch.allclose(out, torch.tensor([[0.5, 1.5], [0.0, 3.0]]))


@pytest.mark.parametrize("conv,ratio", [("target_over_interferer", 0.1), ("interferer_over_target", 10.0)])
def test_eam_draws_follow_formula(conv, ratio):
    """With r fixed at 10 dB, E'_j = ratio·E_i, so λ_i = (l/l_i)·ratio/(1+ratio) (0.1/1.1 or 10/11) and the
    gain g = sqrt(E'_j / mean energy of j's segment). Frames outside the segment are untouched and
    the segment is mix_segment of the two."""
    torch.manual_seed(0)
    B, T, d = 3, 10, 4
    F = torch.randn(B, T, d)
    lens = torch.tensor([10, 8, 6])
    energy = torch.rand(B, T) + 0.1
    cfg = EAMConfig(enabled=True, snr_min_db=10.0, snr_max_db=10.0, snr_convention=conv)
    out, dr = energy_adaptive_mixup(F, lens, energy, cfg, torch.Generator().manual_seed(1))
    for i in range(B):
        j, l, o, s = int(dr.partner[i]), int(dr.seg_len[i]), int(dr.offset[i]), int(dr.partner_start[i])
        li = int(lens[i])
        assert j != i and 1 <= l <= max(1, li // 2) and l <= int(lens[j])
        assert float(dr.lam[i]) == pytest.approx(l / li * ratio / (1 + ratio), rel=1e-5)
        E_i = energy[i, :li].mean()
        E_j = energy[j, s : s + l].mean()
        assert float(dr.gain[i]) == pytest.approx(math.sqrt(ratio * E_i / E_j), rel=1e-5)
        assert torch.equal(out[i, :o], F[i, :o]) and torch.equal(out[i, o + l :], F[i, o + l :])
        want = mix_segment(F[i, o : o + l], F[j, s : s + l], energy[i, o : o + l], energy[j, s : s + l], dr.gain[i])
        assert torch.allclose(out[i, o : o + l], want)


def test_eam_off_and_gradient_flows():
    """prob = 0 mixes nothing (λ = 0, output equal); with mixing, gradients reach F."""
    F = torch.randn(2, 6, 3, requires_grad=True)
    lens, energy = torch.tensor([6, 6]), torch.ones(2, 6)
    out, dr = energy_adaptive_mixup(F, lens, energy, EAMConfig(prob=0.0))
    assert torch.equal(out, F) and float(dr.lam.abs().sum()) == 0
    out, dr = energy_adaptive_mixup(F, lens, energy, EAMConfig(prob=1.0))
    out.sum().backward()
    assert F.grad is not None and F.grad.abs().sum() > 0


def test_mixup_loss_value():
    """K = 2, logits (0, log 3): p = (0.25, 0.75); y_i = 0, y_j = 1, ε = 0, λ = 0.25:
    0.75·(−log 0.25) + 0.25·(−log 0.75) = 1.039721 + 0.071921 = 1.111641."""
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    y = torch.tensor([0, 1])
    partner = torch.tensor([1, 0])
    lam = torch.tensor([0.25, 0.0])
    loss = mixup_loss(logits, y, partner, lam, 0.0)
    # sample 2: λ = 0, CE(y=1) = −log 0.75 = 0.287682; mean = (1.111641 + 0.287682)/2
    assert float(loss) == pytest.approx((1.111641 + 0.287682) / 2, rel=1e-5)
    assert float(mixup_loss(logits, y, None, None, 0.0)) == pytest.approx((1.386294 + 0.287682) / 2, rel=1e-5)


def test_fgm_direction_and_norm():
    """g = (3, 4) (norm 5), ε = 0.5: δ = 0.5·(3, 4)/5 = (0.3, 0.4). Per utterance: the second one
    (g = (0, 0.1, 0, 0) over two positions) gets δ = (0, 0.5, 0, 0)."""
    g = torch.tensor([[[3.0, 4.0], [0.0, 0.0]], [[0.0, 0.1], [0.0, 0.0]]])
    d = fgm_delta(g, 0.5)
    assert torch.allclose(d[0], torch.tensor([[0.3, 0.4], [0.0, 0.0]]))
    assert torch.allclose(d[1], torch.tensor([[0.0, 0.5], [0.0, 0.0]]))
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.tensor([0.5, 0.5]))
    assert not d.requires_grad


def test_project_l2():
    """(3, 4) projected to radius 1 -> (0.6, 0.8); (0.3, 0.4) (inside) unchanged."""
    d = torch.tensor([[[3.0, 4.0]], [[0.3, 0.4]]])
    assert torch.allclose(project_l2(d, 1.0), torch.tensor([[[0.6, 0.8]], [[0.3, 0.4]]]))


def test_hotflip_substitute_worked_by_hand():
    """E = [(0,0), (1,0), (0,1)]; row 0: x = (0, 1, 2, 0), last position masked out,
    g = ((1,0), (0,2), (−1,−0.5), (5,5)).
    pos 0: base E_0·g = 0; v=1: 1, v=2: 0 -> best 1 (token 1), gain 1;
    pos 1: base (1,0)·(0,2) = 0; v=0: 0, v=2: 2 -> token 2, gain 2;
    pos 2: base (0,1)·(−1,−0.5) = −0.5; v=0: 0, v=1: −1 -> token 0, gain 0.5;
    pos 3: masked (its gain 10 would be the largest).
    frac 0.5: k = round(1.5) = 2 -> positions 1 and 0 change: (1, 2, 2, 0).
    frac 0.1: k = max(1, round(0.3)) = 1 -> position 1 only: (0, 2, 2, 0).
    Row 1: no position may change (k = 0): unchanged. Chunking the vocabulary changes nothing."""
    E = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    x = torch.tensor([[0, 1, 2, 0], [1, 1, 1, 1]])
    g = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [-1.0, -0.5], [5.0, 5.0]], [[9.0, 9.0]] * 4])
    mask = torch.tensor([[True, True, True, False], [False] * 4])
    for chunk in (1, 2, 4096):
        xa, ch = hotflip_substitute(x, g, E, mask, 0.5, chunk)
        assert xa.tolist() == [[1, 2, 2, 0], [1, 1, 1, 1]]
        assert ch.tolist() == [[True, True, False, False], [False] * 4]
    xa, ch = hotflip_substitute(x, g, E, mask, 0.1)
    assert xa.tolist() == [[0, 2, 2, 0], [1, 1, 1, 1]] and int(ch.sum()) == 1


def test_greedy_substitute_worked_by_hand():
    """An additive loss: loss(ids) = Σ_t value[ids_t], value = (0, −1, 5, 1, 2).
    Row 0: x = (0, 0, 0, 0), proposals best_tok = (1, 2, 3, 4) with gains (4, 3, 2, 1), all positions
    may change, frac 0.5 -> k = 2 rounds, 2 candidates per round:
      round 0: positions 0 (token 1: loss −1) and 1 (token 2: loss 5) tried -> position 1 kept (5 > 0);
      round 1: positions 0 (5 − 1 = 4) and 2 (5 + 1 = 6) tried -> position 2 kept (6 > 5): (0, 2, 3, 0).
    One candidate per round: position 0 (loss −1) never raises the loss, so nothing changes.
    Row 1: its only allowed position (1) lowers the loss -> unchanged; k = 1."""
    value = torch.tensor([0.0, -1.0, 5.0, 1.0, 2.0])
    calls = []

    def loss_fn(ids, rows):
        calls.append(len(rows))
        return value[ids].sum(1)

    x = torch.tensor([[0, 0, 0, 0], [2, 2, 2, 2]])
    best_tok = torch.tensor([[1, 2, 3, 4], [0, 1, 0, 0]])
    gain = torch.tensor([[4.0, 3.0, 2.0, 1.0], [float("-inf"), 1.0, float("-inf"), float("-inf")]])
    mask = torch.tensor([[True] * 4, [False, True, False, False]])
    xa, ch = greedy_substitute(loss_fn, x, best_tok, gain, mask, 0.5, 2)
    assert xa.tolist() == [[0, 2, 3, 0], [2, 2, 2, 2]]
    assert ch.tolist() == [[False, True, True, False], [False] * 4]
    assert calls == [2, 4, 4]  # the clean loss, then 2 rounds of 2 variants per row
    xa, ch = greedy_substitute(loss_fn, x, best_tok, gain, mask, 0.5, 1)
    assert xa.tolist() == x.tolist() and not ch.any()


def test_best_substitution_worked_by_hand():
    """One greedy round, score(ids) = Σ_t value[ids_t], value = (0, −1, 5, 1, 2), 2 candidates.
    Row 0: x = (0, 0, 0), proposals (1, 2, 3), gains (3, 1, 2), position 0 already used:
      candidates by gain among 1, 2 -> positions 2 (token 3: score 1) then 1 (token 2: score 5)
      -> position 1, score 5.
    Row 1: x = (4, 4, 4) (score 2 + 2 + 2 = 6), proposals (2, 3, 0), gains (1, 5, −inf): positions 1
      (token 3: 2 + 1 + 2 = 5) and 0 (token 2: 5 + 2 + 2 = 9) -> position 0, score 9: the score, not the
      gain, decides.
    Row 2: only one finite gain (position 2, token 3: score 1); its second candidate (position 0 or 1,
      token 2: score 5) has gain −inf and is not chosen although its variant scores higher.
    Row 3: no finite gain left -> score −inf."""
    value = torch.tensor([0.0, -1.0, 5.0, 1.0, 2.0])
    seen = []

    def score_fn(ids, rows):
        seen.append(rows.tolist())
        return value[ids].sum(1)

    ninf = float("-inf")
    x = torch.tensor([[0, 0, 0], [4, 4, 4], [0, 0, 0], [0, 0, 0]])
    best_tok = torch.tensor([[1, 2, 3], [2, 3, 0], [2, 2, 3], [2, 2, 2]])
    gain = torch.tensor([[3.0, 1.0, 2.0], [1.0, 5.0, ninf], [ninf, ninf, 1.0], [ninf, ninf, ninf]])
    used = torch.tensor([[True, False, False], [False] * 3, [False] * 3, [False] * 3])
    pos, score = best_substitution(score_fn, x, best_tok, gain, used, 2)
    assert seen == [[0, 0, 1, 1, 2, 2, 3, 3]]  # one forward call, 2 variants per row
    assert pos[:3].tolist() == [1, 0, 2]
    assert score[:3].tolist() == [5.0, 9.0, 1.0] and score[3] == ninf
    # more candidates than positions: every position is tried once
    pos, score = best_substitution(score_fn, x[:1], best_tok[:1], gain[:1], torch.zeros(1, 3, dtype=torch.bool), 8)
    assert seen[-1] == [0, 0, 0] and pos.tolist() == [1] and score.tolist() == [5.0]


def test_greedy_tat_trains_and_changes_tokens():
    """reg.tat.search=greedy through the training objective: changes at most the budget and the loss
    on the substituted tokens is not below the clean loss of the same (eval-mode) model."""
    from rrpo.config import ConfigError
    from rrpo.reward.model import ModelConfig, TokenRewardModel
    from rrpo.reward.regularisers import RegConfig, TATConfig
    from rrpo.reward.train import make_objective

    torch.manual_seed(0)
    m = TokenRewardModel(12, ("a", "b", "c"), ModelConfig(d_model=8, n_layers=1, n_heads=2, d_ff=16, dropout=0.0))
    reg = RegConfig(tat=TATConfig(enabled=True, frac=0.2, search="greedy", candidates=4))
    x = torch.randint(0, 12, (3, 10))
    batch = {"tokens": x, "lens": torch.tensor([10, 10, 5]), "labels": torch.tensor([0, 1, 2]),
             "energy": torch.ones(3, 10)}  # fmt: skip
    loss, met = make_objective(m, reg)(batch, 0)
    loss.backward()
    assert 1 <= met["rm/tat_changed"] <= 2  # k = 2, 2, 1 per row
    assert met["rm/l_tok"] >= met["rm/l_emo"] - 1e-6
    with pytest.raises(ConfigError, match="reg.tat.search"):
        TATConfig(search="beam")
