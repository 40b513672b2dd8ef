"""CMU AN4 ("census"): alphanumeric utterances (names, dates, digits) recorded at CMU around 1991.

Layout of the NIST SPHERE release ``an4_sphere.tar.gz`` (``root`` may be the ``an4`` folder or a
folder up to three levels above it)::

    an4/etc/an4_train.transcription        "<s> WORDS </s> (<fileid>)" (the tags may be absent)
    an4/etc/an4_test.transcription
    an4/wav/an4_clstk/<spk>/<fileid>.sph       train, e.g. an4_clstk/fash/an251-fash-b.sph
    an4/wav/an4test_clstk/<spk>/<fileid>.sph   test

Clips may be ``.sph`` (the release), ``.wav`` or ``.flac`` (converted copies); the headerless
``.raw`` files of the other release (``an4_raw.bigendian.tar.gz``) are refused with a hint. The
transcription files list the corpus' utterances: a listed clip's record takes its words (the
``<s>``/``</s>`` tags removed); listed utterances without a clip, and clips not listed, are skipped
with a warning; a listed clip stored twice (``x.sph`` and ``x.wav``) is an error. The speaker is the ``<spk>`` folder, which must agree with the file id's middle field.

AN4 carries no emotion labels: records get the placeholder emotion ``neutral`` with
``extra.emotion_labelled = false`` (see :data:`rrpo.data.corpora.common.NO_EMOTION_LABEL`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from rrpo.data.corpora.common import NO_EMOTION_LABEL, find_layout_root, make_utterance, progress, read_text_file
from rrpo.data.manifest import Utterance
from rrpo.errors import RrpoError

log = logging.getLogger(__name__)

#: split -> (audio folder below wav/, transcription file below etc/)
PARTS = {"train": ("an4_clstk", "an4_train.transcription"), "test": ("an4test_clstk", "an4_test.transcription")}
SUFFIXES = (".sph", ".wav", ".flac")

_LINE = re.compile(r"^(?:<s>\s*)?(.*?)\s*(?:</s>\s*)?\(([^()\s]+)\)\s*$")
_FILEID = re.compile(r"^[A-Za-z0-9]+-([A-Za-z0-9]+)-[A-Za-z0-9]+$")


def read_transcription(path: Path) -> dict[str, tuple[str, int]]:
    """File id -> (words, line number) from an ``an4_*.transcription`` file; errors name the line."""
    out: dict[str, tuple[str, int]] = {}
    for i, line in enumerate(read_text_file(path, fallback="latin-1").splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line.strip())
        if not m or not _FILEID.match(m.group(2)):
            raise RrpoError("transcription line is not '<s> WORDS </s> (<utt>-<speaker>-<mic>)'", path, i)
        words, fid = m.groups()
        if fid in out:
            raise RrpoError(f"utterance '{fid}' appears twice (first on line {out[fid][1]})", path, i)
        out[fid] = (words, i)
    return out


def _is_an4_root(d: Path) -> bool:
    return (d / "wav").is_dir() and any((d / "etc" / t).is_file() for _, t in PARTS.values())


def _clips(folder: Path) -> dict[str, list[Path]]:
    """File id -> its clips below ``wav/<part>/<spk>/`` (one, or more for a clip stored twice);
    a ``.raw`` clip is an error."""
    out: dict[str, list[Path]] = {}
    for p in sorted(folder.glob("*/*")):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix.lower() == ".raw":
            raise RrpoError(
                "headerless .raw audio (the an4_raw release): use an4_sphere.tar.gz, or convert the clips to .wav", p
            )
        if p.suffix.lower() in SUFFIXES:
            out.setdefault(p.stem, []).append(p)
    return out


def prepare(root: Path, language: str | None = None) -> list[Utterance]:
    """Records for every listed AN4 clip (language en, split train/test)."""
    base = find_layout_root(root, _is_an4_root, "AN4 folder (etc/an4_*.transcription beside wav/)")
    records, unheard, unlisted = [], 0, []
    for split, (folder, tname) in PARTS.items():
        audio_dir, tpath = base / "wav" / folder, base / "etc" / tname
        if not audio_dir.is_dir():
            continue  # a copy without this part
        if not tpath.is_file():
            raise RrpoError(f"transcription file not found (needed for the audio of wav/{folder})", tpath)
        listed = read_transcription(tpath)
        clips = _clips(audio_dir)
        unheard += sum(1 for fid in listed if fid not in clips)
        unlisted += [p for fid, ps in clips.items() if fid not in listed for p in ps]
        for fid, stored in progress(sorted(clips.items()), f"an4 {split}", "file"):
            if fid not in listed:
                continue
            if len(stored) > 1:
                raise RrpoError(f"clip stored twice ({stored[0].name} and {stored[1].name}); keep one", stored[1])
            clip = stored[0]
            words, lineno = listed[fid]
            spk = clip.parent.name
            if _FILEID.match(fid).group(1) != spk:
                raise RrpoError(f"file id '{fid}' names another speaker than its folder '{spk}'", clip)
            records.append(
                make_utterance(
                    f"an4_{fid}",
                    clip,
                    text=words,
                    speaker=spk,
                    language="en",
                    emotion="neutral",
                    split=split,
                    extra=dict(NO_EMOTION_LABEL),
                )
            )
    if unheard:
        log.warning("an4: %d transcription lines have no audio file and were left out", unheard)
    if unlisted:
        log.warning("an4: %d clips have no transcription line and were left out (e.g. %s)", len(unlisted), unlisted[0])
    return records
