"""Test signals for the audit tests, all generated here (no recordings).

``speech_like`` is a voiced harmonic source with a wandering pitch, three formant resonances that
move from syllable to syllable, a syllable-rate amplitude envelope, short pauses, a few quiet
fricative-like noise bursts above 3 kHz, and a room-noise floor: clean, natural-ish input that
no artifact detector should flag.
"""

from __future__ import annotations

import numpy as np

SR = 16000


def _smooth(rng, n, knots, lo, hi):
    """A smooth random curve of ``n`` samples between lo and hi (cubic-ish interpolation of knots)."""
    k = rng.uniform(lo, hi, size=knots)
    t = np.linspace(0, knots - 1, n)
    i = np.clip(t.astype(int), 0, knots - 2)
    f = t - i
    w = f * f * (3 - 2 * f)
    return k[i] * (1 - w) + k[i + 1] * w


def speech_like(
    seconds: float = 2.0,
    sr: int = SR,
    seed: int = 0,
    f0: tuple[float, float] = (100.0, 180.0),
    level: float = 0.3,
    fricatives: bool = True,
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    syll = max(2, int(seconds * 4))
    pitch = _smooth(rng, n, syll + 1, *f0)  # (n,) Hz
    formants = [_smooth(rng, n, syll + 1, lo, hi) for lo, hi in ((300, 800), (900, 2200), (2300, 3200))]
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    x = np.zeros(n)
    for k in range(1, int(sr / 2 / f0[0])):
        fk = k * pitch
        amp = sum(1.0 / (1.0 + ((fk - F) / (80 + 0.1 * F)) ** 2) for F in formants) / k
        amp *= fk < 0.45 * sr
        x += amp * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    # syllables: raised-cosine envelopes, one gap of ~120 ms in the middle
    env = np.zeros(n)
    start = 0
    while start < n:  # syllables of 150-350 ms
        length = int(rng.uniform(0.15, 0.35) * sr)
        seg = np.arange(min(length, n - start))
        env[start : start + len(seg)] = (0.5 - 0.5 * np.cos(2 * np.pi * seg / length)) ** 0.5 * rng.uniform(0.6, 1.0)
        start += length
    gap = (t > seconds * 0.5) & (t < seconds * 0.5 + 0.12)
    env[gap] = 0.0
    x *= env
    x = level * x / (np.abs(x).max() + 1e-12)
    if fricatives:
        noise = rng.standard_normal(n)
        spec = np.fft.rfft(noise)
        spec[np.fft.rfftfreq(n, 1 / sr) < 3000] = 0
        hiss = np.fft.irfft(spec, n)
        hiss = hiss / (np.abs(hiss).max() + 1e-12)
        for c in rng.uniform(0.2, seconds - 0.2, size=max(1, int(seconds))):
            w = np.exp(-0.5 * ((t - c) / 0.025) ** 2)
            x += 0.1 * level * hiss * w
    x += 10 ** (-55 / 20) * rng.standard_normal(n)  # room noise at about -55 dBFS
    return x.astype(np.float32)
