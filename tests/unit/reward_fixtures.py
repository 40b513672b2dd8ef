"""Tiny token corpora for reward-model tests, written with ShardWriter (no audio needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rrpo.codec.shards import ShardWriter
from rrpo.data.emotions import ESD_CLASSES
from rrpo.data.manifest import Utterance, write_manifest


def make_corpus(
    root: Path,
    name: str = "c",
    speakers=("s1", "s2", "s3", "s4"),
    per_class: int = 6,
    vocab: int = 32,
    language: str = "zh",
    seed: int = 0,
    classes=ESD_CLASSES,
    length=(12, 30),
) -> tuple[Path, Path]:
    """A manifest + shards where class k's tokens come mostly from ids [4k, 4k+4) (learnable)."""
    rng = np.random.default_rng(seed)
    recs = []
    w = ShardWriter(root / f"{name}_tokens", {"vocab_size": vocab, "frame_rate": 25.0, "codec": {"name": "fake"}})
    for s in speakers:
        for k, emo in enumerate(classes):
            for n in range(per_class):
                uid = f"{name}_{s}_{emo}_{n}"
                T = int(rng.integers(*length))
                tok = np.where(rng.random(T) < 0.7, 4 * k + rng.integers(0, 4, T), rng.integers(0, vocab, T))
                en = rng.uniform(0.01, 0.1, T).astype(np.float32) * (1 + k)
                w.add(uid, tok, en)
                recs.append(Utterance(uid, f"{uid}.wav", 16000, T / 25, "", s, language, emo, "train"))
    w.close()
    man = write_manifest(root / f"{name}.jsonl", recs)
    return man.path, root / f"{name}_tokens"


def tiny_rm_overrides(manifest: Path, shards: Path, *extra: str, classes: str = "[angry, happy]") -> list[str]:
    """Overrides of a two-step, 16-wide reward model on a `make_corpus` corpus (integration tests)."""
    return [
        f"data.manifests=[{manifest}]",
        f"data.tokens=[{shards}]",
        f"classes={classes}",
        "model.d_model=16",
        "model.n_layers=1",
        "model.n_heads=2",
        "model.d_ff=32",
        "model.pool_dim=8",
        "train.steps=2",
        "train.batch_size=4",
        "train.progress=false",
        "data.max_tokens=0",
        *extra,
    ]
