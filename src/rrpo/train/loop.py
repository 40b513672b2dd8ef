"""ONE training loop: accumulation, bf16 autocast, clipping, eval and checkpoint cadence, resume.

Trainers differ only in their objective, a callable ``objective(batch, step) -> (loss, metrics)``
where ``loss`` is the mean over the micro-batch and ``metrics`` maps namespaced names
(``"rm/loss"``) to floats. The loop owns everything else.

Determinism and resume: micro-batch number ``k`` is always the same batch (``batches(k)``), and the
global torch RNG is re-seeded from ``(seed, k)`` before every micro-batch, so a resumed run repeats
the losses of an uninterrupted one exactly (dropout, mixup and Gumbel noise included), and so do
several processes against one that accumulates their micro-batches.

Data parallelism: when ``torch.distributed`` is initialised (torchrun / accelerate launch), rank r
takes micro-batches ``k·world + r`` and gradients are averaged across ranks before the step, so
W processes with accumulation A equal one process with accumulation W·A.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from rrpo.config import check, option, to_dict
from rrpo.errors import RrpoError
from rrpo.io import atomic_path, write_json
from rrpo.precision import bf16_autocast
from rrpo.runs import RunDir, git_revision

log = logging.getLogger(__name__)

Objective = Callable[[Any, int], "tuple[torch.Tensor, dict[str, float]]"]


@dataclass
class TrainConfig:
    steps: int = option(1000, "optimizer steps in all")
    batch_size: int = option(16, "examples per micro-batch (per process)")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    lr: float = option(3e-4, "peak learning rate (AdamW)")
    weight_decay: float = option(0.01, "AdamW weight decay")
    betas: tuple[float, float] = option((0.9, 0.98), "AdamW betas")
    warmup_steps: int = option(0, "linear warm-up steps")
    schedule: Literal["constant", "cosine", "linear"] = option("cosine", "learning-rate decay after warm-up")
    min_lr_ratio: float = option(0.1, "final learning rate as a fraction of lr (cosine/linear)")
    clip_grad_norm: float = option(1.0, "clip the global gradient norm to this (0 = off)")
    bf16: bool = option(
        True,
        "bf16 autocast for forward passes where the device computes bf16 natively (GPUs, CPUs with "
        "AVX512-BF16 or AMX); other CPUs emulate bf16 and run fp32 instead (rrpo.precision)",
    )
    log_every: int = option(10, "log training metrics every N steps")
    eval_every: int = option(0, "evaluate every N steps (0 = only at the end)")
    ckpt_every: int = option(0, "save a checkpoint every N steps (0 = only at the end)")
    keep_checkpoints: int = option(0, "keep only the newest N checkpoints (0 = keep all)")
    seed: int = option(0, "seed for data order, initialisation and in-loss randomness")
    device: str = option("auto", "cpu, cuda, cuda:1, ... or auto")
    progress: bool = option(True, "show a progress bar")
    deterministic: bool = option(
        True,
        "deterministic kernels (torch.use_deterministic_algorithms): without them two "
        "runs on a multi-threaded CPU differ in the last bits, then in results",
    )

    def __post_init__(self):
        check(self.steps >= 0, "train.steps", "must be >= 0")
        check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        check(self.grad_accum >= 1, "train.grad_accum", "must be >= 1")
        check(self.lr > 0, "train.lr", "must be > 0")
        check(0 <= self.min_lr_ratio <= 1, "train.min_lr_ratio", "must be in [0, 1]")
        check(self.clip_grad_norm >= 0, "train.clip_grad_norm", "must be >= 0")
        for k in ("log_every", "eval_every", "ckpt_every", "keep_checkpoints", "warmup_steps"):
            check(getattr(self, k) >= 0, f"train.{k}", "must be >= 0")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise RrpoError(f"unknown device '{name}'") from None


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast where ``device`` computes bf16 natively (see :mod:`rrpo.precision`), else fp32."""
    return bf16_autocast(device, enabled)


