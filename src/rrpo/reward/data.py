"""Token data for the reward model: manifests + token shards, filtered, as padded batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rrpo.config import check, option
from rrpo.data.manifest import Selection
from rrpo.errors import RrpoError


@dataclass
class DataConfig(Selection):
    """Manifests, their token shards and the :class:`~rrpo.data.manifest.Selection` of utterances."""

    manifests: list[str] = option([], "manifests (JSONL) to read")
    tokens: list[str] = option([], "token-shard folders: one per manifest, or one for all")
    max_tokens: int = option(400, "crop longer utterances to a random window of this many tokens (0 = no crop)")
    mask_absent_classes: bool = option(
        True, "leave the classes a manifest has no utterance of out of its utterances' loss (not negatives)"
    )
    tempo: list[float] = option(
        [],
        "training only: token-level speed perturbation, [lo, hi]: each utterance of a batch is resampled "
        "(nearest token) at a rate drawn log-uniformly in [lo, hi] (> 1 = faster, fewer tokens), so the model "
        "cannot read emotion from a speaker's habitual speaking rate ([] = off)",
    )

    token_noise: float = option(
        0.0,
        "training only: replace this fraction of each utterance's tokens by tokens drawn uniformly from the "
        "vocabulary (each position independently), so that no handful of tokens decides the emotion (0 = off)",
    )

    def __post_init__(self):
        check(self.max_tokens >= 0, "max_tokens", "must be >= 0")
        check(0 <= self.token_noise < 1, "token_noise", "must be in [0, 1)")
        check(len(self.tempo) in (0, 2), "tempo", "must be [] or [lo, hi]")
        if self.tempo:
            lo, hi = (float(v) for v in self.tempo)
            check(0 < lo <= hi, "tempo", f"needs 0 < lo <= hi, got [{lo}, {hi}]")
            self.tempo = [lo, hi]


@dataclass
class TokenItem:
    id: str
    tokens: np.ndarray  # (T,) int64
    energy: np.ndarray  # (T,) float32
    label: int
    speaker: str
    language: str
    avail: tuple[bool, ...] | None = None  # classes the item's corpus (manifest) has; None = all


def load_items(
    cfg: DataConfig, classes: Sequence[str], vocab_size: int | None = None, what: str = "data"
) -> tuple[list[TokenItem], dict]:
    """Read every manifest, filter, keep utterances whose emotion is one of ``classes``; return the
    items and a summary (counts, dropped). Records without an emotion label
    (``extra.emotion_labelled: false``, e.g. LibriSpeech) are left out and counted."""
    from rrpo.codec.shards import TokenShards
    from rrpo.data.manifest import read_manifest

    if not cfg.manifests:
        raise RrpoError(f"{what}: no manifests given ({what}.manifests)")
    if len(cfg.tokens) not in (1, len(cfg.manifests)):
        raise RrpoError(
            f"{what}: give one token-shard folder per manifest, or one for all "
            f"({len(cfg.manifests)} manifests, {len(cfg.tokens)} token folders)"
        )
    shard_cache: dict[str, TokenShards] = {}
    items: list[TokenItem] = []
    other_emotion = unlabelled = 0
    masked: dict[str, list[str]] = {}
    for n, mpath in enumerate(cfg.manifests):
        tpath = cfg.tokens[0] if len(cfg.tokens) == 1 else cfg.tokens[n]
        if tpath not in shard_cache:
            shard_cache[tpath] = TokenShards(tpath)
        shards = shard_cache[tpath]
        if vocab_size is not None and shards.vocab_size != vocab_size:
            raise RrpoError(f"token vocabulary {shards.vocab_size} differs from the model's {vocab_size}", tpath)
        man = cfg.apply(read_manifest(mpath))
        missing = shards.missing(u.id for u in man)
        if missing:
            raise RrpoError(
                f"{len(missing)} utterance(s) of {mpath} are not tokenized (e.g. '{missing[0]}'); "
                "run `rrpo tokenize` on this manifest",
                tpath,
            )
        unlabelled += sum(1 for u in man if not u.emotion_labelled)
        man = [u for u in man if u.emotion_labelled]  # a corpus without emotion labels teaches no emotion
        present = {u.emotion for u in man}
        avail = tuple(c in present for c in classes)
        if not cfg.mask_absent_classes or all(avail):
            avail = None
        for u in man:
            if u.emotion not in classes:
                other_emotion += 1
                continue
            tok, en = shards.get(u.id)
            if len(tok) == 0:
                continue
            items.append(TokenItem(u.id, tok, en, classes.index(u.emotion), u.speaker, u.language, avail))
        if avail is not None:
            masked[str(mpath)] = [c for c, a in zip(classes, avail) if not a]
    if not items:
        raise RrpoError(f"{what}: no utterances left after filtering (classes {list(classes)})")
    vocab = next(iter(shard_cache.values())).vocab_size
    counts = {c: sum(1 for it in items if it.label == k) for k, c in enumerate(classes)}
    return items, {
        "utterances": len(items),
        "per_class": counts,
        "dropped_other_emotions": other_emotion,
        "dropped_unlabelled": unlabelled,
        "speakers": sorted({it.speaker for it in items}),
        "vocab_size": vocab,
        "masked_classes": masked,
    }


def tempo_indices(length: int, rate: float) -> np.ndarray:
    """Source positions of a sequence of ``length`` tokens played at ``rate`` (nearest token):
    ``n = max(1, round(length / rate))`` positions ``min(floor((k + 0.5) * rate), length - 1)``."""
    n = max(1, int(round(length / rate)))
    return np.minimum(np.floor((np.arange(n) + 0.5) * rate).astype(np.int64), length - 1)


def collate(
    items: Sequence[TokenItem],
    max_tokens: int = 0,
    random_crop: bool = True,
    tempo: Sequence[float] = (),
    token_noise: float = 0.0,
    vocab_size: int = 0,
) -> dict:
    """Pad to the longest: ``tokens`` (B, T) int64 (pad 0), ``energy`` (B, T), ``lens`` (B,), ``labels`` (B,),
    and ``avail`` (B, K) bool when some item's corpus lacks classes.

    With ``tempo = (lo, hi)`` each utterance is first resampled by :func:`tempo_indices` at a rate
    ``lo * (hi / lo) ** u``, ``u`` uniform from torch's RNG (speed perturbation; training only).
    Utterances longer than ``max_tokens`` are cropped to a window (random start from torch's RNG
    when ``random_crop``, else the first ``max_tokens``). With ``token_noise`` p > 0 (training only) each
    position is then replaced, with probability p, by a token uniform on ``[0, vocab_size)`` (torch's RNG)."""
    seqs = []
    for it in items:
        tok, en = it.tokens, it.energy
        if tempo:
            lo, hi = float(tempo[0]), float(tempo[1])
            rate = lo * (hi / lo) ** float(torch.rand(()))
            idx = tempo_indices(len(tok), rate)
            tok, en = np.asarray(tok)[idx], np.asarray(en)[idx]
        if max_tokens and len(tok) > max_tokens:
            a = int(torch.randint(0, len(tok) - max_tokens + 1, (1,))) if random_crop else 0
            tok, en = tok[a : a + max_tokens], en[a : a + max_tokens]
        if token_noise > 0:
            if vocab_size < 1:
                raise ValueError("token_noise needs the vocabulary size")
            hit = (torch.rand(len(tok)) < token_noise).numpy()
            repl = torch.randint(0, vocab_size, (len(tok),)).numpy()
            tok = np.where(hit, repl, np.asarray(tok))
        seqs.append((tok, en))
    T = max(len(t) for t, _ in seqs)
    B = len(seqs)
    tokens = torch.zeros(B, T, dtype=torch.long)
    energy = torch.zeros(B, T, dtype=torch.float32)
    lens = torch.zeros(B, dtype=torch.long)
    for i, (t, e) in enumerate(seqs):
        tokens[i, : len(t)] = torch.from_numpy(np.asarray(t, dtype=np.int64))
        energy[i, : len(e)] = torch.from_numpy(np.asarray(e, dtype=np.float32))
        lens[i] = len(t)
    labels = torch.tensor([it.label for it in items], dtype=torch.long)
    out = {"tokens": tokens, "energy": energy, "lens": lens, "labels": labels}
    if any(getattr(it, "avail", None) is not None for it in items):
        K = len(next(it.avail for it in items if getattr(it, "avail", None) is not None))
        out["avail"] = torch.tensor(
            [list(it.avail) if getattr(it, "avail", None) is not None else [True] * K for it in items], dtype=torch.bool
        )
    return out


def tokenize_manifest(codec_dir: str, manifest: str, out: str, shard_size: int = 500) -> str:
    """Tokenize ``manifest`` into shards ``out`` (resumable), as ``rrpo tokenize`` does; returns ``out``."""
    from rrpo.codec.tokenize import tokenize_manifest as tokenize

    tokenize(codec_dir, manifest, out, shard_size, progress=False)
    return str(out)
