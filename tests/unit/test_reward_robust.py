"""Issue 14's reward-model parts, each against values worked by hand: masked loss for classes a
corpus lacks, the scale-aware FGM/PGD radius, statistics pooling, non-speech trimming (padding with
silence changes nothing), and reward-model ensembles."""

from __future__ import annotations

import math

import pytest
import torch

from rrpo.data.emotions import ESD_CLASSES
from rrpo.errors import ConfigError, RrpoError
from rrpo.reward.ensemble import RewardEnsemble, aggregate_rewards
from rrpo.reward.model import ModelConfig, TokenRewardModel, estimate_nonspeech, stats_pool
from rrpo.reward.regularisers import (
    fgm_delta,
    mixup_loss,
    perturbation_radius,
    project_l2,
    smooth_labels,
    soft_cross_entropy,
)

SMALL = dict(d_model=16, n_layers=1, n_heads=2, d_ff=32, pool_dim=8, dropout=0.0)


# ----------------------------------------------------------------------------- masked classes


def test_smoothing_spreads_over_available_classes_only():
    """K = 5, ε = 0.1, y = 0, classes 2 and 4 absent: K_b = 3, so y' = [0.9 + 0.1/3, 0.1/3, 0, 0.1/3, 0]."""
    avail = torch.tensor([[True, True, False, True, False]])
    y = smooth_labels(torch.tensor([0]), 5, 0.1, avail)
    third = 0.1 / 3
    assert torch.allclose(y, torch.tensor([[0.9 + third, third, 0.0, third, 0.0]]))
    assert torch.allclose(smooth_labels(torch.tensor([0]), 5, 0.1), torch.tensor([[0.92, 0.02, 0.02, 0.02, 0.02]]))


def test_absent_classes_are_not_negatives():
    """Logits [2, 0, 5, 0, 9], true class 0, classes 2 and 4 absent: the softmax runs over [2, 0, 0]:
    CE = −(2 − ln(e² + 2)) = ln(9.389) − 2 = 0.2395. Unmasked: ln(7.389 + 2 + 148.41 + 8103.08) − 2 = 7.0193.
    Uniform logits: ln 3 = 1.0986 masked, ln 5 = 1.6094 not."""
    logits = torch.tensor([[2.0, 0.0, 5.0, 0.0, 9.0]])
    avail = torch.tensor([[True, True, False, True, False]])
    target = torch.tensor([[1.0, 0, 0, 0, 0]])
    assert soft_cross_entropy(logits, target, avail).item() == pytest.approx(math.log(math.exp(2) + 2) - 2, abs=1e-5)
    assert soft_cross_entropy(logits, target, avail).item() == pytest.approx(0.2395, abs=1e-4)
    assert soft_cross_entropy(logits, target).item() == pytest.approx(7.0193, abs=1e-4)
    z = torch.zeros(1, 5, requires_grad=True)
    loss = mixup_loss(z, torch.tensor([0]), None, None, 0.0, avail)
    assert loss.item() == pytest.approx(math.log(3), abs=1e-6)
    loss.backward()
    # the absent classes get no gradient: they are neither pushed up nor down
    assert z.grad[0, 2] == 0 and z.grad[0, 4] == 0 and z.grad[0, 1] > 0


def test_mixed_pair_uses_the_union_of_available_classes():
    """i lacks class 4, its partner j has all 5: the mixed sample's loss runs over all 5 classes
    (uniform logits: ln 5 for both halves, whatever λ)."""
    avail = torch.tensor([[True, True, True, True, False], [True] * 5])
    loss = mixup_loss(
        torch.zeros(2, 5), torch.tensor([0, 4]), torch.tensor([1, 0]), torch.tensor([0.3, 0.0]), 0.0, avail
    )
    assert loss.item() == pytest.approx(math.log(5), abs=1e-6)


