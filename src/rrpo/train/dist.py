"""Data parallelism on an existing launcher: ``torchrun`` (or ``accelerate launch``) sets RANK,
WORLD_SIZE, MASTER_ADDR/PORT; :func:`init_from_env` joins the process group (gloo on CPU, nccl on
GPU). The training loop then shards micro-batches by rank and averages gradients, so the same
command runs as one process or many::

    rrpo optimize --config C                               # one process
    torchrun --nproc-per-node 4 -m rrpo optimize --config C   # four, same result as grad_accum x4
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_env(backend: str | None = None) -> tuple[int, int]:
    """Join the process group if launched by torchrun/accelerate; return (rank, world size)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
