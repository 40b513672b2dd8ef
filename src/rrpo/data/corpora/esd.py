"""ESD, the Emotional Speech Dataset (Zhou et al., ICASSP 2021): 10 Mandarin + 10 English speakers.

Layout (the corpus' own; ``root`` may be this folder or a folder up to three levels above)::

    Emotion Speech Dataset/<spk>/<spk>.txt                      id <TAB> text <TAB> emotion label
    Emotion Speech Dataset/<spk>/<Emotion>/<spk>_<NNNNNN>.wav   flat, or
    Emotion Speech Dataset/<spk>/<Emotion>/{train,evaluation,test}/<spk>_<NNNNNN>.wav

Speakers 0001-0010 speak Mandarin and their transcripts carry Chinese labels (中立 生气 快乐 伤心
惊喜); 0011-0020 speak English. The emotion of a record is the folder its audio lies in (the
transcript label is cross-checked: a disagreement is an error). The official split goes by the
index k of an utterance within its emotion, file number = offset + k with offsets Neutral 0,
Angry 350, Happy 700, Sad 1050, Surprise 1400: k 1-20 ``evaluation``, 21-50 ``test``, 51-350
``train``. A record is written for every transcript line whose audio exists.
"""

from __future__ import annotations

import re
from pathlib import Path

from rrpo.data.corpora.common import audio_files, emotion_of, find_layout_root, make_utterance, read_text_file
from rrpo.data.manifest import Utterance
from rrpo.errors import RrpoError

#: File-number offset of each emotion's block of 350 utterances.
OFFSETS = {"neutral": 0, "angry": 350, "happy": 700, "sad": 1050, "surprise": 1400}
PER_EMOTION = 350

#: Speaker sex, from the corpus' README.
SPEAKER_GENDER = {
    "0001": "F",
    "0002": "F",
    "0003": "F",
    "0004": "M",
    "0005": "M",
    "0006": "M",
    "0007": "F",
    "0008": "M",
    "0009": "F",
    "0010": "M",
    "0011": "M",
    "0012": "M",
    "0013": "M",
    "0014": "M",
    "0015": "F",
    "0016": "F",
    "0017": "F",
    "0018": "F",
    "0019": "F",
    "0020": "M",
}

_ZH_LABELS = {"中立", "生气", "快乐", "伤心", "惊喜"}
_UTT_ID = re.compile(r"^(\d{4})_(\d{6})$")
_LINE = re.compile(r"^\s*(\d{4}_\d{6})\s+(.*?)\s+(\S+)\s*$")


def official_split(k: int) -> str:
    """ESD's split of the k-th utterance (1-based) of an emotion: 1-20 evaluation, 21-50 test, else train."""
    if not 1 <= k <= PER_EMOTION:
        raise ValueError(f"utterance index {k} outside 1..{PER_EMOTION}")
    return "evaluation" if k <= 20 else "test" if k <= 50 else "train"


def read_transcript(path: Path) -> dict[str, tuple[str, str, int]]:
    """Utterance id -> (text, emotion label as written, line number) from ``<spk>/<spk>.txt``.

    Lines are ``id <TAB> text <TAB> label``; lines whose separators are spaces are read too.
    """
    out: dict[str, tuple[str, str, int]] = {}
    for i, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) == 3 and _UTT_ID.match(parts[0].strip()):
            uid, text, label = (p.strip() for p in parts)
        else:
            m = _LINE.match(line)
            if not m:
                raise RrpoError("transcript line is not '<id> <TAB> <text> <TAB> <emotion>'", path, i)
            uid, text, label = m.groups()
        if uid in out:
            raise RrpoError(f"utterance '{uid}' appears twice (first on line {out[uid][2]})", path, i)
        out[uid] = (text, label, i)
    return out


def _language(speaker: str, label: str) -> str:
    """Speakers 0001-0010 are Mandarin; beyond the 20 official speakers the label's script decides."""
    if speaker in SPEAKER_GENDER:
        return "zh" if int(speaker) <= 10 else "en"
    return "zh" if label in _ZH_LABELS else "en"


def _speaker_dirs(base: Path) -> list[Path]:
    return [
        d
        for d in sorted(base.iterdir())
        if d.is_dir() and re.fullmatch(r"\d{4}", d.name) and (d / f"{d.name}.txt").is_file()
    ]


def _is_esd_root(d: Path) -> bool:
    try:
        return bool(_speaker_dirs(d))
    except OSError:
        return False


def prepare(root: Path, language: str | None = None) -> list[Utterance]:
    """Records for every ESD utterance with audio, all speakers, official split."""
    base = find_layout_root(root, _is_esd_root, "ESD corpus folder (<speaker>/<speaker>.txt)")
    records = []
    for spk_dir in _speaker_dirs(base):
        spk = spk_dir.name
        wavs = audio_files(spk_dir, recursive=True)
        if not wavs:
            continue  # transcripts without audio (e.g. a partial copy)
        transcript_path = spk_dir / f"{spk}.txt"
        transcript = read_transcript(transcript_path)
        for wav in wavs:
            rel = wav.relative_to(spk_dir)
            m = _UTT_ID.match(wav.stem)
            if len(rel.parts) < 2 or not m or m.group(1) != spk:
                raise RrpoError(f"not an ESD audio path (expected {spk}/<Emotion>/{spk}_NNNNNN.wav)", wav)
            emotion = emotion_of(rel.parts[0], "esd", wav.parent)
            if wav.stem not in transcript:
                raise RrpoError(f"utterance '{wav.stem}' has no line in {transcript_path.name}", wav)
            text, label, lineno = transcript[wav.stem]
            if emotion_of(label, "esd", transcript_path, lineno) != emotion:
                raise RrpoError(
                    f"transcript labels '{wav.stem}' '{label}' but its audio lies in '{rel.parts[0]}'",
                    transcript_path,
                    lineno,
                )
            number = int(m.group(2))
            k = number - OFFSETS[emotion]
            if not 1 <= k <= PER_EMOTION:
                raise RrpoError(
                    f"file number {number} is outside the {emotion} block "
                    f"({OFFSETS[emotion] + 1}-{OFFSETS[emotion] + PER_EMOTION})",
                    wav,
                )
            extra = {"sentence": k, "esd_label": label}
            if spk in SPEAKER_GENDER:
                extra["gender"] = SPEAKER_GENDER[spk]
            records.append(
                make_utterance(
                    f"esd_{wav.stem}",
                    wav,
                    text=text,
                    speaker=spk,
                    language=_language(spk, label),
                    emotion=emotion,
                    split=official_split(k),
                    extra=extra,
                )
            )
    return records
