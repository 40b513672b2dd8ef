"""LibriSpeech (Panayotov et al., ICASSP 2015) and Mini LibriSpeech: read English audiobooks.

Layout (the corpus' own; ``root`` may be the ``LibriSpeech`` folder, one subset folder such as
``LibriSpeech/test-clean``, or a folder up to three levels above them)::

    LibriSpeech/SPEAKERS.TXT                                       optional: "ID | SEX | SUBSET | ..."
    LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt  "<spk>-<chapter>-<NNNN> TRANSCRIPT"
    LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac

A subset is any folder of speaker/chapter folders (``test-clean``, ``train-clean-100``,
``train-clean-5``, ``dev-clean-2``, ...); its name is the records' split. Clips may also be ``.wav``
(a converted copy). Every clip needs its transcript line (a missing ``.trans.txt`` or line is an
error); transcript lines without a clip are skipped with a warning (a partial copy).

LibriSpeech carries no emotion labels: records get the placeholder emotion ``neutral`` with
``extra.emotion_labelled = false`` (see :data:`rrpo.data.corpora.common.NO_EMOTION_LABEL`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from rrpo.data.corpora.common import (
    NO_EMOTION_LABEL,
    clip_files,
    find_layout_root,
    make_utterance,
    progress,
    read_text_file,
)
from rrpo.data.manifest import Utterance
from rrpo.errors import RrpoError

log = logging.getLogger(__name__)

_UTT = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_NUM = re.compile(r"^\d+$")


def _chapter_dirs(subset: Path) -> list[Path]:
    """``<spk>/<chapter>`` folders of a subset folder (numeric names), sorted."""
    out = []
    for spk in sorted(subset.iterdir()):
        if spk.is_dir() and _NUM.match(spk.name):
            out.extend(ch for ch in sorted(spk.iterdir()) if ch.is_dir() and _NUM.match(ch.name))
    return out


def _is_subset(d: Path) -> bool:
    """A folder of ``<spk>/<chapter>/`` holding ``<spk>-<chapter>.trans.txt`` or ``<spk>-<chapter>-*`` clips."""
    try:
        for spk in d.iterdir():
            if spk.is_dir() and _NUM.match(spk.name):
                for ch in spk.iterdir():
                    if _NUM.match(ch.name) and ch.is_dir() and next(ch.glob(f"{spk.name}-{ch.name}*"), None):
                        return True
    except OSError:
        return False
    return False


def _subsets(d: Path) -> list[Path]:
    """``d`` itself when it is a subset folder, else its subset folders."""
    if _is_subset(d):
        return [d]
    try:
        return [s for s in sorted(d.iterdir()) if s.is_dir() and not s.name.startswith(".") and _is_subset(s)]
    except OSError:
        return []


def read_speakers(path: Path) -> dict[str, str]:
    """Speaker id -> sex (``F``/``M``) from ``SPEAKERS.TXT`` (``;`` comments, ``|``-separated fields)."""
    out = {}
    for i, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 2 or not _NUM.match(fields[0]) or fields[1] not in ("F", "M"):
            raise RrpoError("speaker line is not 'ID | SEX | SUBSET | MINUTES | NAME'", path, i)
        out[fields[0]] = fields[1]
    return out


def read_transcript(path: Path, speaker: str, chapter: str) -> dict[str, tuple[str, int]]:
    """Utterance id -> (text, line number) from ``<spk>-<chapter>.trans.txt``; errors name the line."""
    out: dict[str, tuple[str, int]] = {}
    for i, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        uid, _, text = line.strip().partition(" ")
        m = _UTT.match(uid)
        if not m:
            raise RrpoError(f"transcript line is not '{speaker}-{chapter}-NNNN TRANSCRIPT'", path, i)
        if (m.group(1), m.group(2)) != (speaker, chapter):
            raise RrpoError(f"utterance '{uid}' does not belong to chapter {speaker}-{chapter}", path, i)
        if uid in out:
            raise RrpoError(f"utterance '{uid}' appears twice (first on line {out[uid][1]})", path, i)
        out[uid] = (text.strip(), i)
    return out


def prepare(root: Path, language: str | None = None) -> list[Utterance]:
    """Records for every clip of every subset found (language en, split = subset name)."""
    base = find_layout_root(root, lambda d: bool(_subsets(d)), "LibriSpeech folder (<subset>/<spk>/<chapter>/)")
    subsets = _subsets(base)
    speakers_txt = next(
        (p for p in (base / "SPEAKERS.TXT", base.parent / "SPEAKERS.TXT") if p.is_file()),
        None,
    )
    gender = read_speakers(speakers_txt) if speakers_txt is not None else {}
    chapters = [(s, ch) for s in subsets for ch in _chapter_dirs(s)]
    records, unheard = [], 0
    for subset, ch_dir in progress(chapters, "librispeech", "chapter"):
        spk, chapter = ch_dir.parent.name, ch_dir.name
        clips = clip_files(ch_dir)
        trans_path = ch_dir / f"{spk}-{chapter}.trans.txt"
        if not trans_path.is_file():
            if clips:
                raise RrpoError(f"transcript {trans_path.name} not found beside the chapter's audio", ch_dir)
            continue
        transcript = read_transcript(trans_path, spk, chapter)
        for c in clips:
            m = _UTT.match(c.stem)
            if not m or (m.group(1), m.group(2)) != (spk, chapter):
                raise RrpoError(f"not a LibriSpeech clip name (expected {spk}-{chapter}-NNNN.flac)", c)
            if c.stem not in transcript:
                raise RrpoError(f"clip has no line in {trans_path.name}", c)
            extra = {"chapter": chapter, **NO_EMOTION_LABEL}
            if spk in gender:
                extra["gender"] = gender[spk]
            records.append(
                make_utterance(
                    f"librispeech_{c.stem}",
                    c,
                    text=transcript[c.stem][0],
                    speaker=f"libri{spk}",
                    language="en",
                    emotion="neutral",
                    split=subset.name,
                    extra=extra,
                )
            )
        unheard += len(set(transcript) - {c.stem for c in clips})
    if unheard:
        log.warning("librispeech: %d transcript lines have no audio file and were left out", unheard)
    return records
