"""Speech codecs: the :class:`SpeechCodec` protocol, the built-in codec, the CosyVoice2 tokenizer
adapter, and token shards. ``load_codec(path)`` opens any of them."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from rrpo.codec.base import SpeechCodec, frame_energy
from rrpo.errors import RrpoError

COSYVOICE2_ONNX = "speech_tokenizer_v2.onnx"


def load_codec(path: str | os.PathLike) -> SpeechCodec:
    """Open a codec directory (``codec.json`` of kind ``builtin`` or ``cosyvoice2``), a CosyVoice2
    model directory holding ``speech_tokenizer_v2.onnx``, or that ``.onnx`` file itself.

    A codec directory written by a different codec version raises a one-line :class:`RrpoError`.
    """
    from rrpo.io import read_json

    p = Path(path)
    if p.is_file() and p.suffix == ".onnx":
        from rrpo.codec.cosyvoice2 import CosyVoice2Tokenizer

        return CosyVoice2Tokenizer(p)
    if not p.exists():
        raise RrpoError("codec not found (train one with `rrpo codec train`)", p)
    if not p.is_dir():
        raise RrpoError("not a codec directory or .onnx tokenizer", p)
    meta_path = p / "codec.json"
    if not meta_path.exists():
        if (p / COSYVOICE2_ONNX).exists():
            from rrpo.codec.cosyvoice2 import CosyVoice2Tokenizer

            return CosyVoice2Tokenizer(p / COSYVOICE2_ONNX)
        raise RrpoError(f"not a codec directory (no codec.json or {COSYVOICE2_ONNX})", p)
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("format") != "rrpo-codec":
        raise RrpoError("not an rrpo codec description (format is not 'rrpo-codec')", meta_path)
    kind = meta.get("kind")
    if kind == "builtin":
        from rrpo.codec.builtin import VERSION, BuiltinCodec

        if meta.get("version") != VERSION:
            raise RrpoError(
                f"codec version {meta.get('version')} cannot be read by this rrpo (reads version "
                f"{VERSION}); retrain it with `rrpo codec train`",
                meta_path,
            )
        return BuiltinCodec.load(p, meta)
    if kind == "cosyvoice2":
        from rrpo.codec.cosyvoice2 import VERSION, CosyVoice2Tokenizer

        if meta.get("version") != VERSION:
            raise RrpoError(
                f"codec version {meta.get('version')} cannot be read by this rrpo (reads version {VERSION})", meta_path
            )
        onnx = p / str(meta.get("onnx", COSYVOICE2_ONNX))
        return CosyVoice2Tokenizer(onnx)
    raise RrpoError(f"unknown codec kind {kind!r} (known: builtin, cosyvoice2)", meta_path)


def codec_description(codec: SpeechCodec) -> dict:
    """A JSON-able description of ``codec`` (recorded in token shards' meta.json)."""
    describe = getattr(codec, "describe", None)
    if describe is not None:
        return describe()
    return {"kind": type(codec).__name__, "vocab_size": codec.vocab_size, "frame_rate": codec.frame_rate}


def profile_for(codec: SpeechCodec, speaker: str | None, references=None):
    """The profile to decode (or encode) ``speaker`` with: the codec's stored one when it knows the
    speaker, else one computed from ``references`` (an iterable of ``(audio, sr)`` of that
    speaker, or a callable returning one); None for a codec that takes no profiles or when
    ``speaker`` is empty and no references are given. A speaker neither known nor given references
    is a one-line RrpoError naming it."""
    if not getattr(codec, "uses_profiles", False):
        return None
    if not speaker and references is None:
        return None
    if speaker and speaker in getattr(codec, "profiles", {}):
        return codec.speaker_profile(speaker)
    if references is not None:
        refs = references() if callable(references) else references
        return codec.profile_from_audio(refs, speaker=speaker or "reference")
    return codec.speaker_profile(speaker)


def profile_from_manifest(
    codec: SpeechCodec, man, speaker: str, max_recordings: int = 20, exclude_texts: Collection[str] = ()
):
    """:func:`profile_for` ``speaker``, with references (when the codec has no stored profile of it) up
    to ``max_recordings`` of the speaker's recordings in the manifest ``man``, spread evenly over its
    emotions (:func:`rrpo.data.manifest.stratified`: each emotion in id order, one emotion after the
    other) and never of a text in ``exclude_texts``; loaded only if needed. A speaker's first
    recordings in id order are often of one emotion (CASIA's are all angry, 2-3 semitones above the
    speaker's neutral register), so a profile of them would decode every emotion too high. This is
    how the audit, and anything that must decode as the audit does, profiles a speaker."""
    from rrpo.data.audio import load_audio
    from rrpo.data.manifest import stratified

    excluded = set(exclude_texts)
    recs = stratified([u for u in man if u.speaker == speaker and u.text not in excluded], max_recordings)
    return profile_for(codec, speaker, lambda: (load_audio(man.audio_path(u)) for u in recs))


__all__ = [
    "SpeechCodec",
    "frame_energy",
    "load_codec",
    "codec_description",
    "profile_for",
    "profile_from_manifest",
]
