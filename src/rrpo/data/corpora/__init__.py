"""Corpus preparers: each reads one corpus' own on-disk layout and returns manifest records.

A preparer is ``prepare(root: Path, language: str | None) -> list[Utterance]``; records come back
sorted by id so a run is idempotent. :func:`prepare_corpus` validates and writes atomically.
:data:`PREPARERS` names every preparer ``rrpo prepare`` knows; a new corpus is a module beside
these (helpers in :mod:`rrpo.data.corpora.common`) and one line in that dict.
"""

from __future__ import annotations

from pathlib import Path

from rrpo.data.corpora import (
    aishell,
    an4,
    ased,
    casia,
    cremad,
    esd,
    iemocap,
    librispeech,
    nemo,
    ravdess,
    tabular,
    urdu,
)
from rrpo.data.corpora.common import Preparer
from rrpo.data.manifest import Manifest, write_manifest
from rrpo.errors import RrpoError

#: Preparer by the corpus name ``rrpo prepare CORPUS`` takes.
PREPARERS: dict[str, Preparer] = {
    "aishell": aishell.prepare,
    "an4": an4.prepare,
    "ased": ased.prepare,
    "casia": casia.prepare,
    "crema-d": cremad.prepare,
    "csv": tabular.prepare_csv,
    "esd": esd.prepare,
    "iemocap": iemocap.prepare,
    "jsonl": tabular.prepare_jsonl,
    "librispeech": librispeech.prepare,
    "nemo": nemo.prepare,
    "ravdess": ravdess.prepare,
    "urdu": urdu.prepare,
}


def prepare_corpus(
    corpus: str, root: str | Path, out: str | Path, language: str | None = None, check_audio: bool = False
) -> Manifest:
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
