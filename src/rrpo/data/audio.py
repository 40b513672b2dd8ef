"""Audio input: WAV/FLAC/OGG at any rate, mono or multi-channel, resampled to what a model needs.

Every failure a user's file can cause raises :class:`RrpoError` naming the file and the reason:
missing, empty, truncated or not audio, no samples, NaN/Inf samples, digital silence.
"""

from __future__ import annotations

import math
import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from rrpo.errors import RrpoError
from rrpo.io import atomic_path

#: Peak amplitude below which a file counts as silent (about -90 dBFS).
SILENCE_PEAK = 3e-5


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited polyphase resampling along the last axis (float32 out)."""
    if sr_in == sr_out:
        return np.asarray(audio, dtype=np.float32)
    from scipy.signal import resample_poly

    frac = Fraction(int(sr_out), int(sr_in)).limit_denominator(1000)
    out = resample_poly(np.asarray(audio, dtype=np.float64), frac.numerator, frac.denominator, axis=-1)
    return out.astype(np.float32)


def audio_info(path: str | os.PathLike) -> tuple[int, float, int]:
    """(sampling rate, duration in seconds, channels) from the header, checked like load_audio."""
    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError
        raise RrpoError(f"not a readable audio file ({_short(e)})", path) from None
    if info.frames <= 0:
        raise RrpoError("audio file holds no samples", path)
    return int(info.samplerate), info.frames / info.samplerate, int(info.channels)


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    msg = re.sub(r"^Error opening '.*?': ", "", msg)  # the path is already named by the caller
    return msg[:160]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise RrpoError("audio file not found", path)
    if path.is_dir():
        raise RrpoError("is a folder, expected an audio file", path)
    if path.stat().st_size == 0:
        raise RrpoError("audio file is empty (0 bytes)", path)
    _check_wav_length(path)


def _check_wav_length(path: Path) -> None:
    """Reject a RIFF/WAVE file whose sample data is shorter than its header declares.

    libsndfile reads such a file without complaint, silently returning fewer samples, so a copy cut
    short (an interrupted download) would pass unnoticed. Streaming writers that leave the size
    unknown (0 or 0xFFFFFFFF) are accepted. Other formats are left to the decoder.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return
            offset = 12
            while offset + 8 <= size:
                f.seek(offset)
                chunk = f.read(8)
                cid, n = chunk[:4], int.from_bytes(chunk[4:8], "little")
                if cid == b"data":
                    have = size - offset - 8
                    if n not in (0, 0xFFFFFFFF) and n > have:
                        raise RrpoError(
                            f"audio file is truncated (its header declares {n} bytes of samples, "
                            f"the file holds {have})",
                            path,
                        )
                    return
                offset += 8 + n + (n & 1)
    except OSError as e:
        raise RrpoError(f"cannot read audio file ({e.strerror})", path) from None
    raise RrpoError("audio file is truncated (no sample data after the WAV header)", path)


def load_audio(
    path: str | os.PathLike, sr: int | None = None, *, mono: bool = True, allow_silence: bool = False
) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 in [-1, 1]; mix down to mono and resample to ``sr`` if given.

    Returns ``(audio, rate)``; ``audio`` is ``(T,)`` when mono, else ``(C, T)``.
    """
    path = Path(path)
    _check_file(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except Exception as e:
        raise RrpoError(f"not a readable audio file, or truncated ({_short(e)})", path) from None
    if data.shape[0] == 0:
        raise RrpoError("audio file holds no samples", path)
    if not np.isfinite(data).all():
        raise RrpoError("audio holds NaN or infinite samples", path)
    if not allow_silence and float(np.abs(data).max()) < SILENCE_PEAK:
        raise RrpoError("audio is silent (peak below -90 dBFS)", path)
    audio = data.mean(axis=1) if mono else data.T
    if sr is not None and sr != rate:
        audio = resample(audio, rate, sr)
        rate = sr
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)


def save_audio(path: str | os.PathLike, audio: np.ndarray, sr: int, subtype: str = "PCM_16") -> None:
    """Write a WAV (or FLAC, by suffix) atomically; float input is clipped to [-1, 1]."""
    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    if not np.isfinite(audio).all():
        raise RrpoError("refusing to write audio with NaN or infinite samples", path)
    audio = np.clip(audio, -1.0, 1.0)
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio.T if audio.ndim == 2 else audio, sr, subtype=subtype, format=fmt)


def rms_db(audio: np.ndarray) -> float:
    """Root-mean-square level in dBFS (−inf for all-zero input)."""
    r = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20 * math.log10(r) if r > 0 else -math.inf