def test_load_items_masks_classes_a_manifest_lacks(tmp_path):
    from rrpo.reward.data import DataConfig, collate, load_items

    from tests.unit.reward_fixtures import make_corpus

    m1, t1 = make_corpus(tmp_path, "a", classes=("neutral", "happy", "angry", "sad"), per_class=2)
    m2, t2 = make_corpus(tmp_path, "b", per_class=2)
    items, summary = load_items(DataConfig(manifests=[str(m1), str(m2)], tokens=[str(t1), str(t2)]), list(ESD_CLASSES))
    assert summary["masked_classes"] == {str(m1): ["surprise"]}
    a = [it for it in items if it.id.startswith("a_")]
    b = [it for it in items if it.id.startswith("b_")]
    assert all(it.avail == (True, True, True, True, False) for it in a) and all(it.avail is None for it in b)
    batch = collate([a[0], b[0]])
    assert batch["avail"].tolist() == [[True, True, True, True, False], [True] * 5]
    off, _ = load_items(DataConfig(manifests=[str(m1)], tokens=[str(t1)], mask_absent_classes=False), list(ESD_CLASSES))
    assert all(it.avail is None for it in off) and "avail" not in collate(off[:2])


# ------------------------------------------------------------------------- scale-aware radius


def test_relative_radius_is_eps_times_norm_of_valid_positions():
    """h' rows [3, 4], [1, 1] (padding), [6, 8]: ‖h'‖ over the valid rows = √(9+16+36+64) = √125 = 11.180,
    i.e. per-position RMS norm √62.5 = 7.906 times √T = √2. ε = 0.1 -> radius 1.1180."""
    h = torch.tensor([[[3.0, 4.0], [1.0, 1.0], [6.0, 8.0]]])
    mask = torch.tensor([[True, False, True]])
    r = perturbation_radius(0.1, h, mask, "relative")
    assert r.shape == (1,) and r.item() == pytest.approx(0.1 * math.sqrt(125), abs=1e-5)
    assert r.item() == pytest.approx(0.1 * math.sqrt(62.5) * math.sqrt(2), abs=1e-5)
    assert perturbation_radius(0.5, h, mask, "absolute") == 0.5
    g = torch.randn(1, 3, 2)
    assert fgm_delta(g, r).flatten().norm().item() == pytest.approx(r.item(), rel=1e-5)
    big = torch.full((1, 3, 2), 10.0)
    assert project_l2(big, r).flatten().norm().item() == pytest.approx(r.item(), rel=1e-5)
    small = torch.full((1, 3, 2), 0.01)
    assert torch.equal(project_l2(small, r), small)  # inside the ball: unchanged


def test_relative_radius_grows_with_length():
    """Twice the positions of the same norm -> √2 times the radius (an absolute ε would not grow)."""
    h1 = torch.ones(1, 4, 8)
    h2 = torch.ones(1, 8, 8)
    r1 = perturbation_radius(0.1, h1, torch.ones(1, 4, dtype=torch.bool))
    r2 = perturbation_radius(0.1, h2, torch.ones(1, 8, dtype=torch.bool))
    assert (r2 / r1).item() == pytest.approx(math.sqrt(2), rel=1e-6)


def test_fgm_config_validates_mode():
    from rrpo.reward.regularisers import FGMConfig

    with pytest.raises(ConfigError, match="eps_mode"):
        FGMConfig(eps_mode="per-token")


# ----------------------------------------------------------------------------------- pooling


def test_stats_pool_values():
    """Values [1, 3, (100 padding)]: mean 2, variance 1, std √(1 + 1e-5)."""
    h = torch.tensor([[[1.0], [3.0], [100.0]]])
    out = stats_pool(h, torch.tensor([[True, True, False]]))
    assert torch.allclose(out, torch.tensor([[2.0, math.sqrt(1 + 1e-5)]]))


def test_attention_plus_stats_pooling_model():
    torch.manual_seed(0)
    m = TokenRewardModel(20, ESD_CLASSES, ModelConfig(**SMALL, pooling="attention+stats")).eval()
    assert m.out.in_features == 48
    x = torch.randint(0, 20, (2, 6))
    lens = torch.tensor([6, 4])
    a = m(x, lens)
    x2 = x.clone()
    x2[1, 4:] = 7  # padding only
    assert torch.allclose(m(x2, lens), a, atol=1e-5)
    with pytest.raises(ConfigError, match="model.pooling"):
        ModelConfig(pooling="max")


# ---------------------------------------------------------------------------------- silence


