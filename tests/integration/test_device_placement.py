"""The optimiser and the judge watch with the policy on a second device (tests/unit/fake_device.py):
sampled ids live on the CPU after generation, so every tensor that meets the GPU-side logits must
be moved first. Before the fix GRPO and REINFORCE crashed on CUDA with exactly the error the fake
device raises here."""

from __future__ import annotations

import contextlib

import pytest
import torch

from rrpo.optimize.trainer import run_optimize

from tests.integration.test_optimize import cfg_for, setup  # noqa: F401 (fixture)
from tests.unit.fake_device import DEVICE, Elsewhere, OtherDevice


@pytest.fixture
def elsewhere(monkeypatch):
    """Run on the fake device: no autocast (it does not know it), checkpoints and the final
    policy saved without weights (safetensors reads storage pointers)."""
    import rrpo.policy.io as pio
    import rrpo.train.loop as loop

    monkeypatch.setattr(loop, "autocast", lambda device, enabled: contextlib.nullcontext())
    monkeypatch.setattr(loop, "save_checkpoint", lambda *a, **k: None)
    real = pio.save_policy
    monkeypatch.setattr(pio, "save_policy", lambda policy, folder, weights=True: real(policy, folder, weights=False))
    with OtherDevice():
        yield


def test_the_fake_device_raises_like_cuda():
    with OtherDevice():
        x = torch.ones(3).to(DEVICE)
        assert isinstance(x, Elsewhere) and x.device == DEVICE and (x + 1).sum().item() == 6.0
        with pytest.raises(RuntimeError, match="same device"):
            x + torch.ones(3)
        assert (x * torch.tensor(2.0)).sum().item() == 6.0  # 0-dim CPU tensors mix, as on CUDA


@pytest.mark.parametrize("algo", ["grpo", "reinforce", "diffro"])
def test_sampled_objectives_run_with_the_policy_on_another_device(setup, tmp_path, elsewhere, algo):  # noqa: F811
    """The same seeded step on the second device and on the CPU gives the same figures: a tensor left on
    the wrong device would crash there, and a wrong move (a mask or ids taken from another batch row,
    a reward read off the wrong sequence) would change them."""
    extra = (f"algo={algo}", "group=2", "train.steps=1")
    away = run_optimize(cfg_for(setup, tmp_path / algo, *extra, "train.device=meta"))
    here = run_optimize(cfg_for(setup, tmp_path / f"{algo}_cpu", *extra, "train.device=cpu"))
    keys = [k for k in here if k.startswith(("reward/", "policy/", "loss")) and isinstance(here[k], float)]
    assert "reward/emo" in keys and "policy/kl_ref" in keys, sorted(here)
    for k in keys:
        assert away[k] == pytest.approx(here[k], rel=1e-4, abs=1e-6), k


def test_scorer_scores_a_policy_on_another_device(monkeypatch):
    """Scorer.score (rrpo audit and the judge watch) with the policy, the start policy and the
    reward model on the second device: the KL mask and the reward model's ids are moved; the
    codec gets CPU ids. Judge and codec are stand-ins (the device question ends at the tokens)."""
    import numpy as np

    import rrpo.audit.scorer as scorer
    from rrpo.audit.scorer import AuditPrompts, Scorer
    from rrpo.policy.settings import SamplingConfig
    from rrpo.reward.model import ModelConfig, TokenRewardModel

    from tests.unit.test_policy import small_policy

    class Codec:
        sampling_rate, frame_rate = 16000, 25.0

        def decode(self, ids, profile=None):
            assert isinstance(ids, np.ndarray)
            return np.zeros(640 * len(ids), np.float32)

    seen = {}

    def fake_audit_audio(
        generated,
        references,
        judge,
        judge_stats=None,
        typicality=None,
        recognizer=None,
        phone_judge=None,
        per_utterance=False,
    ):
        seen["n"] = len(generated)
        return {"judge": {"target_prob": 0.5, "accuracy": 0.5}}

    monkeypatch.setattr(scorer, "audit_audio", fake_audit_audio)
    pol, start = small_policy(), small_policy(seed=1)
    rm = TokenRewardModel(
        20, ["angry", "happy"], ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, pool_dim=8, dropout=0.0)
    ).eval()
    sc = Scorer.__new__(Scorer)
    sc.start, sc.rms, sc.rm_names, sc.codec, sc.judge = start, [rm], ["emo"], Codec(), object()
    sc.prompts, sc.sampling, sc.seed, sc.recognizer, sc.bf16 = (
        AuditPrompts(),
        SamplingConfig(max_ratio=2),
        1234,
        False,
        False,
    )
    sc.rows = [
        {"id": f"r{i}", "text": t, "language": "zh", "speaker": "s1", "emotion": e, "ref_id": None}
        for i, (t, e) in enumerate([("今天天气好", "angry"), ("我们走吧", "happy")])
    ]
    sc.references, sc.stats, sc.typicality, sc.emotions = {}, None, None, ["angry", "happy"]
    sc.phone_judge = None  # no PER
    sc.profiles = {"s1": None}  # the fake codec has no speaker profiles
    on_cpu = sc.score(pol)
    with OtherDevice():
        for m in (pol, start, rm):
            m.to(DEVICE)
        assert isinstance(pol.llm_decoder.weight, Elsewhere)
        away = sc.score(pol)
    assert seen["n"] == 2
    assert away["kl"] == pytest.approx(on_cpu["kl"], rel=1e-5)
    assert away["proxy"]["emo"] == pytest.approx(on_cpu["proxy"]["emo"], rel=1e-5)
