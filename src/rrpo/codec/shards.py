"""Token shards: the speech tokens and per-token energies of a whole manifest, readable by id.

Layout of a shard folder::

    meta.json            {"format": "rrpo-token-shards", "version": 1, "vocab_size", "frame_rate",
                          "codec": {...codec description...}, "manifest": path, "manifest_sha256"}
    shard_00000.npz      ids (N,) str, offsets (N+1,) int64, tokens (sum T,) int32, energy (sum T,) float32
    shard_00001.npz      ...

Each shard is written atomically once complete, so an interrupted ``rrpo tokenize`` resumes by
skipping the ids already in finished shards. Reading loads every shard's index once and keeps the
arrays memory-resident (token data are small: 25 tokens/s).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from rrpo.errors import RrpoError
from rrpo.io import atomic_path, write_json

FORMAT = "rrpo-token-shards"
VERSION = 1


class ShardWriter:
    """Collect (id, tokens, energy) and flush a shard every ``shard_size`` utterances."""

    def __init__(self, path: str | os.PathLike, meta: dict, shard_size: int = 500):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        meta_path = self.path / "meta.json"
        full_meta = {"format": FORMAT, "version": VERSION, **meta}
        if meta_path.exists():
            old = json.loads(meta_path.read_text(encoding="utf-8"))
            for key in ("vocab_size", "frame_rate", "codec"):
                if old.get(key) != full_meta.get(key):
                    raise RrpoError(
                        f"existing shards were made with a different {key} "
                        f"({old.get(key)!r} vs {full_meta.get(key)!r}); use a new out=",
                        meta_path,
                    )
        write_json(meta_path, full_meta)
        self.vocab_size = int(meta["vocab_size"])
        self.shard_size = shard_size
        self.done = set(self._existing_ids())
        self._buf: list[tuple[str, np.ndarray, np.ndarray]] = []
        self._next = len(self._shard_files())

    def _shard_files(self) -> list[Path]:
        return sorted(self.path.glob("shard_*.npz"))

    def _existing_ids(self) -> Iterator[str]:
        for f in self._shard_files():
            with np.load(f, allow_pickle=False) as z:
                yield from (str(i) for i in z["ids"])

    def add(self, uid: str, tokens: np.ndarray, energy: np.ndarray) -> None:
        tokens = np.asarray(tokens)
        energy = np.asarray(energy, dtype=np.float32)
        if tokens.ndim != 1 or energy.shape != tokens.shape:
            raise ValueError(f"{uid}: tokens {tokens.shape} and energy {energy.shape} must be equal 1-D shapes")
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise RrpoError(f"{uid}: token id out of range [0, {self.vocab_size})")
        self._buf.append((uid, tokens.astype(np.int32), energy))
        self.done.add(uid)
        if len(self._buf) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        ids = np.array([b[0] for b in self._buf])
        lens = np.array([len(b[1]) for b in self._buf], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        tokens = np.concatenate([b[1] for b in self._buf]) if lens.sum() else np.zeros(0, np.int32)
        energy = np.concatenate([b[2] for b in self._buf]) if lens.sum() else np.zeros(0, np.float32)
        target = self.path / f"shard_{self._next:05d}.npz"
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, ids=ids, offsets=offsets, tokens=tokens, energy=energy)
        self._next += 1
        self._buf = []

    def close(self) -> None:
        self.flush()


class TokenShards:
    """Read-only view of a shard folder: ``shards.get(id) -> (tokens (T,) int64, energy (T,) float32)``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.exists():
            raise RrpoError("not a token-shard folder (no meta.json); run `rrpo tokenize` first", self.path)
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if self.meta.get("format") != FORMAT:
            raise RrpoError(f"not a token-shard folder (format {self.meta.get('format')!r})", meta_path)
        if self.meta.get("version") != VERSION:
            raise RrpoError(
                f"token shards of version {self.meta.get('version')} cannot be read by this "
                f"rrpo (expects {VERSION}); re-run `rrpo tokenize`",
                meta_path,
            )
        self.vocab_size = int(self.meta["vocab_size"])
        self.frame_rate = float(self.meta["frame_rate"])
        self._index: dict[str, tuple[int, int, int]] = {}
        self._tokens: list[np.ndarray] = []
        self._energy: list[np.ndarray] = []
        for n, f in enumerate(sorted(self.path.glob("shard_*.npz"))):
            try:
                with np.load(f, allow_pickle=False) as z:
                    ids, offsets = z["ids"], z["offsets"]
                    self._tokens.append(z["tokens"].astype(np.int64))
                    self._energy.append(z["energy"].astype(np.float32))
            except Exception as e:
                raise RrpoError(f"unreadable token shard ({str(e)[:120]})", f) from None
            for i, uid in enumerate(ids):
                self._index[str(uid)] = (n, int(offsets[i]), int(offsets[i + 1]))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, uid: str) -> bool:
        return uid in self._index

    def ids(self) -> list[str]:
        return list(self._index)

    def get(self, uid: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            n, a, b = self._index[uid]
        except KeyError:
            raise RrpoError(
                f"utterance '{uid}' is not in these token shards (tokenize its manifest)", self.path
            ) from None
        return self._tokens[n][a:b], self._energy[n][a:b]

    def missing(self, ids: Iterable[str]) -> list[str]:
        return [i for i in ids if i not in self._index]