def test_estimate_nonspeech_by_hand():
    """Utterance 1: tokens [0, 1, 2, 0], energies [1e-6, 1, 0.5, 1e-6] -> levels re the loudest
    [-60, 0, -3, -60] dB; utterance 2: tokens [0, 2, 1], energies [1, 1e-5, 1] -> [0, -50, 0] dB.
    Token 0: 2 of 3 quiet (≥ 0.5) -> non-speech. Token 1: 0 of 2. Token 2: 1 of 2 (= 0.5) but only
    2 occurrences: non-speech with min_count 2, not with 3."""
    toks = [[0, 1, 2, 0], [0, 2, 1]]
    ens = [[1e-6, 1.0, 0.5, 1e-6], [1.0, 1e-5, 1.0]]
    assert estimate_nonspeech(toks, ens, 4, -35.0, 0.5, min_count=3).tolist() == [True, False, False, False]
    assert estimate_nonspeech(toks, ens, 4, -35.0, 0.5, min_count=2).tolist() == [True, False, True, False]
    assert estimate_nonspeech(toks, ens, 4, -35.0, 0.7, min_count=2).tolist() == [False, False, False, False]


def _trim_model(pooling="attention"):
    torch.manual_seed(0)
    m = TokenRewardModel(20, ESD_CLASSES, ModelConfig(**SMALL, pooling=pooling)).eval()
    m.nonspeech[0] = True
    m.nonspeech[1] = True
    return m


def test_stats_pooling_model_is_the_linear_layer_of_mean_and_std():
    """pooling=stats: no attention scorer; logits = out([mean_t h', std_t h']) over valid positions."""
    torch.manual_seed(0)
    m = TokenRewardModel(20, ESD_CLASSES, ModelConfig(**SMALL, pooling="stats")).eval()
    assert m.pool is None and m.out.in_features == 2 * SMALL["d_model"]
    x = torch.randint(2, 20, (2, 6))
    lens = torch.tensor([6, 4])
    h = m.hidden(x, lens)
    mask = m.input_mask(x, lens)
    assert torch.allclose(m(x, lens), m.out(stats_pool(h, mask)), atol=1e-6)


@pytest.mark.parametrize("pooling", ["attention", "attention+stats", "stats"])
def test_padding_with_silence_does_not_change_the_prediction(pooling):
    m = _trim_model(pooling)
    clip = torch.tensor([5, 6, 0, 7, 8])  # an inner pause (0) is speech context and stays
    padded = torch.tensor([0, 1, 0, 5, 6, 0, 7, 8, 1, 0, 0, 0])
    a = m(clip[None], torch.tensor([5]))
    b = m(padded[None], torch.tensor([12]))
    assert torch.allclose(a, b, atol=1e-5) and a.argmax() == b.argmax()
    # the same through relaxed (one-hot) input, as a policy's samples arrive
    p = torch.nn.functional.one_hot(padded, 20).float().requires_grad_(True)
    c = m(p[None], torch.tensor([12]))
    assert torch.allclose(a, c, atol=1e-5)
    c[0, 2].backward()
    g = p.grad.abs().sum(-1)
    assert g[:3].sum() == 0 and g[8:].sum() == 0 and (g[3:8] > 0).all()  # trimmed edges get no gradient
    # without trimming the padding would change the logits
    m.nonspeech.zero_()
    assert not torch.allclose(m(padded[None], torch.tensor([12])), a, atol=1e-3)


def test_input_mask_edges_and_all_silent_rows():
    m = _trim_model()
    x = torch.tensor([[0, 5, 0, 6, 1, 9], [0, 1, 0, 1, 0, 0], [5, 6, 7, 0, 3, 3]])
    lens = torch.tensor([5, 6, 3])
    mask = m.input_mask(x, lens)
    assert mask.tolist() == [
        [False, True, True, True, False, False],
        [True] * 6,  # no speech at all: nothing trimmed
        [True, True, True, False, False, False],
    ]


def test_old_checkpoints_load_without_trimming(tmp_path):
    from rrpo.reward.model import build_from_meta

    info = TokenRewardModel(20, ESD_CLASSES, ModelConfig(**SMALL, trim_nonspeech=False)).describe()
    for k in ("trim_nonspeech", "pooling", "nonspeech_db", "nonspeech_frac"):
        info["model"].pop(k)  # a meta.json written before these options existed
    m = build_from_meta(info)
    assert m.nonspeech is None and m.cfg.pooling == "attention"


# --------------------------------------------------------------------------------- ensembles

R = torch.tensor([[-1.0, -2.0], [-3.0, -2.0], [-2.0, -5.0]])  # (M=3 members, B=2)


