"""Artifact detectors: evidence of unnatural audio that an emotion score does not see.

Each detector takes a mono waveform ``audio (T,)`` at rate ``sr`` and returns a
:class:`Detection`: the number of events, ``events_per_s`` (events / duration) and
``frame_fraction`` (the fraction of analysis frames, ``frame_ms`` long every ``hop_ms``, that an
event touches), with the event spans in seconds. Thresholds are fields of :class:`ArtifactConfig`.
Definitions (also in docs/audit.md):

* **clicks** — impulses. The residual r[n] = x[n+1] − 2x[n] + x[n−1] (a second difference, a
  high-pass that speech has little energy in) is compared with its local level, the median of
  |r| over blocks of ``click_block_ms`` taking the largest block median among each block and its
  two neighbours. A sample is an impulse when |r| > ``click_ratio`` × local level and
  |r| > ``click_min_abs``; impulses closer than ``click_merge_ms`` are one event.
* **bursts** — harsh noise bursts. Per frame (Hann window, ``frame_ms``/``hop_ms``): level L in
  dB and spectral flatness W = geometric mean / arithmetic mean of the power spectrum from
  ``burst_min_hz`` to Nyquist (white noise ≈ 0.56, voiced speech ≈ 0.01–0.1). A burst frame is
  loud (L ≥ the utterance's 90th-percentile frame level − ``burst_level_db``) and noise-like
  (W ≥ ``burst_flatness``); runs of burst frames lasting at least ``burst_min_ms`` (in hops) are
  events, which leaves out single noisy frames such as an aspirated plosive release. High-frequency energy ratio and
  spectral-flux outliers were tried first and rejected: Mandarin sibilants in real CASIA speech
  reach a 0.99 share of energy above 4 kHz within 10 dB of the vowels, and flux robust z-scores
  above 50, while their full-band flatness stays below 0.38 (docs/audit.md).
* **clipping** — runs of at least ``clip_min_run`` consecutive samples with |x| ≥ ``clip_level``
  (full scale is 1.0; decoded float audio above 1 also counts).
* **silence** — unnatural silence inside the utterance: runs of frames whose RMS is below
  ``silence_db`` dBFS lasting at least ``silence_min_ms``, not touching the first or last
  non-silent frame (leading and trailing silence are not counted), and runs of exact digital
  silence (|x| ≤ ``digital_eps``) of at least ``digital_min_ms`` anywhere between the first and
  last non-silent sample.
* **repetition** — a loop: a stretch of at least ``loop_min_ms`` whose log-mel frames repeat those
  ``lag`` frames earlier (``loop_min_lag_ms`` ≤ lag ≤ ``loop_max_lag_ms``): the mean absolute
  difference per mel band between frame t and t − lag, median-filtered over 5 frames, is under
  ``loop_max_db`` dB, where the stretch is loud (every frame within
  ``loop_level_db`` of the 90th-percentile level) and not stationary (the mean over bands of the
  stretch's standard deviation over time is at least ``loop_min_var_db`` dB, which rules out a
  held vowel). The repeated copy's frames are the event frames.

:func:`repeated_ngram_fraction` measures the same thing on token sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rrpo.config import check, option


@dataclass
class ArtifactConfig:
    """Thresholds of the artifact detectors (see the module docstring for their meaning)."""

    frame_ms: float = option(25.0, "analysis frame length (ms) for frame-level detectors and fractions")
    hop_ms: float = option(10.0, "analysis hop (ms)")
    click_block_ms: float = option(10.0, "block length (ms) of the local median of the second difference")
    click_ratio: float = option(40.0, "|second difference| / local median above which a sample is an impulse")
    click_min_abs: float = option(0.05, "smallest |second difference| that counts as an impulse")
    click_merge_ms: float = option(5.0, "impulses closer than this (ms) are one click")
    burst_level_db: float = option(10.0, "a loud frame is within this many dB of the 90th-percentile frame level")
    burst_flatness: float = option(0.45, "spectral flatness (100 Hz to Nyquist) of a noise-like frame")
    burst_min_hz: float = option(100.0, "lower edge (Hz) of the band the flatness is measured over")
    burst_min_ms: float = option(30.0, "shortest burst (ms of consecutive burst frames, counted in hops)")
    clip_level: float = option(0.99, "|sample| at or above this counts as full scale")
    clip_min_run: int = option(3, "consecutive full-scale samples that make a clipping event")
    silence_db: float = option(-60.0, "frame RMS (dBFS) below which a frame is near-silent")
    silence_min_ms: float = option(400.0, "shortest internal near-silent run (ms) that counts")
    digital_eps: float = option(1.0 / 32768, "|sample| at or below this is digital silence")
    digital_min_ms: float = option(20.0, "shortest internal run of digital silence (ms) that counts")
    loop_n_mels: int = option(40, "mel bands of the repetition detector")
    loop_min_ms: float = option(300.0, "shortest repeated stretch (ms)")
    loop_min_lag_ms: float = option(100.0, "shortest loop period (ms)")
    loop_max_lag_ms: float = option(2000.0, "longest loop period (ms)")
    loop_max_db: float = option(
        2.5, "median over 5 frames of the mean |log-mel difference| (dB) under which frames match"
    )
    loop_min_var_db: float = option(3.0, "least spectral variation (dB) of a repeated stretch")
    loop_level_db: float = option(30.0, "frames of a repeated stretch lie within this many dB of the p90 level")

    def __post_init__(self):
        check(self.frame_ms > 0 and self.hop_ms > 0, "hop_ms", "frame and hop must be positive")
        check(self.click_ratio > 1, "click_ratio", "must be above 1")
        check(0 < self.burst_flatness <= 1, "burst_flatness", "must be in (0, 1]")
        check(0 < self.clip_level <= 1.5, "clip_level", "must be in (0, 1.5]")
        check(self.clip_min_run >= 1, "clip_min_run", "must be at least 1")
        check(self.loop_min_lag_ms < self.loop_max_lag_ms, "loop_max_lag_ms", "must exceed loop_min_lag_ms")


@dataclass
class Detection:
    """What one detector found in one waveform."""

    events: int
    events_per_s: float
    frame_fraction: float
    spans: list[tuple[float, float]] = field(default_factory=list)  # (start_s, end_s) of each event

    def as_dict(self) -> dict:
        return {"events": self.events, "events_per_s": self.events_per_s, "frame_fraction": self.frame_fraction}


# -- helpers --------------------------------------------------------------------------------------


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D boolean array."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    d = np.diff(m.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _frames(n: int, sr: int, cfg: ArtifactConfig) -> tuple[int, int, int]:
    """(frame length, hop, number of frames) in samples; at least one frame."""
    flen = max(1, int(round(cfg.frame_ms * sr / 1000)))
    hop = max(1, int(round(cfg.hop_ms * sr / 1000)))
    return flen, hop, max(1, 1 + (n - flen) // hop) if n >= flen else 1


def _detection(spans_samples: list[tuple[int, int]], n: int, sr: int, cfg: ArtifactConfig) -> Detection:
    """Events given as sample spans [a, b) -> rates and the fraction of frames they touch."""
    flen, hop, nf = _frames(n, sr, cfg)
    touched = np.zeros(nf, dtype=bool)
    for a, b in spans_samples:
        first = max(0, (a - flen) // hop + 1)  # first frame whose [i·hop, i·hop+flen) reaches a
        last = min(nf - 1, (max(b - 1, a)) // hop)  # last frame starting at or before b-1
        touched[first : last + 1] = True
    dur = n / sr
    return Detection(
        len(spans_samples),
        len(spans_samples) / dur if dur > 0 else 0.0,
        float(touched.mean()),
        [(a / sr, b / sr) for a, b in spans_samples],
    )


def _frame_spans_to_samples(spans: list[tuple[int, int]], hop: int, flen: int, n: int) -> list[tuple[int, int]]:
    return [(a * hop, min(n, (b - 1) * hop + flen)) for a, b in spans]


def _stft_power(audio: np.ndarray, sr: int, cfg: ArtifactConfig) -> np.ndarray:
    """(F, bins) power spectra of Hann-windowed frames."""
    flen, hop, nf = _frames(len(audio), sr, cfg)
    x = np.pad(audio.astype(np.float64), (0, max(0, flen - len(audio))))
    idx = np.arange(flen)[None, :] + hop * np.arange(nf)[:, None]  # (F, flen)
    nfft = 1 << int(np.ceil(np.log2(flen)))
    return np.abs(np.fft.rfft(x[idx] * np.hanning(flen), n=nfft, axis=1)) ** 2


def _frame_rms_db(audio: np.ndarray, sr: int, cfg: ArtifactConfig) -> np.ndarray:
    flen, hop, nf = _frames(len(audio), sr, cfg)
    x = np.pad(audio.astype(np.float64), (0, max(0, flen - len(audio))))
    idx = np.arange(flen)[None, :] + hop * np.arange(nf)[:, None]
    return 10 * np.log10(np.mean(x[idx] ** 2, axis=1) + 1e-20)


def _mono(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio (T,), got shape {x.shape}")
    return x


# -- detectors ------------------------------------------------------------------------------------


def detect_clicks(audio: np.ndarray, sr: int, cfg: ArtifactConfig | None = None) -> Detection:
    """Impulses: second-difference outliers relative to the local median (module docstring)."""
    cfg = cfg or ArtifactConfig()
    x = _mono(audio)
    n = len(x)
    if n < 3:
        return _detection([], n, sr, cfg)
    r = np.zeros(n)
    r[1:-1] = np.abs(x[2:] - 2 * x[1:-1] + x[:-2])
    blk = max(1, int(round(cfg.click_block_ms * sr / 1000)))
    nb = -(-n // blk)
    rp = np.pad(r, (0, nb * blk - n), constant_values=np.nan).reshape(nb, blk)
    med = np.nanmedian(rp, axis=1)  # (nb,)
    padded = np.pad(med, 1, mode="edge")
    local = np.maximum(np.maximum(padded[:-2], padded[1:-1]), padded[2:])  # max of 3 neighbouring medians
    level = np.repeat(local, blk)[:n]
    hits = np.flatnonzero((r > cfg.click_ratio * level) & (r > cfg.click_min_abs))
    spans: list[tuple[int, int]] = []
    merge = max(1, int(round(cfg.click_merge_ms * sr / 1000)))
    for h in hits.tolist():
        if spans and h - spans[-1][1] < merge:
            spans[-1] = (spans[-1][0], h + 1)
        else:
            spans.append((h, h + 1))
    return _detection(spans, n, sr, cfg)


def detect_bursts(audio: np.ndarray, sr: int, cfg: ArtifactConfig | None = None) -> Detection:
    """Harsh bursts: loud frames whose spectrum is noise-like (module docstring)."""
    cfg = cfg or ArtifactConfig()
    x = _mono(audio)
    flen, hop, nf = _frames(len(x), sr, cfg)
    p = _stft_power(x, sr, cfg)  # (F, bins)
    freqs = np.linspace(0, sr / 2, p.shape[1])
    q = p[:, freqs >= cfg.burst_min_hz] + 1e-12
    flatness = np.exp(np.log(q).mean(1)) / q.mean(1)  # (F,) geometric / arithmetic mean
    level = _frame_rms_db(x, sr, cfg)
    loud = level >= np.percentile(level, 90) - cfg.burst_level_db
    runs = [
        (a, b)
        for a, b in _runs(loud & (flatness >= cfg.burst_flatness))
        if (b - a) * cfg.hop_ms >= cfg.burst_min_ms - 1e-9
    ]  # a plosive release is shorter
    spans = _frame_spans_to_samples(runs, hop, flen, len(x))
    return _detection(spans, len(x), sr, cfg)


def detect_clipping(audio: np.ndarray, sr: int, cfg: ArtifactConfig | None = None) -> Detection:
    """Runs of ≥ clip_min_run samples at |x| ≥ clip_level."""
    cfg = cfg or ArtifactConfig()
    x = _mono(audio)
    spans = [(a, b) for a, b in _runs(np.abs(x) >= cfg.clip_level) if b - a >= cfg.clip_min_run]
    return _detection(spans, len(x), sr, cfg)


def detect_silence(audio: np.ndarray, sr: int, cfg: ArtifactConfig | None = None) -> Detection:
    """Long internal near-silence and internal digital silence (module docstring)."""
    cfg = cfg or ArtifactConfig()
    x = _mono(audio)
    n = len(x)
    flen, hop, nf = _frames(n, sr, cfg)
    quiet = _frame_rms_db(x, sr, cfg) < cfg.silence_db
    spans: list[tuple[int, int]] = []
    sound = np.flatnonzero(~quiet)
    if len(sound):
        lo, hi = sound[0], sound[-1]
        min_frames = cfg.silence_min_ms / cfg.hop_ms
        for a, b in _runs(quiet):
            if a > lo and b <= hi and (b - a) >= min_frames:
                spans.append((a * hop, min(n, (b - 1) * hop + flen)))
    nz = np.flatnonzero(np.abs(x) > cfg.digital_eps)
    if len(nz):
        lo_s, hi_s = nz[0], nz[-1]
        min_s = cfg.digital_min_ms * sr / 1000
        for a, b in _runs(np.abs(x[lo_s : hi_s + 1]) <= cfg.digital_eps):
            a, b = a + lo_s, b + lo_s
            if b - a >= min_s and not any(a < sb and sa < b for sa, sb in spans):  # not inside a near-silent run
                spans.append((a, b))
    spans.sort()
    return _detection(spans, n, sr, cfg)


def log_mel(audio: np.ndarray, sr: int, cfg: ArtifactConfig, n_mels: int) -> np.ndarray:
    """(F, n_mels) log-mel power in dB on the detectors' frame grid."""
    import librosa

    p = _stft_power(_mono(audio), sr, cfg)
    nfft = 2 * (p.shape[1] - 1)
    fb = librosa.filters.mel(sr=sr, n_fft=nfft, n_mels=n_mels, fmin=50.0, fmax=min(8000.0, sr / 2))
    return 10 * np.log10(p @ fb.T + 1e-10)


