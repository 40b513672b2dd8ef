"""The reward model: one code path for ids and relaxed inputs, feature tying, reward, loading."""

import numpy as np
import pytest
import torch

from rrpo.data.emotions import ESD_CLASSES
from rrpo.errors import ConfigError, RrpoError
from rrpo.reward.model import ModelConfig, TokenRewardModel, load_reward_model

SMALL = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, pool_dim=8, dropout=0.0)


def _model(**kw):
    torch.manual_seed(0)
    return TokenRewardModel(20, ESD_CLASSES, SMALL, **kw).eval()


def test_ids_and_onehots_agree_and_padding_ignored():
    m = _model()
    x = torch.randint(0, 20, (3, 7))
    lens = torch.tensor([7, 5, 2])
    a = m(x, lens)
    b = m(torch.nn.functional.one_hot(x, 20).float(), lens)
    assert a.shape == (3, 5) and torch.allclose(a, b, atol=1e-5)
    x2 = x.clone()
    x2[1, 5:] = 3  # change padding only
    assert torch.allclose(m(x2, lens)[1], a[1], atol=1e-5)


def test_reward_is_log_softmax_and_gradient_reaches_relaxed_input():
    m = _model()
    m.requires_grad_(False)
    p = torch.softmax(torch.randn(2, 6, 20), -1).requires_grad_(True)
    lens = torch.tensor([6, 4])
    r = m.reward(p, lens, torch.tensor([1, 3]))
    lp = torch.log_softmax(m(p, lens), -1)
    assert torch.allclose(r, torch.stack([lp[0, 1], lp[1, 3]]))
    assert torch.allclose(m.reward(p, lens, "angry"), lp[:, 2])
    r.sum().backward()
    assert p.grad is not None and p.grad[:, :4].abs().sum() > 0
    assert p.grad[1, 4:].abs().sum() == 0  # padding gets no gradient
    with pytest.raises(RrpoError):
        m.reward(p, lens, "fear")


def test_feature_tied_embedding():
    """E = free + Linear(standardised Φ); 'features' alone: tokens with equal Φ embed equally."""
    phi = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    phi[5] = phi[4]
    m = TokenRewardModel(
        20,
        ESD_CLASSES,
        ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, embedding="features"),
        torch.from_numpy(phi),
    )
    E = m.embedding_table()
    assert E.shape == (20, 16) and torch.allclose(E[4], E[5])
    m2 = TokenRewardModel(
        20,
        ESD_CLASSES,
        ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, embedding="free+features"),
        torch.from_numpy(phi),
    )
    assert torch.allclose(m2.embedding_table(), m2.free.weight + m2.feat_proj(m2.token_features))
    with pytest.raises(RrpoError):
        TokenRewardModel(20, ESD_CLASSES, ModelConfig(embedding="features"))


def test_free_init_zero_starts_every_token_at_its_features_and_keeps_absent_ones_there():
    """free_init=zero: E = 0 + Linear(Φ) at the start; after an optimiser step on a batch that holds
    tokens 1 and 2 only, the free rows of the absent tokens are still exactly 0 (no gradient, and
    AdamW's decay of 0 is 0), those of 1 and 2 are not."""
    torch.manual_seed(0)
    phi = torch.randn(6, 3)
    cfg = ModelConfig(d_model=8, n_layers=1, n_heads=2, d_ff=16, embedding="free+features", free_init="zero")
    m = TokenRewardModel(6, ESD_CLASSES, cfg, phi)
    assert torch.equal(m.free.weight, torch.zeros(6, 8))
    assert torch.allclose(m.embedding_table(), m.feat_proj(m.token_features))
    opt = torch.optim.AdamW(m.parameters(), lr=0.1, weight_decay=0.01)
    m(torch.tensor([[1, 2, 1]]), torch.tensor([3]))[0, 0].backward()
    opt.step()
    moved = m.free.weight.detach().abs().sum(1) > 0
    assert moved.tolist() == [False, True, True, False, False, False]
    with pytest.raises(ConfigError, match="free_init"):
        ModelConfig(free_init="uniform")


def test_load_reward_model_roundtrip(tmp_path):
    from rrpo.io import write_json
    from rrpo.train.loop import save_weights

    phi = torch.randn(20, 3)
    m = TokenRewardModel(
        20, ESD_CLASSES, ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, embedding="free+features"), phi
    )
    ck = tmp_path / "run" / "checkpoints" / "step_3"
    ck.mkdir(parents=True)
    save_weights(m, ck / "model.safetensors")
    write_json(ck / "meta.json", {"step": 3, "rm": m.describe()})
    r = load_reward_model(tmp_path / "run")
    assert r.classes == ESD_CLASSES and not r.training
    assert all(not p.requires_grad for p in r.parameters())
    x, lens = torch.randint(0, 20, (2, 5)), torch.tensor([5, 3])
    m.eval()
    assert torch.allclose(r(x, lens), m(x, lens), atol=1e-6)
    with pytest.raises(RrpoError):
        load_reward_model(tmp_path / "nothing")
