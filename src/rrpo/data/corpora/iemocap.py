"""IEMOCAP (Busso et al., 2008): five sessions of dyadic English conversation, two actors each.

Layout (``root`` holds ``Session1`` ... ``Session5``, or lies up to three levels above them)::

    SessionN/sentences/wav/<dialog>/<utt>.wav
    SessionN/dialog/EmoEvaluation/<dialog>.txt     "[start - end]<TAB><utt><TAB><emo><TAB>[V, A, D]"
    SessionN/dialog/transcriptions/<dialog>.txt    "<utt> [start-end]: <text>"

The usual 4-class setting: neutral, happy (with excited merged in), angry, sad; utterances with any
other consensus label (frustrated, surprised, fearful, disgusted, other, none ``xxx``) are left
out. ``extra.fold`` is the session number for leave-one-session-out evaluation; the speaker is the
session plus the sex of the actor speaking (``Ses01F``), read from the utterance name. IEMOCAP has
no official split: split ``train``; hold out a fold by filter.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from rrpo.data.corpora.common import emotion_of, find_layout_root, make_utterance, read_text_file
from rrpo.data.manifest import Utterance
from rrpo.errors import RrpoError

log = logging.getLogger(__name__)

#: Consensus labels outside the 4-class setting; utterances carrying them are left out.
DROPPED = frozenset({"fru", "sur", "fea", "dis", "oth", "xxx"})

_EVAL = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[\s*([^\]]*)\]\s*$")
_TRANS = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s?(.*)$")
_UTT = re.compile(r"^(Ses0?(\d+))[MF]_.*_([MF])[^_]*$")


def _session_dirs(d: Path) -> list[Path]:
    return [
        s
        for s in sorted(d.glob("Session*"))
        if s.is_dir() and re.fullmatch(r"Session\d+", s.name) and (s / "dialog" / "EmoEvaluation").is_dir()
    ]


def read_evaluation(path: Path) -> list[tuple[str, str, float, float, list[float], int]]:
    """(utt, label, start, end, [V, A, D], line) for each turn line of an EmoEvaluation file."""
    out = []
    for i, line in enumerate(read_text_file(path, fallback="latin-1").splitlines(), 1):
        if not line.startswith("["):
            continue  # header, blank lines and the per-evaluator lines
        m = _EVAL.match(line)
        if not m:
            raise RrpoError("evaluation line is not '[start - end] <utt> <emotion> [V, A, D]'", path, i)
        start, end, utt, label, vad = m.groups()
        try:
            vad_values = [float(v) for v in vad.split(",")]
        except ValueError:
            raise RrpoError(f"bad [V, A, D] values '[{vad}]'", path, i) from None
        out.append((utt, label, float(start), float(end), vad_values, i))
    return out


def read_transcriptions(path: Path) -> dict[str, str]:
    """Utterance -> text from a transcriptions file (lines that are not utterances are skipped)."""
    out = {}
    for line in read_text_file(path, fallback="latin-1").splitlines():
        m = _TRANS.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def prepare(root: Path, language: str | None = None) -> list[Utterance]:
    """Records for the 4-class IEMOCAP utterances with audio (language en, split train, fold = session)."""
    base = find_layout_root(root, lambda d: bool(_session_dirs(d)), "IEMOCAP folder of Session1..5")
    records, missing = [], 0
    for session in _session_dirs(base):
        fold = int(session.name[len("Session") :])
        for ev_path in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
            if ev_path.name.startswith("."):
                continue
            dialog = ev_path.stem
            trans_path = session / "dialog" / "transcriptions" / f"{dialog}.txt"
            texts = None
            for utt, label, start, end, vad, lineno in read_evaluation(ev_path):
                if label.lower() in DROPPED:
                    continue
                emotion = emotion_of(label, "iemocap", ev_path, lineno)
                wav = session / "sentences" / "wav" / dialog / f"{utt}.wav"
                if not wav.is_file():
                    missing += 1
                    continue
                m = _UTT.match(utt)
                if not m:
                    raise RrpoError(f"utterance name '{utt}' is not SesNN<F|M>_<dialog>_<F|M>NNN", ev_path, lineno)
                if texts is None:
                    texts = read_transcriptions(trans_path)
                if utt not in texts:
                    raise RrpoError(f"utterance '{utt}' has no transcription line", trans_path)
                extra = {
                    "fold": fold,
                    "dialog": dialog,
                    "label": label.lower(),
                    "start": start,
                    "end": end,
                    "vad": vad,
                    "improvised": "_impro" in dialog,
                    "gender": m.group(3),
                }
                records.append(
                    make_utterance(
                        f"iemocap_{utt}",
                        wav,
                        text=texts[utt],
                        speaker=f"Ses{int(m.group(2)):02d}{m.group(3)}",
                        language="en",
                        emotion=emotion,
                        split="train",
                        extra=extra,
                    )
                )
    if missing:
        log.warning("iemocap: %d labelled utterances have no audio file and were left out", missing)
    return records
