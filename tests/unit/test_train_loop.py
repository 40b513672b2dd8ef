"""The one training loop: resume reproduces an uninterrupted run, accumulation equals a bigger
batch, every trainable parameter moves, checkpoints describe themselves."""

import json

import pytest
import torch
from torch import nn

from rrpo.errors import RrpoError
from rrpo.runs import RunDir
from rrpo.train.loop import EpochBatches, TrainConfig, latest_checkpoint, load_weights, train

X = torch.randn(64, 5, generator=torch.Generator().manual_seed(1))
Y = X @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.1


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(5, 8)
        self.out = nn.Linear(8, 1)
        self.drop = nn.Dropout(0.2)

    def forward(self, x):
        return self.out(self.drop(torch.tanh(self.lin(x)))).squeeze(-1)


def objective(model):
    def f(batch, step):
        x, y = batch
        loss = ((model(x).float() - y) ** 2).mean()
        return loss, {"toy/loss": loss.item()}

    return f


def collate(idx):
    return X[idx], Y[idx]


def run(tmp, steps, resume=True, on_step=None, **kw):
    cfg = TrainConfig(
        steps=steps,
        batch_size=kw.pop("batch_size", 8),
        lr=1e-2,
        log_every=1,
        ckpt_every=kw.pop("ckpt_every", 0),
        bf16=False,
        progress=False,
        warmup_steps=2,
        **kw,
    )
    model = Net()
    rd = RunDir.create(tmp, cfg, ["test"])
    train(
        model,
        objective(model),
        EpochBatches(len(X), cfg.batch_size, collate, seed=cfg.seed),
        cfg,
        rd,
        resume=resume,
        on_step=on_step,
    )
    return model, rd


def losses(rd):
    return [m["toy/loss"] for m in rd.read_metrics() if "toy/loss" in m]


