"""CREMA-D, the Crowd-sourced Emotional Multimodal Actors Dataset (91 actors, 12 sentences, English).

Layout: ``<root>/AudioWAV/<actor>_<sentence>_<EMO>_<level>.wav`` (``root`` may also be the
``AudioWAV`` folder itself), e.g. ``1001_DFA_ANG_XX.wav``. Emotions ANG DIS FEA HAP NEU SAD;
levels LO, MD, HI or XX (unspecified) are kept in ``extra``. If ``VideoDemographics.csv`` lies in
the root (ActorID, Age, Sex, ...), the actor's sex and age are added to ``extra``. CREMA-D has no
official split: split ``train``; hold actors out by filter.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from rrpo.data.corpora.common import audio_files, emotion_of, make_utterance
from rrpo.data.manifest import Utterance
from rrpo.errors import RrpoError

#: The 12 sentences of CREMA-D by their file-name code.
SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}

_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Za-z]{3})_([A-Z]{2})$")


def _audio_dir(root: Path) -> Path:
    if (root / "AudioWAV").is_dir():
        return root / "AudioWAV"
    if any(_NAME.match(p.stem) for p in audio_files(root)):
        return root
    raise RrpoError("no CREMA-D AudioWAV folder here (expected <root>/AudioWAV/1001_DFA_ANG_XX.wav)", root)


def read_demographics(path: Path) -> dict[str, dict]:
    """ActorID -> {"gender", "age"} from ``VideoDemographics.csv`` (empty if the file is absent)."""
    if not path.is_file():
        return {}
    out = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "ActorID" not in reader.fieldnames:
            raise RrpoError("demographics file has no ActorID column", path)
        for row in reader:
            info = {}
            sex = (row.get("Sex") or "").strip().lower()
            if sex in ("male", "female"):
                info["gender"] = "M" if sex == "male" else "F"
            age = (row.get("Age") or "").strip()
            if age.isdigit():
                info["age"] = int(age)
            out[(row.get("ActorID") or "").strip()] = info
    return out


def prepare(root: Path, language: str | None = None) -> list[Utterance]:
    """Records for every ``AudioWAV/*.wav`` (language en, split train)."""
    wav_dir = _audio_dir(root)
    demo = read_demographics(root / "VideoDemographics.csv")
    records = []
    for wav in audio_files(wav_dir):
        m = _NAME.match(wav.stem)
        if not m:
            raise RrpoError("file name is not <actor>_<sentence>_<EMO>_<level> (e.g. 1001_DFA_ANG_XX.wav)", wav)
        actor, sent, emo, level = m.groups()
        if sent not in SENTENCES:
            raise RrpoError(f"unknown CREMA-D sentence code '{sent}' (known: {', '.join(SENTENCES)})", wav)
        if level not in LEVELS:
            raise RrpoError(f"unknown CREMA-D level '{level}' (known: {', '.join(LEVELS)})", wav)
        extra = {"sentence": sent, "level": level, "intensity": LEVELS[level], **demo.get(actor, {})}
        records.append(
            make_utterance(
                f"cremad_{wav.stem}",
                wav,
                text=SENTENCES[sent],
                speaker=actor,
                language="en",
                emotion=emotion_of(emo, "crema-d", wav),
                split="train",
                extra=extra,
            )
        )
    return records
