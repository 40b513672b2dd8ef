"""Tiny data for the policy tests: a manifest and token shards written by the tests themselves.

Speech tokens are a deterministic function of (text, emotion, speaker) so a policy can learn them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rrpo.codec.shards import ShardWriter
from rrpo.data.manifest import Utterance, write_manifest

TEXTS = ["今天天气好", "我们走吧", "你好世界", "明天见"]
EMOTIONS = ["angry", "happy"]
SPEAKERS = ["s1", "s2"]
VOCAB = 16


def tokens_for(text: str, emotion: str, speaker: str, length: int | None = None) -> np.ndarray:
    n = length if length is not None else 3 * len(text) + (2 if emotion == "angry" else 0)
    base = (sum(map(ord, text)) + 3 * EMOTIONS.index(emotion) + SPEAKERS.index(speaker)) % VOCAB
    return (base + np.arange(n) * (1 + EMOTIONS.index(emotion))) % VOCAB


def make_corpus(
    folder: Path, fixed_length: int | None = None, texts=TEXTS, prefix: str = "", vocab: int = VOCAB
) -> tuple[Path, Path]:
    """Write folder/manifest.jsonl and folder/shards (ids start with ``prefix``); return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    recs, w = (
        [],
        ShardWriter(
            folder / "shards",
            {"vocab_size": vocab, "frame_rate": 25.0, "codec": {"name": "toy"}, "manifest": "manifest.jsonl"},
            shard_size=7,
        ),
    )
    for ti, text in enumerate(texts):
        for emo in EMOTIONS:
            for spk in SPEAKERS:
                uid = f"{prefix}{spk}_{emo}_{ti}"
                toks = tokens_for(text, emo, spk, fixed_length)
                recs.append(Utterance(uid, f"{uid}.wav", 16000, len(toks) / 25.0, text, spk, "zh", emo, "train"))
                w.add(uid, toks, np.ones(len(toks), np.float32))
    w.close()
    write_manifest(folder / "manifest.jsonl", recs)
    return folder / "manifest.jsonl", folder / "shards"


def sft_overrides(folder: Path, out: Path, steps: int = 4, **extra) -> list[str]:
    ov = {
        "out": str(out),
        "data.manifest": str(folder / "manifest.jsonl"),
        "data.shards": str(folder / "shards"),
        "data.heldout": f"[{TEXTS[-1]}]",
        "model.hidden_size": 32,
        "model.layers": 2,
        "model.heads": 4,
        "model.kv_heads": 2,
        "model.intermediate_size": 64,
        "train.steps": steps,
        "train.batch_size": 4,
        "train.lr": 3e-3,
        "train.progress": "false",
        "train.log_every": 1,
        "train.device": "cpu",
        "train.schedule": "constant",
        "eval_batch_size": 8,
    }
    ov.update(extra)
    return [f"{k}={v}" for k, v in ov.items()]


def run_tiny_sft(tmp_path: Path, name: str, *extra: str):
    """SFT a tiny policy on the fixture corpus (made once under ``tmp_path/data``) into
    ``tmp_path/name``; returns (run_sft's result, the run folder)."""
    from rrpo.config import load_config
    from rrpo.policy.sft import SFTConfig, run_sft

    folder = tmp_path / "data"
    if not (folder / "manifest.jsonl").exists():
        make_corpus(folder)
    cfg = load_config(SFTConfig, None, sft_overrides(folder, tmp_path / name) + list(extra))
    return run_sft(cfg, argv=["test"]), tmp_path / name
