"""Metrics and attacks of `rrpo rm eval` against hand-worked values and a deliberately brittle model."""

import pytest
import torch

from rrpo.reward.attacks import AttackConfig, confidence_thirds, h_attack_accuracy, token_attack
from rrpo.reward.metrics import classification_metrics, expected_calibration_error
from rrpo.reward.model import ModelConfig, TokenRewardModel

# labels 0 0 0 1 1 2, predictions 0 0 1 1 2 2 with confidences .9 .9 .6 .6 .45 .45
PROBS = torch.tensor(
    [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.6, 0.2], [0.2, 0.6, 0.2], [0.3, 0.25, 0.45], [0.3, 0.25, 0.45]]
)
LABELS = torch.tensor([0, 0, 0, 1, 1, 2])


def test_wa_ua_f1_confusion():
    """Confusion rows [2 1 0] [0 1 1] [0 0 1]. WA = 4/6 = .666667. Recalls 2/3, 1/2, 1 -> UA = .722222.
    Precisions 1, 1/2, 1/2 -> F1 .8, .5, .666667 -> macro-F1 .655556."""
    m = classification_metrics(PROBS, LABELS)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["wa"] == pytest.approx(4 / 6)
    assert m["ua"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_ece():
    """Bins: .9 (2 items, both right): |1 − .9|·2/6 = .033333; .6 (one right): |.5 − .6|·2/6 = .033333;
    .45 (one right): |.5 − .45|·2/6 = .016667. ECE = .083333."""
    assert expected_calibration_error(PROBS, LABELS, 10) == pytest.approx(1 / 12)
    assert classification_metrics(PROBS, LABELS)["ece"] == pytest.approx(1 / 12)


def test_ua_ignores_absent_classes():
    """Class 2 never occurs: UA averages the recalls of classes 0 and 1 only (1 and 0 -> 0.5)."""
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.8, 0.1, 0.1]])
    m = classification_metrics(probs, torch.tensor([0, 1]))
    assert m["ua"] == pytest.approx(0.5) and m["wa"] == pytest.approx(0.5)


class _Item:
    def __init__(self, tokens, label):
        import numpy as np

        self.tokens, self.energy, self.label = tokens, np.ones(len(tokens), "float32"), label


def _brittle_model():
    """Class 'happy' iff token 3 occurs anywhere: one token flips the decision (brittle by design)."""
    torch.manual_seed(0)
    m = TokenRewardModel(
        12, ("neutral", "happy"), ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, pool_dim=8, dropout=0.0)
    )
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        x = torch.randint(4, 12, (32, 10), generator=g)
        y = torch.randint(0, 2, (32,), generator=g)
        pos = torch.randint(0, 10, (32,), generator=g)
        x[y == 1, pos[y == 1]] = 3
        loss = torch.nn.functional.cross_entropy(m(x, torch.full((32,), 10)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


def test_token_attack_breaks_a_brittle_model():
    m = _brittle_model()
    g = torch.Generator().manual_seed(1)
    items = [_Item(torch.randint(4, 12, (10,), generator=g).numpy(), 0) for _ in range(12)]
    cfg = AttackConfig(budgets=[0.1, 0.3], token_steps=20, max_utterances=0)
    res = token_attack(m, items, cfg)
    assert res["attacked"] >= 10  # the model gets the clean neutral ones right
    assert res["success"]["0.1"] >= 0.9  # one changed token (10%) is enough
    assert res["flipped"]["0.3"] >= res["success"]["0.3"]
    # the thirds by confidence partition the attacked utterances: their rates average back to the total
    bc = res["by_confidence"]
    assert sum(bc["n"]) == res["attacked"]
    for b in ("0.1", "0.3"):
        total = sum(n * bc[t][b] for n, t in zip(bc["n"], ("low", "mid", "high")))
        assert total / res["attacked"] == pytest.approx(res["success"][b])


def test_confidence_thirds_worked_by_hand():
    # ranked by confidence: 0.2 (hit), 0.3 (hit) | 0.5 (miss), 0.6 (hit) | 0.7 (miss), 0.9 (hit), 0.95 (miss)
    conf = torch.tensor([0.9, 0.2, 0.5, 0.7, 0.3, 0.6, 0.95])
    hits = {0.05: torch.tensor([1, 1, 0, 0, 1, 1, 0], dtype=torch.bool), 0.1: torch.ones(7, dtype=torch.bool)}
    out = confidence_thirds(conf, hits)
    assert out["n"] == [2, 2, 3]
    assert out["low"] == {"0.05": 1.0, "0.1": 1.0}
    assert out["mid"] == {"0.05": 0.5, "0.1": 1.0}
    assert out["high"]["0.05"] == pytest.approx(1 / 3) and out["high"]["0.1"] == 1.0
    # ties keep input order; fewer than 3 utterances leave thirds empty (None), not 0
    tie = confidence_thirds(torch.tensor([0.5, 0.5, 0.5]), {0.05: torch.tensor([True, False, False])})
    assert tie["n"] == [1, 1, 1] and tie["low"] == {"0.05": 1.0} and tie["high"] == {"0.05": 0.0}
    two = confidence_thirds(torch.tensor([0.4, 0.6]), {0.05: torch.tensor([True, False])})
    assert two["n"] == [0, 0, 2] and two["low"] == {"0.05": None} and two["high"] == {"0.05": 0.5}
    assert confidence_thirds(torch.zeros(0), {0.05: torch.zeros(0, dtype=torch.bool)})["n"] == [0, 0, 0]


def test_h_attack_eps_zero_is_clean_accuracy_and_large_eps_hurts():
    m = _brittle_model()
    g = torch.Generator().manual_seed(2)
    items = []
    for n in range(10):
        x = torch.randint(4, 12, (10,), generator=g)
        if n % 2:
            x[n % 10] = 3
        items.append(_Item(x.numpy(), n % 2))
    res = h_attack_accuracy(m, items, AttackConfig(eps=[0.0, 200.0], pgd_steps=5))
    assert res["fgm"]["0.0"] == res["pgd"]["0.0"] == res["clean"] == 1.0
    assert res["fgm"]["200.0"] < 1.0 and res["pgd"]["200.0"] < 1.0
