"""Manifests: one JSON object per utterance, one utterance per line.

Fields: ``id, audio, sampling_rate, duration, text, speaker, language, emotion, split`` and a free
``extra`` mapping. ``audio`` is a path; a relative path is read relative to the manifest's folder.
``emotion`` is always a label of :data:`rrpo.data.emotions.EMOTIONS`. Records are validated on read
and on write; errors name the file and line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rrpo.data.emotions import EMOTIONS
from rrpo.errors import RrpoError
from rrpo.io import atomic_open

FIELDS = ("id", "audio", "sampling_rate", "duration", "text", "speaker", "language", "emotion", "split")


@dataclass
class Utterance:
    id: str
    audio: str
    sampling_rate: int
    duration: float
    text: str
    speaker: str
    language: str
    emotion: str
    split: str
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ``ValueError`` with the reason if a field is missing or wrong."""
        for name in ("id", "audio", "speaker", "language", "split"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"field '{name}' must be a non-empty string, got {v!r}")
        if not isinstance(self.text, str):
            raise ValueError(f"field 'text' must be a string, got {self.text!r}")
        if not isinstance(self.sampling_rate, int) or isinstance(self.sampling_rate, bool) or self.sampling_rate <= 0:
            raise ValueError(f"field 'sampling_rate' must be a positive integer, got {self.sampling_rate!r}")
        if (
            not isinstance(self.duration, (int, float))
            or isinstance(self.duration, bool)
            or not 0 < self.duration < math.inf
        ):
            raise ValueError(f"field 'duration' must be a positive number of seconds, got {self.duration!r}")
        if self.emotion not in EMOTIONS:
            raise ValueError(f"emotion '{self.emotion}' is not in the vocabulary ({', '.join(EMOTIONS)})")
        if not isinstance(self.extra, dict):
            raise ValueError(f"field 'extra' must be a mapping, got {self.extra!r}")

    @property
    def emotion_labelled(self) -> bool:
        """False for a record of a corpus without emotion labels (``extra.emotion_labelled: false``,
        written by the LibriSpeech, AN4 and AISHELL-1 preparers): its ``emotion`` is a placeholder
        that no emotion model may learn from or be scored on."""
        return self.extra.get("emotion_labelled", True) is not False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> Utterance:
        if not isinstance(obj, dict):
            raise ValueError(f"a record must be a JSON object, got {type(obj).__name__}")
        missing = [k for k in FIELDS if k not in obj]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        unknown = [k for k in obj if k not in FIELDS and k != "extra"]
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)} (put free data under 'extra')")
        u = cls(**{k: obj[k] for k in FIELDS}, extra=obj.get("extra", {}))
        u.validate()
        return u


class Manifest(list):
    """A list of :class:`Utterance` that remembers the file it came from."""

    def __init__(self, records: Iterable[Utterance] = (), path: str | os.PathLike | None = None):
        super().__init__(records)
        self.path = None if path is None else Path(path)

    def audio_path(self, utt: Utterance) -> Path:
        p = Path(utt.audio)
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        return p

    def by_id(self) -> dict[str, Utterance]:
        return {u.id: u for u in self}

    def select(
        self,
        *,
        split: str | Iterable[str] | None = None,
        language: str | Iterable[str] | None = None,
        emotions: Iterable[str] | None = None,
        speakers: Iterable[str] | None = None,
        exclude_speakers: Iterable[str] | None = None,
    ) -> Manifest:
        """The records matching every given filter (a string or a collection of accepted values).

        A record without an emotion label (:attr:`Utterance.emotion_labelled` false) never passes
        an ``emotions`` filter: asking for emotions asks for labelled records."""

        def norm(x):
            return None if x is None else ({x} if isinstance(x, str) else set(x))

        sp, lg, em, sk, ex = map(norm, (split, language, emotions, speakers, exclude_speakers))
        out = [
            u
            for u in self
            if (sp is None or u.split in sp)
            and (lg is None or u.language in lg)
            and (em is None or (u.emotion in em and u.emotion_labelled))
            and (sk is None or u.speaker in sk)
            and (ex is None or u.speaker not in ex)
        ]
        return Manifest(out, self.path)


