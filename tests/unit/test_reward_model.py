"""The reward model: one code path for ids and relaxed inputs, feature tying, reward, loading."""

import numpy as np
import pytest
import torch

from rrpo.data.emotions import ESD_CLASSES
from rrpo.errors import ConfigError, RrpoError
from rrpo.reward.model import ModelConfig, TokenRewardModel, count_tokens, load_reward_model

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


def _mapped_model(counts, min_count=2):
    # token features on a line: token v sits at x = FEAT[v] (one feature column, standardised by the model,
    # which keeps the order and the nearest neighbours)
    FEAT = [0.0, 1.0, 2.0, 3.0, 10.0, 11.0]
    cfg = ModelConfig(
        d_model=8, n_layers=1, n_heads=2, d_ff=16, dropout=0.0, embedding="free+features",
        unseen_tokens="nearest", min_token_count=min_count,
    )  # fmt: skip
    torch.manual_seed(0)
    m = TokenRewardModel(6, ESD_CLASSES, cfg, torch.tensor(FEAT)[:, None]).eval()
    m.set_token_count(torch.tensor(counts, dtype=torch.float32))
    return m


def test_unseen_tokens_read_as_nearest_well_heard_token_worked_by_hand():
    """Counts [5, 0, 1, 4, 0, 2], min 2: tokens 0, 3, 5 are well heard. Token 1 (x=1) is nearest to 0
    (x=0; 3 is at 2), token 2 (x=2) nearest to 3 (x=3; 0 is at 2), token 4 (x=10) nearest to 5 (x=11)."""
    m = _mapped_model([5, 0, 1, 4, 0, 2])
    assert m.token_map().tolist() == [0, 0, 3, 3, 5, 5]
    x, lens = torch.tensor([[1, 2, 4, 0]]), torch.tensor([4])
    same = torch.tensor([[0, 3, 5, 0]])
    assert torch.allclose(m(x, lens), m(same, lens), atol=1e-6)
    # relaxed input: mass on a rare token acts as mass on its stand-in, and the gradient reaches it
    p = torch.nn.functional.one_hot(x, 6).float().requires_grad_(True)
    assert torch.allclose(m(p, lens), m(same, lens), atol=1e-6)
    m.reward(p, lens, "sad").sum().backward()
    assert p.grad[0, 0, 1] != 0
    e = m.read_table()
    assert torch.equal(e[1], m.embedding_table()[0]) and torch.equal(e[4], m.embedding_table()[5])
    # keep: every token is itself; new counts are used at once
    m.set_token_count(torch.full((6,), 9.0))
    assert m.token_map().tolist() == list(range(6))
    m.cfg.unseen_tokens = "keep"
    assert m.token_map() is None


def test_unseen_tokens_config_is_checked():
    with pytest.raises(ConfigError, match="unseen_tokens"):
        ModelConfig(unseen_tokens="closest")
    with pytest.raises(RrpoError, match="unseen_tokens=nearest needs token features"):
        TokenRewardModel(6, ESD_CLASSES, ModelConfig(unseen_tokens="nearest"))  # embedding 'free'
    with pytest.raises(ConfigError, match="min_token_count"):
        ModelConfig(embedding="features", unseen_tokens="nearest", min_token_count=0)


def test_token_counts_travel_with_the_weights(tmp_path):
    from rrpo.io import write_json
    from rrpo.train.loop import save_weights

    m = _mapped_model([5, 0, 1, 4, 0, 2])
    ck = tmp_path / "run" / "checkpoints" / "step_1"
    ck.mkdir(parents=True)
    save_weights(m, ck / "model.safetensors")
    write_json(ck / "meta.json", {"step": 1, "rm": m.describe()})
    r = load_reward_model(tmp_path / "run")
    assert r.token_count.tolist() == [5, 0, 1, 4, 0, 2]
    assert r.token_map().tolist() == [0, 0, 3, 3, 5, 5]
    # a checkpoint written before counts were kept loads without them, every token read as itself
    info = m.describe()
    info.pop("token_count")
    state = {k: v for k, v in m.state_dict().items() if k != "token_count"}
    ck2 = tmp_path / "old" / "checkpoints" / "step_1"
    ck2.mkdir(parents=True)
    from safetensors.torch import save_file

    save_file(state, str(ck2 / "model.safetensors"))
    write_json(ck2 / "meta.json", {"step": 1, "rm": info})
    old = load_reward_model(tmp_path / "old")
    assert old.token_count is None and old.token_map().tolist() == list(range(6))


def test_count_tokens_worked_by_hand():
    """Ids (0, 2, 2), (), (4, 2) in a vocabulary of 6: token 0 once, 2 three times, 4 once."""
    c = count_tokens([np.array([0, 2, 2]), np.array([], dtype=np.int64), [4, 2]], 6)
    assert c.dtype == np.int64 and c.tolist() == [1, 0, 3, 0, 1, 0]
    assert count_tokens([], 3).tolist() == [0, 0, 0]
