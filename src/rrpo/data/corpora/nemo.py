"""nEMO, Polish acted emotional speech (Christop, LREC-COLING 2024): 9 actors, six emotions.

Layout (the corpus' own; ``root`` may be this folder or a folder up to three levels above)::

    <root>/data.tsv                                   file_id, emotion, raw_text, normalized_text,
                                                      speaker_id, gender, age (tab-separated)
    <root>/samples/<SPEAKER>_<emotion>_<n>.wav        e.g. samples/EB0_anger_1.wav

Clips may be ``.wav`` (the original) or ``.flac`` (a compressed copy; ``data.tsv`` still names
``.wav``). Every clip needs a row of ``data.tsv`` (matched by name without suffix); the row's
emotion and speaker must agree with the file name. Rows without a clip are skipped (a partial copy).
The text is ``raw_text``; no official split (split ``train``).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from rrpo.data.corpora.common import clip_files, emotion_of, find_layout_root, make_utterance
from rrpo.data.manifest import Utterance
from rrpo.errors import RrpoError

COLUMNS = ("file_id", "emotion", "raw_text", "speaker_id", "gender")
_NAME = re.compile(r"^([A-Za-z0-9]+)_([A-Za-z]+)_(\d+)$")
GENDER = {"female": "F", "male": "M"}


def read_table(path: Path) -> dict[str, tuple[dict[str, str], int]]:
    """Clip name without suffix -> (row, line number) from ``data.tsv``; errors name the line."""
    out: dict[str, tuple[dict[str, str], int]] = {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise RrpoError(f"missing column(s) {', '.join(missing)} in the header", path, 1)
            reader.fieldnames = header
            for row in reader:
                if None in row:
                    raise RrpoError(f"row has more fields than the header's {len(header)}", path, reader.line_num)
                row = {k: (v or "").strip() for k, v in row.items()}
                if not any(row.values()):
                    continue
                stem = Path(row["file_id"]).stem
                if not stem:
                    raise RrpoError("empty file_id", path, reader.line_num)
                if stem in out:
                    raise RrpoError(f"clip '{stem}' listed twice (first on line {out[stem][1]})", path, reader.line_num)
                out[stem] = (row, reader.line_num)
    except UnicodeDecodeError:
        raise RrpoError("data.tsv is not UTF-8 text", path) from None
    except OSError as e:
        raise RrpoError(f"cannot read data.tsv ({e.strerror})", path) from None
    return out


def _is_nemo_root(d: Path) -> bool:
    return (d / "data.tsv").is_file() and (d / "samples").is_dir()


def prepare(root: Path, language: str | None = None) -> list[Utterance]:
    """Records for every clip of ``samples/`` with its ``data.tsv`` row (language pl, split train)."""
    base = find_layout_root(root, _is_nemo_root, "nEMO corpus folder (data.tsv beside samples/)")
    table_path = base / "data.tsv"
    table = read_table(table_path)
    records = []
    for clip in clip_files(base / "samples"):
        m = _NAME.match(clip.stem)
        if not m:
            raise RrpoError("file name is not <SPEAKER>_<emotion>_<n> (e.g. EB0_anger_1.wav)", clip)
        if clip.stem not in table:
            raise RrpoError(f"clip has no row in {table_path.name}", clip)
        row, line = table[clip.stem]
        emotion = emotion_of(row["emotion"], "nemo", table_path, line)
        speaker = row["speaker_id"]
        if emotion_of(m.group(2), "nemo", clip) != emotion or m.group(1) != speaker:
            raise RrpoError(
                f"row says speaker '{speaker}', emotion '{row['emotion']}' but the file is named '{clip.name}'",
                table_path,
                line,
            )
        extra = {"take": int(m.group(3))}
        if row["gender"].lower() in GENDER:
            extra["gender"] = GENDER[row["gender"].lower()]
        if row.get("age", "").isdigit():
            extra["age"] = int(row["age"])
        records.append(
            make_utterance(
                f"nemo_{clip.stem}",
                clip,
                text=row["raw_text"],
                speaker=speaker,
                language="pl",
                emotion=emotion,
                split="train",
                extra=extra,
            )
        )
    return records