def test_aggregate_values_by_hand():
    """Column 0: [-1, -3, -2]: mean -2, min -3, population std √(2/3) = 0.8165 -> -2.8165.
    Column 1: [-2, -2, -5]: mean -3, min -5, std √2 = 1.4142 -> -4.4142 (k = 1); k = 0.5: -3.7071."""
    assert torch.allclose(aggregate_rewards(R, "mean"), torch.tensor([-2.0, -3.0]))
    assert torch.allclose(aggregate_rewards(R, "min"), torch.tensor([-3.0, -5.0]))
    assert torch.allclose(aggregate_rewards(R, "mean_minus_std"), torch.tensor([-2.8165, -4.4142]), atol=1e-4)
    assert torch.allclose(aggregate_rewards(R, "mean_minus_std", 0.5), torch.tensor([-2.4082, -3.7071]), atol=1e-4)
    with pytest.raises(RrpoError, match="unknown ensemble aggregate"):
        aggregate_rewards(R, "median")


def test_aggregate_gradients_by_hand():
    """d mean/d r_m = 1/3; d min picks the lowest member; d(mean − std)/d r_m = 1/M − (r_m − mean)/(M·std):
    column 0, member 0: 1/3 − 1/(3·0.8165) = −0.0749; member 1: 1/3 + 1/(3·0.8165) = 0.7416; member 2: 1/3."""
    r = R.clone().requires_grad_(True)
    aggregate_rewards(r, "mean").sum().backward()
    assert torch.allclose(r.grad, torch.full_like(R, 1 / 3))
    r.grad = None
    aggregate_rewards(r, "min").sum().backward()
    assert r.grad.tolist() == [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    r.grad = None
    aggregate_rewards(r, "mean_minus_std").sum().backward()
    assert torch.allclose(r.grad[:, 0], torch.tensor([-0.0749, 0.7416, 1 / 3]), atol=1e-4)
    same = torch.full((3, 2), -1.0, requires_grad=True)  # members that agree: finite gradient, no NaN
    aggregate_rewards(same, "mean_minus_std").sum().backward()
    assert torch.isfinite(same.grad).all()


def test_ensemble_reward_is_differentiable_and_matches_members(tmp_path):
    torch.manual_seed(0)
    members = [TokenRewardModel(20, ESD_CLASSES, ModelConfig(**SMALL, trim_nonspeech=False)).eval() for _ in range(3)]
    ens = RewardEnsemble(members, "mean_minus_std", 1.0)
    x = torch.nn.functional.one_hot(torch.randint(0, 20, (2, 6)), 20).float().requires_grad_(True)
    lens = torch.tensor([6, 4])
    r = ens.reward(x, lens, ["angry", "sad"])
    each = torch.stack([m.reward(x, lens, ["angry", "sad"]) for m in members])
    assert torch.allclose(r, aggregate_rewards(each, "mean_minus_std"))
    r.sum().backward()
    assert x.grad.abs().sum() > 0
    other = TokenRewardModel(20, ("neutral", "happy"), ModelConfig(**SMALL, trim_nonspeech=False))
    with pytest.raises(RrpoError, match="disagree on classes"):
        RewardEnsemble([members[0], other])


def test_reward_spec_paths_and_aggregate(tmp_path):
    from safetensors.torch import save_model

    from rrpo.io import write_json
    from rrpo.optimize.trainer import RewardSpec

    folders = []
    for s in range(2):
        torch.manual_seed(s)
        m = TokenRewardModel(20, ESD_CLASSES, ModelConfig(**SMALL, trim_nonspeech=False))
        d = tmp_path / f"rm{s}"
        d.mkdir()
        save_model(m, str(d / "model.safetensors"))
        write_json(d / "meta.json", {"rm": m.describe()})
        folders.append(str(d))
    single = RewardSpec(name="e", path=folders[0]).load()
    assert isinstance(single, TokenRewardModel)
    ens = RewardSpec(name="e", paths=folders, aggregate="min").load()
    assert isinstance(ens, RewardEnsemble) and ens.aggregate == "min" and len(ens.models) == 2
    x = torch.randint(0, 20, (3, 5))
    lens = torch.tensor([5, 5, 3])
    r = ens.reward(x, lens, "happy")
    assert torch.allclose(
        r, torch.minimum(ens.models[0].reward(x, lens, "happy"), ens.models[1].reward(x, lens, "happy"))
    )
    with pytest.raises(ConfigError, match="path or paths"):
        RewardSpec(name="e", path=folders[0], paths=folders)
    with pytest.raises(ConfigError, match="rewards.aggregate"):
        RewardSpec(name="e", paths=folders, aggregate="median")
