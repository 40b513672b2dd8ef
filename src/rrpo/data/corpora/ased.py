"""ASED, the Amharic Speech Emotion Dataset v1 (Retta et al., 2022): 65 speakers, five emotions.

Layout (the corpus' own; ``root`` may be this folder or a folder up to three levels above)::

    <root>/0{1..5}{Neutral,Fearful,Happy,Sad,Angry}/<e><n>-<sentence>-<repetition>-<gender>-<speaker>.wav

e.g. ``05Angry/a5-01-02-02-50.wav``: emotion letter ``a`` and folder number 5, sentence 01,
repetition 02, gender 02 (01 female, 02 male), speaker 50. Clips may be ``.wav`` (the original) or
``.flac`` (a compressed copy). The emotion is the folder; the file's letter and number must agree
with it. ASED has no transcripts (text is empty) and no official split (split ``train``). Speakers
are named ``ased<NN>`` so that they stay distinct from other corpora's numbered speakers when
manifests are combined.
"""

from __future__ import annotations

import re
from pathlib import Path

from rrpo.data.corpora.common import clip_files, emotion_of, find_layout_root, make_utterance
from rrpo.data.manifest import Utterance
from rrpo.errors import RrpoError

_FOLDER = re.compile(r"^(\d{2})([A-Za-z]+)$")
_NAME = re.compile(r"^([A-Za-z])(\d)-(\d{2})-(\d{2})-(0[12])-(\d{2})$")
GENDER = {"01": "F", "02": "M"}


def _emotion_folders(d: Path) -> list[Path]:
    try:
        return [e for e in sorted(d.iterdir()) if e.is_dir() and _FOLDER.match(e.name)]
    except OSError:
        return []


def _is_ased_root(d: Path) -> bool:
    """A folder with a ``<NN><Emotion>`` sub-folder holding a clip named like ``a5-01-02-02-50``."""
    for e in _emotion_folders(d):
        try:
            if any(_NAME.match(p.stem) for p in clip_files(e)):
                return True
        except (OSError, RrpoError):
            continue
    return False


def prepare(root: Path, language: str | None = None) -> list[Utterance]:
    """Records for every clip of every ``<NN><Emotion>`` folder (language am, split train)."""
    base = find_layout_root(root, _is_ased_root, "ASED corpus folder (<NN><Emotion>/a5-01-02-02-50.wav)")
    records = []
    for folder in _emotion_folders(base):
        number, label = _FOLDER.match(folder.name).groups()
        emotion = emotion_of(label, "ased", folder)
        for clip in clip_files(folder):
            m = _NAME.match(clip.stem)
            if not m:
                raise RrpoError(
                    "file name is not <e><n>-<sentence>-<repetition>-<gender>-<speaker> (e.g. a5-01-02-02-50.wav)", clip
                )
            letter, n, sentence, repetition, gender, speaker = m.groups()
            if emotion_of(letter, "ased", clip) != emotion or int(n) != int(number):
                raise RrpoError(f"file name says emotion '{letter}{n}' but the clip lies in '{folder.name}'", clip)
            records.append(
                make_utterance(
                    f"ased_{clip.stem}",
                    clip,
                    text="",
                    speaker=f"ased{speaker}",
                    language="am",
                    emotion=emotion,
                    split="train",
                    extra={"sentence": int(sentence), "repetition": int(repetition), "gender": GENDER[gender]},
                )
            )
    return records
