"""A second, differently built emotion judge: a small convolutional network on log-mel frames.

The eGeMAPS judge (:mod:`rrpo.audit.judge`) reads 88 knowledge-based functionals with a linear
model; this one reads the frame-level spectrum with a learnt non-linear model. A hacking claim that
only one of them supports is flagged by the experiment (:mod:`rrpo.audit.agreement`).

* **Features**: 40-band log-mel power (dB) on 25 ms frames every 10 ms at 16 kHz, floored 80 dB
  below the utterance's loudest band-frame (:func:`rrpo.audit.features.log_mel_frames`).
* **Per-speaker normalisation**: each band is z-scored with the mean and std over all frames of
  the speaker's utterances (the batch's groups, or fixed ``stats`` from ``group_stats``), exactly
  the contract of the eGeMAPS judge, so ``rrpo audit`` calibrates it on the starting policy too.
* **Network**: three 1-D convolutions over time (kernel 5; the first with stride 2, the others
  with dilations 2 and 4; ReLU), mean and standard deviation pooled over the valid frames, dropout,
  a linear layer to the classes.
* **Training** (``rrpo judge train-mel``): the project's training loop (:mod:`rrpo.train.loop`;
  checkpoints, exact resume); random crops of ``max_frames`` with SpecAugment masks; class-balanced cross-entropy whose
  softmax runs only over the classes the utterance's corpus has (``class_masking``). Judging uses
  the whole utterance.

Stored as ``judge.json`` (``kind: logmel-cnn``, classes, network sizes) and ``model.safetensors``.
Importing this module registers the kind with :func:`rrpo.audit.judge.register_judge_kind` (the
``rrpo`` command line always does), so ``load_judge`` opens such folders.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from rrpo.audit.features import log_mel_frames
from rrpo.audit.judge import register_judge_kind
from rrpo.config import check, option, section
from rrpo.data.emotions import ESD_CLASSES, check_classes
from rrpo.data.manifest import Selection
from rrpo.errors import RrpoError
from rrpo.train.loop import TrainConfig

log = logging.getLogger(__name__)

KIND_LOGMEL = "logmel-cnn"


@dataclass
class MelJudgeConfig(Selection):
    """Training settings of the log-mel network judge (``rrpo judge train-mel``) and the
    :class:`~rrpo.data.manifest.Selection` of its training records."""

    classes: list[str] = option(list(ESD_CLASSES), "emotion classes (others in the manifests are dropped)")
    normalization: Literal["speaker"] = option("speaker", "per-speaker band standardisation (the only mode)")
    min_group: int = option(10, "fewest utterances a speaker group needs for batch normalisation statistics")
    small_groups: Literal["error", "drop"] = option(
        "drop", "a training speaker with fewer than min_group utterances: stop with an error, or leave it out"
    )
    class_masking: bool = option(True, "an utterance's softmax runs only over the classes its corpus has")
    min_group_classes: int = option(1, "leave out training speakers whose utterances cover fewer classes than this")
    n_mels: int = option(40, "log-mel bands")
    max_frames: int = option(300, "training crop in 10 ms frames (judging uses the whole utterance)")
    channels: int = option(64, "convolution channels")
    dropout: float = option(0.3, "dropout before the output layer")
    freq_masks: int = option(
        2, "SpecAugment while training: this many bands of up to 8 log-mel bins set to 0 (the normalised mean)"
    )
    time_masks: int = option(2, "SpecAugment while training: this many spans of up to 20 frames set to 0")
    train: TrainConfig = section(TrainConfig, "the training loop (settings used: configs/judge_mel.yaml)")

    def __post_init__(self):
        check(self.min_group >= 2, "min_group", "must be at least 2")
        check(self.n_mels >= 8, "n_mels", "must be at least 8")
        check(self.max_frames >= 20, "max_frames", "must be at least 20 (0.2 s)")
        check(self.channels >= 4, "channels", "must be at least 4")
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        try:
            check_classes(self.classes)
        except RrpoError as e:
            check(False, "classes", e.reason)


def frames_of(items: Sequence[tuple[np.ndarray, int]], n_mels: int, progress: bool = False) -> list[np.ndarray]:
    it = items
    if progress:
        from tqdm import tqdm

        it = tqdm(items, desc="log-mel", unit="utt", leave=False)
    return [log_mel_frames(a, sr, n_mels) for a, sr in it]


def speaker_stats(frames: Sequence[np.ndarray], groups: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per group: (mean (M,), std (M,)) over every frame of the group's utterances."""
    out = {}
    g = np.asarray(groups).astype(str)
    for k in np.unique(g):
        f = np.concatenate([frames[i] for i in np.flatnonzero(g == k)])
        out[str(k)] = (f.mean(0), np.maximum(f.std(0), 1e-3))
    return out