def test_resume_reproduces_uninterrupted_run(tmp_path):
    _, full = run(tmp_path / "full", 12)

    # interrupted: a crash at step 7, after the checkpoint at step 5; then resume the same run dir
    def crash(step, metrics):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "part", 12, ckpt_every=5, on_step=crash)
    assert latest_checkpoint(tmp_path / "part").name == "step_5"
    model, part = run(tmp_path / "part", 12, ckpt_every=5)
    assert losses(part) == pytest.approx(losses(full), rel=0, abs=1e-7)
    assert len(losses(part)) == 12
    ref = Net()
    load_weights(ref, latest_checkpoint(full.path) / "model.safetensors")
    for a, b in zip(ref.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_every_trainable_parameter_changes(tmp_path):
    before = Net()
    model, _ = run(tmp_path / "r", 1)
    for (name, a), b in zip(before.named_parameters(), model.parameters()):
        assert not torch.equal(a, b), name


def test_grad_accum_equals_larger_batch(tmp_path):
    """Two micro-batches of 4 with accumulation 2 give the same updates as one batch of 8
    (a dropout-free model, unshuffled data: batch k of size 8 = micro-batches 2k, 2k+1 of size 4)."""

    class Lin(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.w = nn.Linear(5, 1)

        def forward(self, x):
            return self.w(x).squeeze(-1)

    def go(path, bs, accum):
        cfg = TrainConfig(
            steps=3, batch_size=bs, grad_accum=accum, lr=1e-2, bf16=False, progress=False, schedule="constant"
        )
        m = Lin()
        batches = EpochBatches(len(X), bs, collate, shuffle=False)
        train(m, objective(m), batches, cfg, RunDir.create(path, cfg, ["t"]))
        return m

    a, b = go(tmp_path / "a", 8, 1), go(tmp_path / "b", 4, 2)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_checkpoint_layout_and_meta(tmp_path):
    _, rd = run(tmp_path / "r", 4, ckpt_every=2)
    names = sorted(p.name for p in rd.checkpoints.iterdir())
    assert names == ["step_2", "step_4"]
    ck = latest_checkpoint(rd.path)
    meta = json.loads((ck / "meta.json").read_text())
    assert meta["step"] == 4 and meta["train"]["lr"] == 1e-2 and "torch" in meta["versions"]
    assert (ck / "trainer_state.pt").exists()
    assert (rd.path / "config.yaml").exists() and (rd.path / "command.txt").read_text().strip() == "test"


def test_keep_checkpoints(tmp_path):
    _, rd = run(tmp_path / "r", 6, ckpt_every=2, keep_checkpoints=1)
    assert [p.name for p in rd.checkpoints.iterdir()] == ["step_6"]


def test_nan_loss_is_a_clear_error(tmp_path):
    model = Net()
    cfg = TrainConfig(steps=2, batch_size=4, bf16=False, progress=False)

    def bad(batch, step):
        return torch.tensor(float("nan"), requires_grad=True), {}

    with pytest.raises(RrpoError, match="loss became nan at step 0"):
        train(model, bad, EpochBatches(8, 4, collate), cfg, RunDir.create(tmp_path, cfg, ["t"]))


def test_epoch_batches_cover_each_epoch_once():
    eb = EpochBatches(10, 3, lambda idx: idx, seed=5)
    epoch0 = sum((eb(k) for k in range(3)), [])
    assert len(set(epoch0)) == 9 and eb.per_epoch == 3
    assert eb(0) == EpochBatches(10, 3, lambda idx: idx, seed=5)(0)
    assert eb(3) != eb(0) or eb(4) != eb(1)


def test_bf16_autocast_trains(tmp_path):
    cfg = TrainConfig(steps=3, batch_size=8, lr=1e-2, bf16=True, progress=False)
    model = Net()
    out = train(model, objective(model), EpochBatches(len(X), 8, collate), cfg, RunDir.create(tmp_path, cfg, ["t"]))
    assert out["toy/loss"] > 0


def test_deterministic_kernels_follow_the_config_and_are_restored(tmp_path):
    """Inside train() the mode follows train.deterministic; afterwards the caller's setting is back
    (also after an error)."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    seen = []

    def spy(step, metrics):
        seen.append(torch.are_deterministic_algorithms_enabled())

    try:
        for caller in (False, True):
            torch.use_deterministic_algorithms(caller)
            seen.clear()
            run(tmp_path / f"on{caller}", 1, deterministic=True, on_step=spy)
            assert seen == [True] and torch.are_deterministic_algorithms_enabled() is caller
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
            seen.clear()
            run(tmp_path / f"off{caller}", 1, deterministic=False, on_step=spy)
            assert seen == [False] and torch.are_deterministic_algorithms_enabled() is caller

        def boom(step, metrics):
            raise KeyboardInterrupt

        torch.use_deterministic_algorithms(False)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "err", 2, deterministic=True, on_step=boom)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_resume_refuses_a_changed_schedule(tmp_path, capsys):
    """A checkpoint at step 3 of a 6-step cosine run at lr 1e-2: resuming with another lr, step
    count or schedule is refused with one line naming the checkpoint's meta.json, and nothing is
    trained (no step-4 metrics, no new checkpoint)."""
    run(tmp_path / "r", 3, ckpt_every=3)  # steps=3: checkpoint step_3 recorded with steps=3
    meta = tmp_path / "r" / "checkpoints" / "step_3" / "meta.json"
    for kw, text in (
        ({"lr": 5e-3}, "train.lr 0.01 -> 0.005"),
        ({"steps": 6}, "train.steps 3 -> 6"),
        ({"schedule": "linear"}, "train.schedule 'cosine' -> 'linear'"),
    ):
        cfg = TrainConfig(
            **{**dict(steps=3, batch_size=8, lr=1e-2, log_every=1, bf16=False, progress=False, warmup_steps=2), **kw}
        )
        model = Net()
        with pytest.raises(RrpoError) as e:
            train(model, objective(model), EpochBatches(len(X), 8, collate), cfg, RunDir(tmp_path / "r"))
        msg = e.value.format()
        assert text in msg and str(meta) in msg and "\n" not in msg
    assert [d.name for d in (tmp_path / "r" / "checkpoints").iterdir()] == ["step_3"]
    assert max(m["step"] for m in RunDir(tmp_path / "r").read_metrics()) == 3


def test_resume_extends_a_constant_schedule_and_warns_on_other_changes(tmp_path, caplog):
    """Under schedule=constant, more steps extend the run (warned); a changed seed is allowed with a
    warning that the run now differs from an uninterrupted one; log cadence changes say nothing."""
    run(tmp_path / "c", 3, ckpt_every=3, schedule="constant")
    with caplog.at_level("WARNING", logger="rrpo.train.loop"):
        run(tmp_path / "c", 5, schedule="constant")
    assert "train.steps 3 -> 5" in caplog.text
    assert latest_checkpoint(tmp_path / "c").name == "step_5"
    caplog.clear()
    with caplog.at_level("WARNING", logger="rrpo.train.loop"):
        run(tmp_path / "c", 5, schedule="constant", seed=1)
    assert "train.seed 0 -> 1" in caplog.text and "differ" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="rrpo.train.loop"):
        run(tmp_path / "c", 5, schedule="constant", ckpt_every=2)
    assert caplog.text == ""
