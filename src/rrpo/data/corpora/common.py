"""Helpers shared by the corpus preparers: records from audio files, label mapping, transcript
decoding and finding a corpus' folder below the root a user passes."""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from rrpo.data.manifest import Utterance
from rrpo.errors import RrpoError

#: ``prepare(root, language) -> records``; see :mod:`rrpo.data.corpora`.
Preparer = Callable[[Path, "str | None"], list[Utterance]]

#: ``extra`` of the records of a corpus without emotion labels (LibriSpeech, AN4, AISHELL-1): the
#: manifest needs an emotion, so they carry the placeholder ``neutral``, and this flag keeps every
#: emotion model from reading it as a label (see :attr:`rrpo.data.manifest.Utterance.emotion_labelled`).
NO_EMOTION_LABEL: dict[str, Any] = {"emotion_labelled": False}

T = TypeVar("T")


def progress(items: Iterable[T], corpus: str, unit: str) -> Iterable[T]:
    """``items`` behind a progress bar on a terminal (none when the output is not a terminal)."""
    from tqdm import tqdm

    return tqdm(items, desc=corpus, unit=unit, leave=False, disable=None)


def make_utterance(
    id: str,
    audio: Path,
    *,
    text: str,
    speaker: str,
    language: str,
    emotion: str,
    split: str,
    extra: dict[str, Any] | None = None,
) -> Utterance:
    """A manifest record for ``audio``, its rate and duration read from the file's header.

    The audio path is made absolute (symbolic links are kept as the user laid them out). A
    missing, empty, truncated or non-audio file raises :class:`RrpoError` naming it.
    """
    from rrpo.data.audio import audio_info

    sr, duration, _ = audio_info(audio)
    return Utterance(
        id=id,
        audio=os.path.abspath(audio),
        sampling_rate=sr,
        duration=duration,
        text=text,
        speaker=speaker,
        language=language,
        emotion=emotion,
        split=split,
        extra=dict(extra or {}),
    )


def emotion_of(label: str, corpus: str, path: str | os.PathLike, line: int | None = None) -> str:
    """The vocabulary label for a corpus label; an unknown one is an error naming ``path`` (and line)."""
    from rrpo.data.emotions import normalise_emotion

    try:
        return normalise_emotion(label, corpus)
    except RrpoError as e:
        raise RrpoError(e.reason, path, line) from None


def read_text_file(path: Path, fallback: str = "gb18030") -> str:
    """Decode a transcript: a BOM (UTF-8/UTF-16) decides, else UTF-8, else ``fallback`` (GBK family).

    Corpora from different sources ship their transcripts in different encodings, so the bytes
    decide. Stray BOMs at the start of lines are removed.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RrpoError("transcript file not found", path) from None
    except OSError as e:
        raise RrpoError(f"cannot read transcript ({e.strerror})", path) from None
    if raw.startswith(codecs.BOM_UTF8):
        encodings = ["utf-8-sig"]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ["utf-16"]
    else:
        encodings = ["utf-8", fallback]
    for enc in encodings:
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise RrpoError(f"transcript is neither UTF-8 nor {fallback} text", path)
    return text.replace("\ufeff", "")


def walk_dirs(root: Path, max_depth: int) -> Iterator[tuple[int, Path]]:
    """(depth, folder) for ``root`` and the folders below it, breadth first, sorted, hidden ones skipped."""
    level = [root]
    for depth in range(max_depth + 1):
        nxt = []
        for d in level:
            yield depth, d
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError:
                continue
            nxt.extend(Path(e.path) for e in entries if e.is_dir() and not e.name.startswith("."))
        level = nxt


def find_layout_root(root: Path, is_root: Callable[[Path], bool], what: str, max_depth: int = 3) -> Path:
    """The shallowest folder at or below ``root`` for which ``is_root`` holds; one only, else an error."""
    found: list[Path] = []
    found_depth = None
    for depth, d in walk_dirs(root, max_depth):
        if found_depth is not None and depth > found_depth:
            break
        if is_root(d):
            found.append(d)
            found_depth = depth
    if not found:
        raise RrpoError(f"no {what} found here or up to {max_depth} folders below", root)
    if len(found) > 1:
        names = ", ".join(str(p) for p in found[:4])
        raise RrpoError(f"found more than one {what}: {names}; pass one of them as root=", root)
    return found[0]


def audio_files(folder: Path, suffixes: tuple[str, ...] = (".wav",), recursive: bool = False) -> list[Path]:
    """Audio files in ``folder`` (sorted; hidden files such as macOS ``._x.wav`` skipped)."""
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file())


#: Suffixes of a corpus whose clips may be stored as WAV (the original) or FLAC (a compressed copy).
WAV_OR_FLAC = (".wav", ".flac")


def clip_files(folder: Path) -> list[Path]:
    """The ``.wav``/``.flac`` files of ``folder``; one clip stored twice (a.wav and a.flac) is an error."""
    files = audio_files(folder, WAV_OR_FLAC)
    seen: dict[str, Path] = {}
    for p in files:
        if p.stem in seen:
            raise RrpoError(f"clip stored twice ({seen[p.stem].name} and {p.name}); keep one", p)
        seen[p.stem] = p
    return files