class EpochBatches:
    """Micro-batch ``k`` of a shuffled, epoch-wise pass over ``n`` examples, reproducibly.

    ``EpochBatches(n, b, collate, seed)(k)`` returns ``collate(indices)`` for the k-th batch of
    size ``b`` (the last partial batch of an epoch is dropped when ``n >= b``).
    """

    def __init__(
        self, n: int, batch_size: int, collate: Callable[[list[int]], Any], seed: int = 0, shuffle: bool = True
    ):
        if n <= 0:
            raise RrpoError("no training examples")
        self.n, self.b, self.collate, self.seed, self.shuffle = n, min(batch_size, n), collate, seed, shuffle
        self.per_epoch = max(1, n // self.b)
        self._perm_epoch, self._perm = -1, None

    def indices(self, k: int) -> list[int]:
        epoch, i = divmod(k, self.per_epoch)
        if epoch != self._perm_epoch:
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
                self._perm = torch.randperm(self.n, generator=g).tolist()
            else:
                self._perm = list(range(self.n))
            self._perm_epoch = epoch
        return self._perm[i * self.b : (i + 1) * self.b]

    def __call__(self, k: int) -> Any:
        return self.collate(self.indices(k))


def _lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant" or cfg.steps <= cfg.warmup_steps:
            return 1.0
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        t = min(max(t, 0.0), 1.0)
        if cfg.schedule == "cosine":
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        return 1.0 - (1 - cfg.min_lr_ratio) * t

    return f


# ---------------------------------------------------------------------------- checkpoints


def save_weights(module: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Save a module's state as safetensors (shared tensors handled), atomically."""
    from safetensors.torch import save_model

    with atomic_path(path) as tmp:
        save_model(module, str(tmp), metadata=metadata)


def load_weights(module: nn.Module, path: str | Path, strict: bool = True) -> None:
    """Load safetensors weights into ``module``; mismatches become one clear error."""
    from safetensors.torch import load_model

    path = Path(path)
    if not path.exists():
        raise RrpoError("weights file not found", path)
    try:
        missing, unexpected = load_model(module, str(path), strict=strict, device="cpu")
    except RuntimeError as e:
        msg = " ".join(str(e).split())
        raise RrpoError(f"weights do not fit the model ({msg[:300]})", path) from None
    except Exception as e:  # safetensors header errors
        raise RrpoError(f"not a readable safetensors file ({str(e)[:200]})", path) from None


def checkpoint_dirs(run_path: str | Path) -> list[Path]:
    ck = Path(run_path) / "checkpoints"
    if not ck.is_dir():
        return []
    dirs = [
        d
        for d in ck.iterdir()
        if d.is_dir()
        and re.fullmatch(r"step_\d+", d.name)
        and (d / "model.safetensors").exists()
        and (d / "meta.json").exists()
    ]
    return sorted(dirs, key=lambda d: int(d.name.split("_")[1]))


def latest_checkpoint(run_path: str | Path) -> Path | None:
    dirs = checkpoint_dirs(run_path)
    return dirs[-1] if dirs else None


def _versions() -> dict[str, str]:
    import numpy

    import rrpo

    return {
        "rrpo": rrpo.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def save_checkpoint(run: RunDir, step: int, model: nn.Module, optimizer, scheduler, meta: dict) -> Path:
    final = run.checkpoints / f"step_{step}"
    tmp = run.checkpoints / f".step_{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_weights(model, tmp / "model.safetensors")
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        },
        tmp / "trainer_state.pt",
    )
    write_json(tmp / "meta.json", {"step": step, "versions": _versions(), "git": git_revision(), **meta})
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


# ---------------------------------------------------------------------------- the loop

#: TrainConfig keys that shape the learning-rate schedule: a resumed run refuses a change of any of
#: them (its optimizer and scheduler state were made under the old values; continuing silently would
#: ignore a new lr or bend the decay curve mid-run). ``steps`` is allowed to change under
#: ``schedule=constant``, where it only extends or shortens a flat run.
SCHEDULE_KEYS = ("lr", "steps", "warmup_steps", "schedule", "min_lr_ratio")
#: TrainConfig keys that change nothing a resumed run computes (cadence, display, placement).
_NEUTRAL_KEYS = {"log_every", "eval_every", "ckpt_every", "keep_checkpoints", "progress", "device"}


def check_resume(ck: Path, cfg: TrainConfig) -> None:
    """Compare the checkpoint's ``train`` settings with ``cfg`` before resuming from ``ck``.

    A changed schedule (:data:`SCHEDULE_KEYS`) is refused with one line naming the checkpoint, the
    keys and both values; ``steps`` alone may change when the schedule is constant (a warning says
    so). Any other changed setting that affects results (``seed``, ``batch_size``, ``bf16``, ...)
    is allowed with a warning: the resumed run then differs from an uninterrupted one."""
    meta_path = ck / "meta.json"
    try:
        old = json.loads(meta_path.read_text()).get("train")
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict):
        log.warning("%s records no train settings; resuming without checking the schedule", meta_path)
        return
    new = to_dict(cfg)
    changed = {k: (old[k], new[k]) for k in new if k in old and old[k] != new[k] and k not in _NEUTRAL_KEYS}
    if set(changed) == {"steps"} and cfg.schedule == "constant" and old.get("schedule") == "constant":
        log.warning(
            "resuming %s with train.steps %s -> %s (constant schedule: the run is extended or cut)",
            ck,
            *changed["steps"],
        )
        return
    sched = {k: v for k, v in changed.items() if k in SCHEDULE_KEYS}
    if sched:
        what = ", ".join(f"train.{k} {a!r} -> {b!r}" for k, (a, b) in sched.items())
        raise RrpoError(
            f"resume would change the learning-rate schedule ({what}); put the old values back to "
            "resume, or give a new output folder to start a new run",
            meta_path,
        )
    if changed:
        what = ", ".join(f"train.{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        log.warning("resuming %s with changed settings (%s): the run will differ from an uninterrupted one", ck, what)


def train(
    model: nn.Module,
    objective: Objective,
    batches: Callable[[int], Any],
    cfg: TrainConfig,
    run: RunDir,
    *,
    evaluate: Callable[[], dict[str, float]] | None = None,
    meta: dict | None = None,
    params: Sequence[nn.Parameter] | None = None,
    resume: bool = True,
    on_step: Callable[[int, dict], bool | None] | None = None,
) -> dict[str, float]:
    """Optimise ``model``'s trainable parameters on ``objective``; return the last metrics.

    ``batches(k)`` gives micro-batch k. ``evaluate()`` runs every ``eval_every`` steps and at the
    end (under no_grad, model in eval mode). ``meta`` goes into every checkpoint's meta.json
    (e.g. model config, manifest hashes). ``on_step(step, metrics)`` returning True stops early
    (a checkpoint is written first). With ``resume``, the newest checkpoint of ``run`` is loaded
    (after :func:`check_resume`). torch's deterministic-algorithms mode (``train.deterministic``)
    holds only while ``train`` runs: the caller's setting is put back on return or error.
    """
    flags = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if cfg.deterministic and cublas is None:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # what deterministic cuBLAS needs
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)
    try:
        return _train(
            model,
            objective,
            batches,
            cfg,
            run,
            evaluate=evaluate,
            meta=meta,
            params=params,
            resume=resume,
            on_step=on_step,
        )
    finally:
        torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def _train(model, objective, batches, cfg, run, *, evaluate, meta, params, resume, on_step) -> dict[str, float]:
    rank, world_size = world()
    device = resolve_device(cfg.device)
    model.to(device)
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise RrpoError("the model has no trainable parameters")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=cfg.betas,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    meta = {"train": to_dict(cfg), **(meta or {})}

    start = 0
    ck = latest_checkpoint(run.path) if resume else None
    if ck is not None:
        check_resume(ck, cfg)
        load_weights(model, ck / "model.safetensors")
        state = torch.load(ck / "trainer_state.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        if rank == 0:
            run.truncate_metrics(start)
            log.info("resumed from %s (step %d)", ck, start)
    model.to(device)

    bar = None
    if cfg.progress and rank == 0 and cfg.steps > start:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=run.path.name, unit="step", dynamic_ncols=True)

    last: dict[str, float] = {}
    t0 = time.perf_counter()
    step = start
    stop = False
    while step < cfg.steps and not stop:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            k = (step * cfg.grad_accum + micro) * world_size + rank
            # randomness inside the objective (dropout, mixup, sampling) depends on the micro-batch
            # number alone: resume is exact and W processes equal one process accumulating W
            torch.manual_seed(cfg.seed * 1_000_003 + k)
            batch = batches(k)
            batch = _to_device(batch, device)
            with autocast(device, cfg.bf16):
                loss, metrics = objective(batch, step)
            if not torch.isfinite(loss):
                raise RrpoError(f"loss became {loss.item()} at step {step}; lower train.lr or check the data", run.path)
            (loss.float() / cfg.grad_accum).backward()
            for key, v in metrics.items():
                sums[key] = sums.get(key, 0.0) + float(v) / cfg.grad_accum
        if world_size > 1:
            # a parameter no rank touched keeps grad None, as it would in one process
            touched = torch.tensor([float(p.grad is not None) for p in params])
            dist.all_reduce(touched, op=dist.ReduceOp.SUM)
            for p, t in zip(params, touched.tolist()):
                if t == 0:
                    continue
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(world_size)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm if cfg.clip_grad_norm > 0 else math.inf)
        optimizer.step()
        scheduler.step()
        step += 1
        sums["train/grad_norm"] = float(grad_norm)
        sums["train/lr"] = scheduler.get_last_lr()[0]
        last = sums
        if bar is not None:
            bar.update(1)
            shown = {k.split("/")[-1]: f"{v:.4g}" for k, v in list(sums.items())[:3]}
            bar.set_postfix(shown, refresh=False)
        if rank == 0 and (step % max(1, cfg.log_every) == 0 or step == cfg.steps):
            run.log({**sums, "train/elapsed_s": round(time.perf_counter() - t0, 3)}, step)
        if on_step is not None and on_step(step, sums):
            stop = True
        if evaluate is not None and (stop or step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0)):
            model.eval()
            with torch.no_grad():
                ev = evaluate()
            if rank == 0:
                run.log(ev, step)
            last = {**last, **ev}
        if rank == 0 and (stop or step == cfg.steps or (cfg.ckpt_every and step % cfg.ckpt_every == 0)):
            save_checkpoint(run, step, model, optimizer, scheduler, meta)
            if cfg.keep_checkpoints:
                for old in checkpoint_dirs(run.path)[: -cfg.keep_checkpoints]:
                    shutil.rmtree(old)
        if world_size > 1:
            dist.barrier()
    if bar is not None:
        bar.close()
    return last


def _to_device(batch: Any, device: torch.device) -> Any:
    if device.type == "cpu":
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    if hasattr(batch, "to"):
        return batch.to(device)
    return batch
