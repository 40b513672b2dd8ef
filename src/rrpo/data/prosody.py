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
    from rrpo.system import require

    pyworld = require("pyworld")

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
    ms = np.mean(np.asarray(audio[: t * n], dtype=np.float64).reshape(t, n) ** 2, axis=1)  # (T,)
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
    level = 10 * math.log10(max(float(np.mean(seg**2)), 1e-20))
    f0 = f0_track(seg, sr)
    voiced = f0[f0 > 0]
    if len(voiced) < 3:
        return Prosody(math.nan, math.nan, math.nan, len(seg) / sr, level, len(voiced) / max(1, len(f0)))
    lo, hi = np.percentile(voiced, [5, 95])
    return Prosody(
        f0_mean_hz=float(voiced.mean()),
        f0_range_st=float(12 * math.log2(hi / lo)),
        f0_range_hz=float(hi - lo),
        speech_s=len(seg) / sr,
        level_db=level,
        voiced_fraction=len(voiced) / len(f0),
    )


def emotion_profile(manifest, *, progress: bool = False) -> dict:
    """Measure every utterance of a parallel manifest and summarise per language and emotion.

    Returns ``{language: {emotion: {...}}}`` with the means of ``f0_hz``, ``f0_range_st``,
    ``f0_range_hz``, ``syllables_per_s`` and ``level_db``, the count ``n``, and ``vs_neutral``: the
    mean over (speaker, sentence) pairs of the difference from the neutral rendition of the same
    sentence by the same speaker: ``f0_st`` (semitones), ``f0_range_st`` (semitones),
    ``f0_range_ratio`` (Hz range / neutral's), ``duration_ratio`` (speech duration / neutral's) and
    ``level_db`` (dB). Syllables are ``extra["syllables"]`` where present, else counted from the text.
    """
    from collections import defaultdict

    from rrpo.data.audio import load_audio
    from rrpo.data.sentences import count_syllables

    items = list(manifest)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="measuring", unit="utt", disable=None)
    meas = {}
    for u in items:
        audio, sr = load_audio(manifest.audio_path(u))
        p = measure(audio, sr)
        syl = u.extra.get("syllables") or count_syllables(u.text, u.language)
        meas[u.id] = (u, p, syl / p.speech_s if p.speech_s > 0 else math.nan)
    sentence = {u.id: u.extra.get("sentence", u.text) for u, _, _ in meas.values()}
    neutral = {(u.language, u.speaker, sentence[u.id]): p for u, p, _ in meas.values() if u.emotion == "neutral"}
    groups: dict = defaultdict(lambda: defaultdict(list))
    for u, p, rate in meas.values():
        row = {
            "f0_hz": p.f0_mean_hz,
            "f0_range_st": p.f0_range_st,
            "f0_range_hz": p.f0_range_hz,
            "syllables_per_s": rate,
            "level_db": p.level_db,
        }
        n = neutral.get((u.language, u.speaker, sentence[u.id]))
        if n is not None:
            row.update(
                {
                    "d_f0_st": 12 * math.log2(p.f0_mean_hz / n.f0_mean_hz),
                    "d_f0_range_st": p.f0_range_st - n.f0_range_st,
                    "d_f0_range_ratio": p.f0_range_hz / n.f0_range_hz,
                    "d_duration_ratio": p.speech_s / n.speech_s,
                    "d_level_db": p.level_db - n.level_db,
                }
            )
        groups[u.language][u.emotion].append(row)
    out: dict = {}
    for lang, by_emo in groups.items():
        out[lang] = {}
        for emo, rows in by_emo.items():

            def mean(key, rows=rows):
                vals = [r[key] for r in rows if key in r and not math.isnan(r[key])]
                return round(float(np.mean(vals)), 3) if vals else None

            entry = {k: mean(k) for k in ("f0_hz", "f0_range_st", "f0_range_hz", "syllables_per_s", "level_db")}
            entry["n"] = len(rows)
            if any("d_f0_st" in r for r in rows):
                entry["vs_neutral"] = {
                    k[2:]: mean(k)
                    for k in ("d_f0_st", "d_f0_range_st", "d_f0_range_ratio", "d_duration_ratio", "d_level_db")
                }
            out[lang][emo] = entry
    return out