def detect_repetition(audio: np.ndarray, sr: int, cfg: ArtifactConfig | None = None) -> Detection:
    """Loops: stretches whose log-mel frames repeat those one lag earlier (module docstring)."""
    from scipy.ndimage import median_filter

    cfg = cfg or ArtifactConfig()
    x = _mono(audio)
    flen, hop, nf = _frames(len(x), sr, cfg)
    m = log_mel(x, sr, cfg, cfg.loop_n_mels)  # (F, M)
    level = _frame_rms_db(x, sr, cfg)
    loud = level >= np.percentile(level, 90) - cfg.loop_level_db  # (F,)
    min_len = max(1, int(round(cfg.loop_min_ms / cfg.hop_ms)))
    lag_lo = max(1, int(round(cfg.loop_min_lag_ms / cfg.hop_ms)))
    lag_hi = min(nf - min_len, int(round(cfg.loop_max_lag_ms / cfg.hop_ms)))
    copy = np.zeros(nf, dtype=bool)
    for lag in range(lag_lo, lag_hi + 1):
        d = np.abs(m[lag:] - m[:-lag]).mean(1)  # (F-lag,) frame t+lag vs t
        d = median_filter(d, size=5, mode="nearest")  # a fractional-frame lag blurs onsets
        ok = (d < cfg.loop_max_db) & loud[lag:] & loud[:-lag]
        for a, b in _runs(ok):
            if b - a < min_len:
                continue
            if m[a:b].std(0).mean() < cfg.loop_min_var_db:  # stationary: a held sound, no loop
                continue
            copy[a + lag : b + lag] = True
    spans = _frame_spans_to_samples(_runs(copy), hop, flen, len(x))
    return _detection(spans, len(x), sr, cfg)


