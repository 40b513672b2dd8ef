"""Run by test_distributed.py: a toy model trained by the one loop, under torchrun or alone."""

import sys

import torch
from torch import nn

from rrpo.runs import RunDir
from rrpo.train.dist import init_from_env, shutdown
from rrpo.train.loop import EpochBatches, TrainConfig, train

out, accum = sys.argv[1], int(sys.argv[2])
rank, world = init_from_env()
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
X = torch.randn(48, 6, generator=g)
Y = X @ torch.randn(6, generator=g)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))


def objective(batch, step):
    x, y = batch
    loss = ((model(x).squeeze(-1) - y) ** 2).mean()
    return loss, {"toy/loss": loss.item()}


cfg = TrainConfig(steps=5, batch_size=4, grad_accum=accum, lr=1e-2, bf16=False, progress=False, schedule="constant")
train(
    model,
    objective,
    EpochBatches(len(X), 4, lambda i: (X[i], Y[i]), shuffle=False),
    cfg,
    RunDir.create(out, cfg, ["dist_toy"]),
)
if rank == 0:
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, f"{out}/final.pt")
shutdown()