def _list_field(help: str) -> Any:
    return dataclasses.field(default_factory=list, metadata={"help": help})


@dataclass
class Selection:
    """Which utterances of a manifest to use: the one selection type of every config and verb.

    Each field is a list of accepted values and ``[]`` means all (there is no ``null``); a record
    passes when it passes every non-empty field. On the command line: ``splits=[test]``,
    ``speakers=[a, b]``."""

    splits: list[str] = _list_field("keep only these manifest splits ([] = all)")
    languages: list[str] = _list_field("keep only these languages ([] = all)")
    speakers: list[str] = _list_field("keep only these speakers ([] = all)")
    exclude_speakers: list[str] = _list_field("leave out these speakers (e.g. a held-out one)")

    #: Earlier spellings of these keys: loading one is an error that names the new key.
    RENAMED: ClassVar[dict[str, str]] = {"split": "splits", "language": "languages"}

    def apply(self, man: Manifest, emotions: Iterable[str] | None = None) -> Manifest:
        """The records of ``man`` that pass (and whose emotion is in ``emotions``, when given)."""
        return man.select(
            split=self.splits or None,
            language=self.languages or None,
            speakers=self.speakers or None,
            exclude_speakers=self.exclude_speakers or None,
            emotions=emotions,
        )


@dataclass
class ManifestFilter(Selection):
    """A manifest and the :class:`Selection` of its utterances; shared by every config that reads
    prompts or held-out texts from a manifest."""

    manifest: str = dataclasses.field(default="", metadata={"help": "manifest (JSONL) to read"})
    emotions: list[str] = _list_field("target emotions (empty = every emotion all models know)")


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate a manifest; every problem names the file and line."""
    path = Path(path)
    if not path.exists():
        raise RrpoError("manifest not found", path)
    if path.is_dir():
        raise RrpoError("is a folder, expected a manifest file (.jsonl)", path)
    records: list[Utterance] = []
    seen: dict[str, int] = {}
    try:
        f = open(path, "rb")
    except OSError as e:
        raise RrpoError(f"cannot read manifest ({e.strerror})", path) from None
    with f:
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if i == 1 else "utf-8")
            except UnicodeDecodeError:
                raise RrpoError("manifest line is not UTF-8 text", path, i) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise RrpoError(f"malformed manifest line ({e.msg})", path, i) from None
            try:
                u = Utterance.from_json(obj)
            except (ValueError, TypeError) as e:
                raise RrpoError(f"invalid record: {e}", path, i) from None
            if u.id in seen:
                raise RrpoError(f"duplicate id '{u.id}' (first on line {seen[u.id]})", path, i)
            seen[u.id] = i
            records.append(u)
    if not records:
        raise RrpoError("manifest holds no records", path)
    return Manifest(records, path)


def write_manifest(path: str | os.PathLike, records: Iterable[Utterance]) -> Manifest:
    """Validate every record and write the manifest atomically (an earlier file stays on error)."""
    path = Path(path)
    records = list(records)
    seen: set[str] = set()
    for n, u in enumerate(records, 1):
        try:
            u.validate()
        except ValueError as e:
            raise RrpoError(f"record {n} ({getattr(u, 'id', '?')}) is invalid: {e}", path) from None
        if u.id in seen:
            raise RrpoError(f"duplicate id '{u.id}' (record {n})", path)
        seen.add(u.id)
    if not records:
        raise RrpoError("refusing to write a manifest with no records", path)
    with atomic_open(path) as f:
        for u in records:
            f.write(json.dumps(u.to_json(), ensure_ascii=False) + "\n")
    return Manifest(records, path)


def stratified(utts: Iterable, k: int) -> list:
    """Up to ``k`` of ``utts`` spread evenly over their emotions: each emotion's utterances in id order,
    taken one per emotion in turn (emotions in order of first appearance). Example: ids a1 a2 a3
    (angry) and n1 (neutral), k = 3 → a1, n1, a2."""
    by: dict[str, list] = {}
    for u in sorted(utts, key=lambda u: u.id):
        by.setdefault(u.emotion, []).append(u)
    queues = list(by.values())
    out: list = []
    depth = 0
    while len(out) < k and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(out) < k:
                out.append(q[depth])
        depth += 1
    return out
