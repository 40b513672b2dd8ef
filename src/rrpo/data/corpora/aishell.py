"""AISHELL-1 (Bu et al., O-COCOSDA 2017): 400 speakers reading Mandarin, 16 kHz, train/dev/test.

Two layouts (``root`` may be the corpus folder or a folder up to three levels above it)::

    data_aishell/transcript/aishell_transcript_v0.8.txt   "<uttid> 词 词 ..." (words separated by spaces)
    data_aishell/wav/<split>/<spk>/<uttid>.wav            split train, dev or test; e.g.
                                                          wav/test/S0764/BAC009S0764W0121.wav
or a flat folder with each clip beside its transcript (a sample copy)::

    <folder>/BAC009S0150W0001.wav
    <folder>/BAC009S0150W0001.txt                         the sentence

The release ships the audio as one archive per speaker (``wav/S0002.tar.gz``); they must be
extracted in ``wav/`` first. The text is the sentence with the word-separating spaces removed (as
the project's other Mandarin text is written), keeping one space between two Latin-letter or digit
words. In the flat layout the split comes from the speaker number (AISHELL-1's dev speakers are
S0724-S0763, its test speakers S0764 and above). Clips without a transcript line and lines
without a clip are skipped with a warning, as the corpus' Kaldi recipe keeps only the clips the
transcript names (the one transcript covers all three splits, so a partial copy leaves lines over).

AISHELL-1 carries no emotion labels: records get the placeholder emotion ``neutral`` with
``extra.emotion_labelled = false`` (see :data:`rrpo.data.corpora.common.NO_EMOTION_LABEL`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from rrpo.data.corpora.common import (
    NO_EMOTION_LABEL,
    audio_files,
    find_layout_root,
    make_utterance,
    progress,
    read_text_file,
)
from rrpo.data.manifest import Utterance
from rrpo.errors import RrpoError

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
TRANSCRIPT = "aishell_transcript_v0.8.txt"
#: First speaker number of the dev and test sets (the flat layout's split).
DEV_FROM, TEST_FROM = 724, 764

_UTT = re.compile(r"^[A-Z0-9]+?(S\d{4})W\d{4}$")
_ASCII_WORD = re.compile(r"^[A-Za-z0-9]")


def join_words(words: list[str]) -> str:
    """The sentence of space-separated Mandarin words: no spaces, except between two words that
    meet with Latin letters or digits on both sides (``['用', 'APP', 'iphone']`` -> ``用APP iphone``)."""
    out = ""
    for w in words:
        if out and _ASCII_WORD.match(out[-1]) and _ASCII_WORD.match(w):
            out += " "
        out += w
    return out


def read_transcript(path: Path) -> dict[str, tuple[str, int]]:
    """Utterance id -> (sentence, line number) from ``aishell_transcript_v0.8.txt``."""
    out: dict[str, tuple[str, int]] = {}
    for i, line in enumerate(read_text_file(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or not _UTT.match(fields[0]):
            raise RrpoError("transcript line is not '<uttid> <words ...>' (e.g. BAC009S0002W0122 而 对 楼市)", path, i)
        if fields[0] in out:
            raise RrpoError(f"utterance '{fields[0]}' appears twice (first on line {out[fields[0]][1]})", path, i)
        out[fields[0]] = (join_words(fields[1:]), i)
    return out


def flat_split(speaker: str) -> str:
    """AISHELL-1's split of a speaker (``S0724``) by its number."""
    n = int(speaker[1:])
    return "test" if n >= TEST_FROM else "dev" if n >= DEV_FROM else "train"


def _flat_clips(d: Path) -> list[Path]:
    try:
        return [p for p in audio_files(d) if _UTT.match(p.stem)]
    except OSError:
        return []


def _is_standard(d: Path) -> bool:
    return (d / "wav").is_dir() and (d / "transcript").is_dir()


def _is_root(d: Path) -> bool:
    return _is_standard(d) or any(p.with_suffix(".txt").is_file() for p in _flat_clips(d))


def _standard_clips(base: Path) -> list[tuple[str, Path]]:
    """(split, clip) below ``wav/<split>/<spk>/``; a folder that is not a split, or unextracted
    speaker archives, is an error."""
    wav = base / "wav"
    out = []
    for d in sorted(wav.iterdir()):
        if d.name.startswith("."):
            continue
        if d.is_dir():
            if d.name not in SPLITS:
                raise RrpoError(f"not an AISHELL-1 split folder ({', '.join(SPLITS)})", d)
            out += [(d.name, p) for p in audio_files(d, recursive=True)]
    if not out and any(wav.glob("S*.tar.gz")):
        raise RrpoError(
            "the speaker archives are not extracted: run `for f in S*.tar.gz; do tar xzf $f; done` here", wav
        )
    return out


def prepare(root: Path, language: str | None = None) -> list[Utterance]:
    """Records for every AISHELL-1 clip with a transcript line (language zh, split train/dev/test)."""
    base = find_layout_root(root, _is_root, "AISHELL-1 folder (wav/ beside transcript/, or <uttid>.wav beside .txt)")
    if _is_standard(base):
        tpath = base / "transcript" / TRANSCRIPT
        transcript = read_transcript(tpath)
        clips = _standard_clips(base)
    else:
        clips, transcript = [], {}
        for p in _flat_clips(base):
            txt = p.with_suffix(".txt")
            if txt.is_file():
                transcript[p.stem] = (join_words(read_text_file(txt).split()), 1)
            clips.append((flat_split(_UTT.match(p.stem).group(1)), p))
    records, unlisted = [], []
    for split, clip in progress(clips, "aishell", "file"):
        m = _UTT.match(clip.stem)
        if not m:
            raise RrpoError("not an AISHELL-1 clip name (expected e.g. BAC009S0002W0122.wav)", clip)
        spk = m.group(1)
        if _is_standard(base) and clip.parent.name != spk:
            raise RrpoError(f"clip of speaker {spk} lies in the folder of '{clip.parent.name}'", clip)
        if clip.stem not in transcript:
            unlisted.append(clip)
            continue
        records.append(
            make_utterance(
                f"aishell_{clip.stem}",
                clip,
                text=transcript[clip.stem][0],
                speaker=spk,
                language="zh",
                emotion="neutral",
                split=split,
                extra=dict(NO_EMOTION_LABEL),
            )
        )
    unheard = len(set(transcript) - {c.stem for _, c in clips})
    if unheard:
        log.warning("aishell: %d transcript lines have no audio file and were left out", unheard)
    if unlisted:
        log.warning("aishell: %d clips have no transcript line and were left out (e.g. %s)", len(unlisted), unlisted[0])
    return records