DETECTORS = {
    "clicks": detect_clicks,
    "bursts": detect_bursts,
    "clipping": detect_clipping,
    "silence": detect_silence,
    "repetition": detect_repetition,
}


def detect_all(audio: np.ndarray, sr: int, cfg: ArtifactConfig | None = None) -> dict[str, Detection]:
    """Every detector on one waveform."""
    cfg = cfg or ArtifactConfig()
    return {name: fn(audio, sr, cfg) for name, fn in DETECTORS.items()}


def repeated_ngram_fraction(tokens: Sequence[int], n: int = 4, window: int | None = None) -> float:
    """Fraction of token n-grams that already occurred earlier (within ``window`` tokens, if given).

    A looping decoder repeats whole n-grams: ``[1, 2, 3, 1, 2, 3]`` with n=3 has 4 n-grams of which
    (1, 2, 3) at position 3 repeats position 0, so 1/4. Speech tokens repeat n-grams rarely for
    n ≥ 4 except in silence, which callers may strip first. 0.0 when there are no n-grams.
    """
    t = list(tokens)
    grams = [tuple(t[i : i + n]) for i in range(len(t) - n + 1)]
    if not grams:
        return 0.0
    last: dict[tuple, int] = {}
    rep = 0
    for i, g in enumerate(grams):
        j = last.get(g)
        if j is not None and (window is None or i - j <= window):
            rep += 1
        last[g] = i
    return rep / len(grams)
