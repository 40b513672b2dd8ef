"""Corpus preparers: each reads one corpus' own on-disk layout and returns manifest records.

A preparer is ``prepare(root: Path, language: str | None) -> list[Utterance]``; records come back
sorted by id so a run is idempotent. :func:`prepare_corpus` validates and writes atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rrpo.data.manifest import Manifest, Utterance, write_manifest
from rrpo.errors import RrpoError

Preparer = Callable[[Path, "str | None"], list[Utterance]]

PREPARERS: dict[str, Preparer] = {}


def preparer(name: str):
    def deco(fn: Preparer) -> Preparer:
        PREPARERS[name] = fn
        return fn
    return deco


def prepare_corpus(corpus: str, root: str | Path, out: str | Path, language: str | None = None,
                   check_audio: bool = False) -> Manifest:
    if corpus not in PREPARERS:
        raise RrpoError(f"unknown corpus '{corpus}' (known: {', '.join(sorted(PREPARERS))})")
    root = Path(root)
    if not root.exists():
        raise RrpoError("corpus root not found", root)
    records = PREPARERS[corpus](root, language)
    if not records:
        raise RrpoError(f"no {corpus} audio found under this root (is it the corpus' own layout?)", root)
    if check_audio:
        from rrpo.data.audio import load_audio
        for u in records:
            load_audio(u.audio)
    records = sorted(records, key=lambda u: u.id)
    return write_manifest(out, records)


# Importing the modules registers their preparers.
from rrpo.data.corpora import casia, esd, tabular  # noqa: E402,F401
from rrpo.data.corpora import ravdess, cremad, iemocap  # noqa: E402,F401
