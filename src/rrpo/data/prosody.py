"""Prosodic measurements of an utterance: mean F0, F0 range, speech duration, level.

Used to check that the synthetic corpus' emotions differ as their rules say, and usable on any
speech. F0 comes from WORLD's DIO with StoneMask refinement (``pyworld``), 10 ms frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prosody:
    """Measured prosody of one utterance.

    ``f0_mean_hz``: mean F0 over voiced frames; ``f0_range_st``: the 5th-95th percentile spread of
    voiced F0 in semitones; ``f0_range_hz`` the same spread in Hz; ``speech_s``: time from the first
    to the last active frame (leading and trailing silence removed); ``level_db``: RMS level in
    dBFS over that span; ``voiced_fraction``: voiced frames / active frames.
    """

    f0_mean_hz: float
    f0_range_st: float
    f0_range_hz: float
    speech_s: float
    level_db: float
    voiced_fraction: float


def f0_track(audio: np.ndarray, sr: int, floor: float = 60.0, ceil: float = 600.0) -> np.ndarray:
    """F0 per 10 ms frame in Hz, 0 where unvoiced: ``(T,)`` float64."""
    import pyworld

    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, t = pyworld.dio(x, sr, f0_floor=floor, f0_ceil=ceil, frame_period=10.0)
    return pyworld.stonemask(x, f0, t, sr)


def active_span(audio: np.ndarray, sr: int, floor_db: float = 40.0, frame_s: float = 0.01) -> tuple[int, int]:
    """(start, end) sample indices of the span from the first to the last frame whose energy is
    within ``floor_db`` of the loudest frame."""
    n = max(1, int(sr * frame_s))
    t = len(audio) // n
    if t == 0:
        return 0, len(audio)
    ms = np.mean(np.asarray(audio[:t * n], dtype=np.float64).reshape(t, n) ** 2, axis=1)  # (T,)
    if ms.max() <= 0:
        return 0, 0
    idx = np.nonzero(ms >= ms.max() * 10 ** (-floor_db / 10))[0]
    return int(idx[0] * n), int((idx[-1] + 1) * n)


def measure(audio: np.ndarray, sr: int) -> Prosody:
    """Measure one utterance (float samples ``(T,)``)."""
    audio = np.asarray(audio, dtype=np.float64)
    a, b = active_span(audio, sr)
    seg = audio[a:b]
    if len(seg) == 0:
        return Prosody(math.nan, math.nan, math.nan, 0.0, -math.inf, 0.0)
    level = 10 * math.log10(max(float(np.mean(seg ** 2)), 1e-20))
    f0 = f0_track(seg, sr)
    voiced = f0[f0 > 0]
    if len(voiced) < 3:
        return Prosody(math.nan, math.nan, math.nan, len(seg) / sr, level, len(voiced) / max(1, len(f0)))
    lo, hi = np.percentile(voiced, [5, 95])
    return Prosody(f0_mean_hz=float(voiced.mean()), f0_range_st=float(12 * math.log2(hi / lo)),
                   f0_range_hz=float(hi - lo), speech_s=len(seg) / sr, level_db=level,
                   voiced_fraction=len(voiced) / len(f0))
