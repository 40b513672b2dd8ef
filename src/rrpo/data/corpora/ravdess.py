"""RAVDESS, the Ryerson Audio-Visual Database of Emotional Speech and Song (24 actors, English).

Every file is named by seven two-digit fields, ``MM-VV-EE-II-SS-RR-AA.wav``:
modality (01 full-AV, 02 video-only, 03 audio-only), vocal channel (01 speech, 02 song), emotion
(01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised), intensity
(01 normal, 02 strong), statement (01 "Kids are talking by the door", 02 "Dogs are sitting by the
door"), repetition (01, 02) and actor (01-24; odd male, even female). The usual layout is
``Actor_NN/<name>.wav`` (speech and song archives alike); every ``*.wav`` below ``root`` is read.
RAVDESS has no official split: split ``train``; hold actors out by filter.
"""

from __future__ import annotations

import re
from pathlib import Path

from rrpo.data.corpora.common import audio_files, emotion_of, make_utterance
from rrpo.data.manifest import Utterance
from rrpo.errors import RrpoError

STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
MODALITIES = {"01": "full-AV", "02": "video-only", "03": "audio-only"}
CHANNELS = {"01": "speech", "02": "song"}
INTENSITIES = {"01": "normal", "02": "strong"}
REPETITIONS = {"01": 1, "02": 2}

_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


def parse_name(path: Path) -> dict:
    """The seven fields of a RAVDESS file name, decoded; a name that does not fit is an error."""
    m = _NAME.match(path.stem)
    if not m:
        raise RrpoError(
            "file name is not a RAVDESS identifier "
            "(modality-channel-emotion-intensity-statement-repetition-actor, e.g. 03-01-06-01-02-01-12.wav)",
            path,
        )
    mod, ch, emo, inten, stmt, rep, actor = m.groups()
    for code, table, name in (
        (mod, MODALITIES, "modality"),
        (ch, CHANNELS, "vocal channel"),
        (inten, INTENSITIES, "intensity"),
        (stmt, STATEMENTS, "statement"),
        (rep, REPETITIONS, "repetition"),
    ):
        if code not in table:
            raise RrpoError(f"unknown RAVDESS {name} code '{code}' (known: {', '.join(table)})", path)
    n_actor = int(actor)
    if not 1 <= n_actor <= 24:
        raise RrpoError(f"RAVDESS actor number {actor} outside 01-24", path)
    return {
        "emotion": emotion_of(emo, "ravdess", path),
        "emotion_code": emo,
        "modality": MODALITIES[mod],
        "vocal_channel": CHANNELS[ch],
        "intensity": INTENSITIES[inten],
        "statement": int(stmt),
        "text": STATEMENTS[stmt],
        "repetition": REPETITIONS[rep],
        "actor": n_actor,
        "gender": "M" if n_actor % 2 else "F",
    }


def prepare(root: Path, language: str | None = None) -> list[Utterance]:
    """Records for every RAVDESS ``*.wav`` below ``root`` (language en, split train)."""
    records = []
    for wav in audio_files(root, recursive=True):
        f = parse_name(wav)
        extra = {k: f[k] for k in ("intensity", "statement", "repetition", "vocal_channel", "modality", "gender")}
        records.append(
            make_utterance(
                f"ravdess_{wav.stem}",
                wav,
                text=f["text"],
                speaker=f"Actor_{f['actor']:02d}",
                language="en",
                emotion=f["emotion"],
                split="train",
                extra=extra,
            )
        )
    return records