def normalise(
    frames: Sequence[np.ndarray], groups: Sequence[str] | None, stats: dict | None, min_group: int
) -> list[np.ndarray]:
    """Per-group z-scored frames: fixed ``stats`` where given, else the group's own (≥ ``min_group`` utterances)."""
    g = np.full(len(frames), "*", dtype=object) if groups is None else np.asarray(groups, dtype=object)
    g = g.astype(str)
    st = None if stats is None else {str(k): v for k, v in stats.items()}
    if st is not None and groups is None and len(st) == 1:
        st = {"*": next(iter(st.values()))}
    out: list[np.ndarray] = [None] * len(frames)  # type: ignore[list-item]
    for k in np.unique(g):
        idx = np.flatnonzero(g == k)
        if st is not None and k in st:
            mu, sd = st[k]
        else:
            if len(idx) < min_group:
                raise RrpoError(
                    f"speaker group '{k}' has {len(idx)} utterance(s); speaker normalisation needs at "
                    f"least {min_group} (or calibration statistics for it)"
                )
            mu, sd = speaker_stats([frames[i] for i in idx], ["x"] * len(idx))["x"]
        for i in idx:
            out[i] = ((frames[i] - mu) / sd).astype(np.float32)
    return out


class MelCNN(nn.Module):
    """(B, T, M) frames and (B,) lengths → (B, K) logits."""

    def __init__(self, n_mels: int, n_classes: int, channels: int = 64, dropout: float = 0.3):
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv1d(n_mels, channels, 5, padding=2, stride=2),
                nn.Conv1d(channels, channels, 5, padding=4, dilation=2),
                nn.Conv1d(channels, channels, 5, padding=8, dilation=4),
            ]
        )
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(2 * channels, n_classes)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)  # (B, M, T)
        lens = (lens + 1) // 2  # the first convolution has stride 2: ceil(T / 2) output frames
        mask = None
        for conv in self.convs:
            h = conv(h)
            if mask is None:
                mask = (torch.arange(h.shape[-1], device=h.device)[None] < lens[:, None]).to(h.dtype)[:, None]
            h = torch.relu(h) * mask
        n = mask.sum(-1).clamp_min(1.0)
        mean = h.sum(-1) / n
        var = ((h - mean[..., None]) ** 2 * mask).sum(-1) / n
        return self.out(self.drop(torch.cat([mean, (var + 1e-6).sqrt()], -1)))


def pad(frames: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(f) for f in frames])
    x = torch.zeros(len(frames), int(lens.max()), frames[0].shape[1])
    for i, f in enumerate(frames):
        x[i, : len(f)] = torch.from_numpy(f)
    return x, lens


