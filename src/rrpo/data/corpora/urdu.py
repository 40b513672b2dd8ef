"""URDU, the semi-natural Urdu emotional speech dataset (Latif et al., 2018): talk-show clips.

Layout (the corpus' own; ``root`` may be this folder or a folder up to three levels above)::

    <root>/{Angry,Happy,Neutral,Sad}/S<M|F><n>_F<m>_<E><k>.wav       e.g. Angry/SM1_F10_A010.wav

The speaker is the first field (``SM1``, ``SF6``; M/F is the speaker's sex), the emotion the folder;
the file's emotion letter (A H N S) must agree with it. Clips may be ``.wav`` (the original) or
``.flac`` (a compressed copy). No transcripts (text is empty), no official split (split ``train``).
"""

from __future__ import annotations

import re
from pathlib import Path

from rrpo.data.corpora.common import clip_files, emotion_of, find_layout_root, make_utterance
from rrpo.data.emotions import CORPUS_MAPPINGS
from rrpo.data.manifest import Utterance
from rrpo.errors import RrpoError

_NAME = re.compile(r"^(S([MF])\d+)_(F\d+)_([A-Za-z])(\d+)$")


def _sub_folders(d: Path) -> list[Path]:
    try:
        return [e for e in sorted(d.iterdir()) if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return []


def _is_urdu_root(d: Path) -> bool:
    """A folder with an emotion-named sub-folder holding a clip named like ``SM1_F10_A010``."""
    known = CORPUS_MAPPINGS["urdu"]
    for e in _sub_folders(d):
        if e.name.lower() in known and len(e.name) > 1:
            try:
                if any(_NAME.match(p.stem) for p in clip_files(e)):
                    return True
            except (OSError, RrpoError):
                continue
    return False


def prepare(root: Path, language: str | None = None) -> list[Utterance]:
    """Records for every clip of every emotion folder (language ur, split train)."""
    base = find_layout_root(root, _is_urdu_root, "URDU corpus folder (<Emotion>/SM1_F10_A010.wav)")
    records = []
    for folder in _sub_folders(base):
        clips = clip_files(folder)
        if not clips:
            continue
        emotion = emotion_of(folder.name, "urdu", folder)
        for clip in clips:
            m = _NAME.match(clip.stem)
            if not m:
                raise RrpoError("file name is not S<M|F><n>_F<m>_<E><k> (e.g. SM1_F10_A010.wav)", clip)
            speaker, sex, take, letter, _ = m.groups()
            if emotion_of(letter, "urdu", clip) != emotion:
                raise RrpoError(f"file name says emotion '{letter}' but the clip lies in '{folder.name}'", clip)
            records.append(
                make_utterance(
                    f"urdu_{clip.stem}",
                    clip,
                    text="",
                    speaker=speaker,
                    language="ur",
                    emotion=emotion,
                    split="train",
                    extra={"gender": sex, "take": take},
                )
            )
    return records
