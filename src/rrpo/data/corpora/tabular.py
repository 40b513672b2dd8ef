"""A generic importer for a corpus listed in a table: ``rrpo prepare corpus=csv|jsonl root=LIST``.

Each row (a CSV/TSV row with a header, or a JSON object per line) names one utterance:

========== ======== =============================================================================
column     required meaning
========== ======== =============================================================================
audio      yes      audio file; a relative path is relative to the list file's folder
text       yes      transcript (may be empty)
speaker    yes      speaker name
emotion    yes      emotion label: the vocabulary or a common synonym (see ``generic`` mapping)
id         no       utterance id (default: the audio path relative to the list, without suffix)
language   no       ``zh``, ``en``...; rows without one take ``language=``
split      no       ``train`` (default), ``test``, ``evaluation``...
(others)   no       kept in ``extra``
========== ======== =============================================================================

``.tsv`` files are read tab-separated. Every problem names the file and line.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rrpo.data.corpora.common import emotion_of, make_utterance
from rrpo.data.manifest import Utterance
from rrpo.errors import RrpoError

REQUIRED = ("audio", "text", "speaker", "emotion")
OPTIONAL = ("id", "language", "split")


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise RrpoError(
                    f"missing column(s) {', '.join(missing)} in the header (found: {', '.join(header) or 'nothing'})",
                    path,
                    1,
                )
            reader.fieldnames = header
            for row in reader:
                if None in row:
                    raise RrpoError(
                        f"row has {len(header) + len(row[None])} fields, the header {len(header)}",
                        path,
                        reader.line_num,
                    )
                if all(v is None or not v.strip() for v in row.values()):
                    continue
                yield reader.line_num, {k: (v or "").strip() for k, v in row.items()}
    except UnicodeDecodeError:
        raise RrpoError("list is not UTF-8 text", path) from None
    except csv.Error as e:
        raise RrpoError(f"malformed CSV ({e})", path) from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise RrpoError(f"malformed JSON line ({e.msg})", path, i) from None
                if not isinstance(obj, dict):
                    raise RrpoError(f"a line must hold a JSON object, got {type(obj).__name__}", path, i)
                yield i, obj
    except UnicodeDecodeError:
        raise RrpoError("list is not UTF-8 text", path) from None


def _field(row: dict, key: str, path: Path, line: int, allow_empty: bool = False) -> str:
    v = row.get(key)
    if v is None or not isinstance(v, str) or (not allow_empty and not v.strip()):
        raise RrpoError(f"'{key}' must be a non-empty string, got {v!r}", path, line)
    return v.strip()


def import_table(path: Path, language: str | None, rows: Iterator[tuple[int, dict[str, Any]]]) -> list[Utterance]:
    """Records for the rows of a list file; ids must be unique (an error names both lines)."""
    if path.is_dir():
        raise RrpoError("is a folder; csv/jsonl take the list file as root=", path)
    records, seen = [], {}
    for line, row in rows:
        for key in REQUIRED:
            if key not in row:
                raise RrpoError(f"missing '{key}'", path, line)
        rel = _field(row, "audio", path, line)
        audio = Path(rel) if os.path.isabs(rel) else path.parent / rel
        uid = row.get("id") or os.path.splitext(rel)[0].replace("\\", "/").lstrip("./")
        if isinstance(uid, int) and not isinstance(uid, bool):
            uid = str(uid)
        if not isinstance(uid, str) or not uid.strip():
            raise RrpoError(f"'id' must be a non-empty string, got {uid!r}", path, line)
        uid = uid.strip()
        if uid in seen:
            raise RrpoError(f"duplicate id '{uid}' (first on line {seen[uid]})", path, line)
        seen[uid] = line
        lang = row.get("language") or language
        if not lang:
            raise RrpoError("row has no language; add a 'language' column or pass language=", path, line)
        emotion = emotion_of(_field(row, "emotion", path, line), "generic", path, line)
        extra = {k: v for k, v in row.items() if k not in REQUIRED + OPTIONAL + ("extra",) and v not in ("", None)}
        if isinstance(row.get("extra"), dict):
            extra.update(row["extra"])
        text = _field(row, "text", path, line, allow_empty=True)
        speaker = _field(row, "speaker", path, line)
        try:
            u = make_utterance(
                uid,
                audio,
                text=text,
                speaker=speaker,
                language=str(lang).strip(),
                emotion=emotion,
                split=str(row.get("split") or "train").strip(),
                extra=extra,
            )
        except RrpoError as e:
            raise RrpoError(f"{e.format()} (listed on line {line} of {path.name})") from None
        records.append(u)
    return records


def prepare_csv(root: Path, language: str | None = None) -> list[Utterance]:
    """Records from a CSV (or ``.tsv``) list with a header row."""
    return import_table(root, language, _csv_rows(root))


def prepare_jsonl(root: Path, language: str | None = None) -> list[Utterance]:
    """Records from a JSON-lines list, one object per line."""
    return import_table(root, language, _jsonl_rows(root))