def masked_cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Σ_i w_yi · (−log softmax over mask_i of logits_i at y_i) / Σ_i w_yi.

    Example: logits (0, 0, 5), y 0, mask (1, 1, 0): the masked-out 5 is ignored → −log ½ = ln 2."""
    z = logits.float().masked_fill(~mask, float("-inf"))
    nll = -torch.log_softmax(z, -1).gather(1, y[:, None])[:, 0]
    w = torch.ones_like(nll) if weight is None else weight[y]
    return (w * nll).sum() / w.sum()


class MelJudge:
    """The log-mel judge (same interface as :class:`rrpo.audit.judge.EgemapsJudge`)."""

    def __init__(
        self, classes: Sequence[str], model: MelCNN, n_mels: int, min_group: int = 10, meta: dict | None = None
    ):
        self.classes = tuple(classes)
        self.model = model.eval()
        self.n_mels = int(n_mels)
        self.min_group = int(min_group)
        self.meta = dict(meta or {})

    def group_stats(self, items=None, groups=None, frames=None) -> dict:
        f = frames_of(items, self.n_mels) if frames is None else frames
        g = ["*"] * len(f) if groups is None else [str(x) for x in groups]
        return speaker_stats(f, g)

    def proba_from_frames(self, frames: Sequence[np.ndarray], groups=None, stats=None, batch: int = 64) -> np.ndarray:
        z = normalise(frames, groups, stats, self.min_group)
        out = []
        with torch.no_grad():
            for i in range(0, len(z), batch):
                x, lens = pad(z[i : i + batch])
                out.append(torch.softmax(self.model(x, lens).float(), -1).numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(self.classes)))

    def predict_proba(self, items, groups=None, stats=None) -> np.ndarray:
        if len(items) == 0:
            return np.zeros((0, len(self.classes)))
        return self.proba_from_frames(frames_of(items, self.n_mels, progress=len(items) >= 100), groups, stats)

    def save(self, folder: str | Path) -> None:
        from rrpo.io import write_json
        from rrpo.train.loop import save_weights

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_weights(self.model, folder / "model.safetensors")
        write_json(
            folder / "judge.json",
            {
                "format": 1,
                "kind": KIND_LOGMEL,
                "classes": list(self.classes),
                "features": f"log-mel {self.n_mels}",
                "normalization": "speaker",
                "min_group": self.min_group,
                "n_mels": self.n_mels,
                "channels": self.model.out.in_features // 2,
                **{
                    k: v
                    for k, v in self.meta.items()
                    if k not in ("format", "kind", "classes", "normalization", "min_group", "n_mels", "channels")
                },
            },
        )

    @classmethod
    def load(cls, folder: Path, meta: dict) -> MelJudge:
        from rrpo.train.loop import load_weights

        path = Path(folder) / "model.safetensors"
        if not path.exists():
            raise RrpoError("log-mel judge weights not found", path)
        model = MelCNN(int(meta.get("n_mels", 40)), len(meta["classes"]), int(meta.get("channels", 64)))
        try:
            load_weights(model, path)
        except RrpoError:
            raise
        except Exception as e:  # a corrupt or mismatched file
            raise RrpoError(f"not log-mel judge weights ({e})", path) from None
        return cls(meta["classes"], model, int(meta.get("n_mels", 40)), int(meta.get("min_group", 10)), meta)


def train_mel_judge(
    cfg: MelJudgeConfig,
    manifests,
    out: str | Path,
    resume: bool = True,
    argv: list[str] | None = None,
    frames: list[np.ndarray] | None = None,
) -> tuple[MelJudge, dict]:
    """Train the log-mel judge on the manifests' records that pass the filters into run folder ``out``.

    ``frames`` (the selected records' log-mel frames, in order) skips feature extraction (tests, benches)."""
    from rrpo.audit.judge import corpus_class_mask, select_corpora
    from rrpo.data.audio import load_audio
    from rrpo.runs import RunDir
    from rrpo.train.loop import EpochBatches, train

    classes = list(cfg.classes)
    sel, corpora, groups, dropped = select_corpora(manifests, cfg)
    if not sel:
        raise RrpoError(
            "no records pass the filters (classes, languages, speakers, splits)", getattr(manifests[0], "path", None)
        )
    labels = [u.emotion for _, u in sel]
    missing = [c for c in classes if c not in labels]
    if missing:
        raise RrpoError(f"no training utterances for class(es) {missing}")
    if frames is None:
        frames = frames_of([load_audio(p, 16000) for p, _ in sel], cfg.n_mels, progress=True)
    z = normalise(frames, groups, None, cfg.min_group)
    y = torch.tensor([classes.index(l) for l in labels])
    mask = torch.from_numpy(
        corpus_class_mask(labels, corpora, classes)
        if cfg.class_masking
        else np.ones((len(labels), len(classes)), dtype=bool)
    )
    counts = torch.bincount(y, minlength=len(classes)).float()
    weight = len(y) / (len(classes) * counts.clamp_min(1))

    def collate(idx: list[int]):
        crops = []
        for i in idx:
            f = z[i]
            if len(f) > cfg.max_frames:  # torch's RNG is seeded per micro-batch by the loop: resumable
                s = int(torch.randint(0, len(f) - cfg.max_frames + 1, ()).item())
                f = f[s : s + cfg.max_frames]
            if cfg.freq_masks or cfg.time_masks:
                f = f.copy()
                for _ in range(cfg.freq_masks):
                    w = int(torch.randint(0, 9, ()).item())
                    s = int(torch.randint(0, max(1, f.shape[1] - w) + 1, ()).item())
                    f[:, s : s + w] = 0.0
                for _ in range(cfg.time_masks):
                    w = int(torch.randint(0, min(21, len(f) // 4 + 1), ()).item())
                    s = int(torch.randint(0, max(1, len(f) - w) + 1, ()).item())
                    f[s : s + w] = 0.0
            crops.append(f)
        x, lens = pad(crops)
        return {"x": x, "lens": lens, "y": y[idx], "mask": mask[idx]}

    torch.manual_seed(cfg.train.seed)
    model = MelCNN(cfg.n_mels, len(classes), cfg.channels, cfg.dropout)

    def objective(batch, step):
        logits = model(batch["x"], batch["lens"])
        loss = masked_cross_entropy(logits, batch["y"], batch["mask"], weight)
        acc = (logits.masked_fill(~batch["mask"], float("-inf")).argmax(-1) == batch["y"]).float().mean()
        return loss, {"judge/loss": float(loss.detach()), "judge/acc": float(acc)}

    run = RunDir.create(out, cfg, argv)
    info = {
        "n_train": len(y),
        "train_counts": {c: int(counts[i]) for i, c in enumerate(classes)},
        "train_speakers": len(set(groups)),
        **dropped,
    }
    from collections import Counter

    info["corpora"] = {k: n for k, n in sorted(Counter(corpora).items())}
    last = train(
        model,
        objective,
        EpochBatches(len(y), cfg.train.batch_size, collate, seed=cfg.train.seed),
        cfg.train,
        run,
        meta={"judge": info},
        resume=resume,
    )
    judge = MelJudge(classes, model, cfg.n_mels, cfg.min_group, meta={"training": {**info, "last": last}})
    judge.save(run.path)
    return judge, {**info, "last": last}


register_judge_kind(KIND_LOGMEL, MelJudge.load)
