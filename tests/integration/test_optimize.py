"""`rrpo optimize` end to end on a tiny policy and reward model made by the test: every algorithm
runs, every trainable parameter moves in one step, resume repeats the losses, two processes equal
one process with accumulation, and bad configs are one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rrpo.cli import main
from rrpo.config import load_config
from rrpo.errors import RrpoError
from rrpo.optimize.trainer import OptimizeConfig, run_optimize
from rrpo.policy.io import load_policy
from rrpo.policy.sft import SFTConfig, run_sft
from rrpo.reward.train import RMTrainConfig, train_rm
from rrpo.runs import OptimizeRunInfo, RunDir
from rrpo.train.loop import latest_checkpoint

from tests.unit.policy_fixtures import make_corpus, sft_overrides
from tests.unit.reward_fixtures import tiny_rm_overrides


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("opt")
    man, shards = make_corpus(root / "data")
    run_sft(load_config(SFTConfig, None, sft_overrides(root / "data", root / "sft", steps=3)))
    rm_cfg = load_config(
        RMTrainConfig,
        None,
        tiny_rm_overrides(man, shards),
    )
    train_rm(rm_cfg, root / "rm")
    return root, man, shards


def cfg_for(setup, out, *extra):
    root, man, shards = setup
    return load_config(
        OptimizeConfig,
        None,
        [
            f"out={out}",
            f"policy={root / 'sft'}",
            f"rewards=[{{name: emo, path: {root / 'rm'}}}]",
            f"prompts.manifest={man}",
            f"prompts.shards={shards}",
            "train.steps=2",
            "train.batch_size=2",
            "train.lr=1e-2",
            "train.progress=false",
            "train.log_every=1",
            "train.bf16=false",
            "train.schedule=constant",
            "sampling.max_ratio=3",
            "sampling.min_ratio=1",
            *extra,
        ],
    )


def losses(run):
    return [m["train/grad_norm"] for m in RunDir(run).read_metrics() if "train/grad_norm" in m]


@pytest.mark.parametrize("algo", ["diffro", "grpo", "reinforce", "sft"])
def test_every_algorithm_runs_and_logs_namespaced_metrics(setup, tmp_path, algo):
    out = run_optimize(cfg_for(setup, tmp_path / algo, f"algo={algo}", "group=2"))
    keys = set(out)
    assert "budget/samples" in keys and "budget/tokens" in keys
    if algo != "sft":
        assert {"reward/emo", "policy/kl_ref", "policy/entropy", "policy/reward"} <= keys
    assert latest_checkpoint(tmp_path / algo).name == "step_2"
    load_policy(tmp_path / algo)  # the run folder reads back as a policy
    info = OptimizeRunInfo.read(tmp_path / algo)  # what audit and report read of the run
    assert (info.algo, info.policy, info.manifest) == (algo, str(setup[0] / "sft"), str(setup[1]))
    assert info.rewards == [{"name": "emo", "path": str(setup[0] / "rm"), "weight": 1.0}]


def test_watch_without_its_hook_is_refused(setup, tmp_path):
    """The judge watch is composed by the verb (rrpo.optimize.commands), not the trainer."""
    with pytest.raises(RrpoError, match="watch.every needs the judge watch"):
        run_optimize(cfg_for(setup, tmp_path / "w", "watch.every=1"))


def test_diffro_moves_every_trainable_parameter_in_one_step(setup, tmp_path):
    root = setup[0]
    before = load_policy(root / "sft")
    run_optimize(cfg_for(setup, tmp_path / "one", "train.steps=1", "beta=0.0"))
    after = load_policy(tmp_path / "one")
    frozen = []
    for (name, a), b in zip(before.named_parameters(), after.parameters()):
        if a.requires_grad and torch.equal(a, b):
            frozen.append(name)
    # rows of tokens never seen in one batch get no gradient: embeddings are exempt row-wise
    assert [n for n in frozen if "embed" not in n] == []


def test_resume_repeats_losses(setup, tmp_path):
    """4 steps straight vs 2 steps, then resumed to 4 from the step-2 checkpoint (constant learning
    rate, so the shorter first run follows the same trajectory): the same losses, sampling included."""
    run_optimize(cfg_for(setup, tmp_path / "full", "train.steps=4"))
    run_optimize(cfg_for(setup, tmp_path / "part", "train.steps=2"))
    run_optimize(cfg_for(setup, tmp_path / "part", "train.steps=4"))
    assert len(losses(tmp_path / "part")) == 4
    assert losses(tmp_path / "part") == pytest.approx(losses(tmp_path / "full"), rel=1e-6)


@pytest.mark.slow  # 20 s (two torchrun launches; measured with --durations on 2 shared cores)
def test_two_processes_equal_one_with_accumulation(setup, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    root, man, shards = setup
    common = [
        f"policy={root / 'sft'}",
        f"rewards=[{{name: emo, path: {root / 'rm'}}}]",
        f"prompts.manifest={man}",
        "train.steps=2",
        "train.batch_size=2",
        "train.lr=1e-2",
        "train.progress=false",
        "train.bf16=false",
        "train.schedule=constant",
        "sampling.max_ratio=3",
        "sampling.min_ratio=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r1 = subprocess.run(
        [sys.executable, "-m", "rrpo", "optimize", f"out={tmp_path / 'one'}", "train.grad_accum=2", *common],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "rrpo",
            "optimize",
            f"out={tmp_path / 'two'}",
            *common,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r2.returncode == 0, r2.stderr[-2000:]
    a, b = load_policy(tmp_path / "one"), load_policy(tmp_path / "two")
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-5), name


def test_bad_configs_are_one_line_errors(setup, tmp_path, capsys):
    root, man, _ = setup
    assert main(["optimize", f"out={tmp_path / 'x'}", f"policy={root / 'sft'}", f"prompts.manifest={man}"]) == 2
    assert "needs at least one reward model" in capsys.readouterr().err
    assert (
        main(
            [
                "optimize",
                f"out={tmp_path / 'x'}",
                f"policy={root / 'sft'}",
                f"prompts.manifest={man}",
                f"rewards=[{{path: {root / 'rm'}}}]",
                "prompts.emotions=[sad]",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "sad" in err and "Traceback" not in err
    assert main(["optimize", "algo=ppo"]) == 2
    assert "algo" in capsys.readouterr().err


def test_diffro_with_an_ensemble_term(setup, tmp_path):
    """A `rewards` term with several folders and a pessimistic aggregate trains and logs like one model."""
    root, man, shards = setup
    rm2 = tmp_path / "rm2"
    train_rm(
        load_config(
            RMTrainConfig,
            None,
            tiny_rm_overrides(man, shards, "train.seed=7"),
        ),
        rm2,
    )
    out = tmp_path / "ens"
    cfg = cfg_for(
        setup,
        out,
        f"rewards=[{{name: emo, paths: [{root / 'rm'}, {rm2}], aggregate: mean_minus_std}}]",
        "algo=diffro",
    )
    assert cfg.rewards[0].paths and cfg.rewards[0].aggregate == "mean_minus_std"
    run_optimize(cfg)
    logged = [m for m in RunDir(out).read_metrics() if "reward/emo" in m]
    assert logged and all(torch.isfinite(torch.tensor(m["reward/emo"])) for m in logged)
