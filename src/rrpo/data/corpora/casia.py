"""CASIA Chinese emotional speech corpus (Institute of Automation, Chinese Academy of Sciences).

Layout (the corpus' own)::

    <root>/<speaker>/<emotion>/<id>.wav        e.g. liuchanhg/angry/201.wav
    <root>/相同的文本201--250.txt               GBK, one line per sentence: "201. <text>"

``root`` may be the folder holding the speaker folders or any folder up to three levels above it.
The sentences are parallel (the same text in every emotion and for every speaker), so the sentence
id is kept in ``extra.sentence``. CASIA has no official split: every record gets split ``train``;
hold out a speaker with ``Manifest.select(exclude_speakers=...)``.
"""

from __future__ import annotations

import re
from pathlib import Path

from rrpo.data.corpora.common import audio_files, emotion_of, find_layout_root, make_utterance, read_text_file
from rrpo.data.emotions import CORPUS_MAPPINGS
from rrpo.data.manifest import Utterance
from rrpo.errors import RrpoError

#: The four speakers of the corpus and their sex.
SPEAKER_GENDER = {"liuchanhg": "F", "zhaoquanyin": "F", "wangzhe": "M", "ZhaoZuoxiang": "M"}

_NUMBERED = re.compile(r"^\s*(\d+)\s*[.．、:：]?\s*(.*?)\s*$")
_RANGE = re.compile(r"(\d+)\s*-+\s*(\d+)")


def _emotion_dirs(speaker_dir: Path) -> list[Path]:
    """The visible sub-folders of a folder, sorted (empty if it cannot be listed)."""
    try:
        return [d for d in sorted(speaker_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    except OSError:
        return []


def _is_casia_root(d: Path) -> bool:
    """A folder whose sub-sub-folders are named by CASIA emotions and hold WAV files."""
    known = CORPUS_MAPPINGS["casia"]
    for spk in _emotion_dirs(d):
        for emo in _emotion_dirs(spk):
            try:
                if emo.name.lower() in known and any(
                    p.suffix.lower() == ".wav" and p.stem.isdigit() for p in emo.iterdir()
                ):
                    return True
            except OSError:
                continue
    return False


def read_transcripts(folder: Path) -> dict[int, str]:
    """Sentence id -> text from the transcript files in ``folder``.

    A transcript is a ``*.txt`` whose name holds an id range (``相同的文本201--250.txt``) or whose
    every line is numbered. Lines are ``"<id>. <text>"``; unnumbered lines of a file with an id
    range in its name are numbered from the range's first id. Other ``*.txt`` files are ignored.
    """
    texts: dict[int, str] = {}
    for path in sorted(folder.glob("*.txt")):
        if path.name.startswith("."):
            continue
        rng = _RANGE.search(path.stem)
        lines = [(i, ln) for i, ln in enumerate(read_text_file(path).splitlines(), 1) if ln.strip()]
        parsed = [_NUMBERED.match(ln) for _, ln in lines]
        if not rng and not (lines and all(m and m.group(2) for m in parsed)):
            continue
        for n, ((lineno, line), m) in enumerate(zip(lines, parsed)):
            if m and m.group(2):
                sid, text = int(m.group(1)), m.group(2)
            else:
                sid, text = int(rng.group(1)) + n, line.strip()
            if sid in texts and texts[sid] != text:
                raise RrpoError(f"sentence {sid} has two different transcripts", path, lineno)
            texts[sid] = text
    return texts


def prepare(root: Path, language: str | None = None) -> list[Utterance]:
    """Records for every ``<speaker>/<emotion>/<id>.wav`` (language zh, split train)."""
    base = find_layout_root(root, _is_casia_root, "CASIA corpus folder (<speaker>/<emotion>/<id>.wav)")
    texts = read_transcripts(base) or read_transcripts(base.parent)
    if not texts:
        raise RrpoError("no CASIA transcript (相同的文本201--250.txt) beside the speaker folders", base)
    records = []
    for spk in _emotion_dirs(base):
        for emo_dir in _emotion_dirs(spk):
            wavs = audio_files(emo_dir)
            if not wavs:
                continue
            emotion = emotion_of(emo_dir.name, "casia", emo_dir)
            for wav in wavs:
                if not wav.stem.isdigit():
                    raise RrpoError("file name is not a CASIA sentence id (expected e.g. 201.wav)", wav)
                sid = int(wav.stem)
                if sid not in texts:
                    raise RrpoError(f"no transcript line for sentence {sid} in the *.txt files of {base}", wav)
                extra = {"sentence": sid}
                if spk.name in SPEAKER_GENDER:
                    extra["gender"] = SPEAKER_GENDER[spk.name]
                records.append(
                    make_utterance(
                        f"casia_{spk.name}_{emo_dir.name.lower()}_{sid}",
                        wav,
                        text=texts[sid],
                        speaker=spk.name,
                        language="zh",
                        emotion=emotion,
                        split="train",
                        extra=extra,
                    )
                )
    return records
