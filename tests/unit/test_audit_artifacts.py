"""Artifact detectors on signals the tests construct: each fires on its artifact, none on clean input."""

from __future__ import annotations

import numpy as np
import pytest

from rrpo.audit.artifacts import (
    ArtifactConfig,
    detect_all,
    detect_bursts,
    detect_clicks,
    detect_clipping,
    detect_repetition,
    detect_silence,
    repeated_ngram_fraction,
)

from tests.unit.audit_signals import SR, speech_like


@pytest.mark.parametrize("seed,sr", [(0, SR), (1, SR), (2, SR), (3, 24000), (4, 22050)])
def test_clean_speech_like_is_quiet(seed, sr):
    x = speech_like(2.5, sr=sr, seed=seed)
    for name, d in detect_all(x, sr).items():
        assert d.events == 0, (name, d.spans)
        assert d.frame_fraction == 0.0 and d.events_per_s == 0.0


def test_click_train_fires_clicks():
    x = speech_like(2.5, seed=1).copy()
    pos = np.arange(8000, 40000, 1600)  # 20 impulses of 0.5, one every 100 ms
    x[pos] += 0.5
    d = detect_clicks(x, SR)
    assert d.events >= 15  # most clicks inside loud voiced speech are found
    assert d.events <= len(pos)  # each impulse is at most one event
    assert d.events_per_s == pytest.approx(d.events / 2.5)
    starts = np.array([a for a, _ in d.spans]) * SR
    assert np.all(np.min(np.abs(starts[:, None] - pos[None, :]), axis=1) <= 2)  # at the impulses


def test_click_in_silence_is_found():
    x = np.zeros(SR, dtype=np.float32) + 1e-4 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    x[SR // 2] = 0.3
    d = detect_clicks(x, SR)
    assert d.events == 1 and d.spans[0][0] == pytest.approx(0.5, abs=2 / SR)


def test_noise_burst_fires_bursts():
    x = speech_like(2.5, seed=1).copy()
    x[16000:17600] += 0.3 * np.random.default_rng(0).standard_normal(1600)  # 100 ms of white noise at 1.0 s
    d = detect_bursts(x, SR)
    assert d.events == 1
    a, b = d.spans[0]
    assert 0.95 <= a <= 1.02 and 1.08 <= b <= 1.15
    assert detect_bursts(speech_like(2.5, seed=1), SR).events == 0


def test_clipping_fires_and_hand_worked_rates():
    """sr = 1000, frames of 25 samples every 10 (98 frames in 1000 samples). A run of 5 full-scale
    samples at [100, 105) is one event; a run of 2 at [500, 502) is shorter than clip_min_run = 3.
    Frames touching [100, 105): frame 8 ([80, 105)), 9 and 10 ([100, 125)) -> 3 / 98."""
    x = np.clip(speech_like(2.5, seed=1) * 5, -1, 1)
    assert detect_clipping(x, SR).events > 10
    y = np.zeros(1000)
    y[100:105] = 1.0
    y[500:502] = -1.0
    d = detect_clipping(y, 1000)
    assert d.events == 1 and d.events_per_s == 1.0
    assert d.frame_fraction == pytest.approx(3 / 98)
    assert d.spans == [(0.1, 0.105)]


def test_internal_silence_fires_but_edges_do_not():
    x = speech_like(2.5, seed=1)
    gap = np.concatenate([x[:20000], np.zeros(12000, np.float32), x[20000:]])  # 750 ms of zeros inside
    d = detect_silence(gap, SR)
    assert d.events == 1
    assert d.spans[0][1] - d.spans[0][0] == pytest.approx(0.75, abs=0.05)
    padded = np.concatenate([np.zeros(16000, np.float32), x, np.zeros(16000, np.float32)])
    assert detect_silence(padded, SR).events == 0  # leading/trailing silence is natural
    short = np.concatenate([x[:20000], np.zeros(160, np.float32), x[20000:]])  # 10 ms dropout < 20 ms
    assert detect_silence(short, SR).events == 0
    dropout = np.concatenate([x[:20000], np.zeros(800, np.float32), x[20000:]])  # 50 ms of digital zeros
    assert detect_silence(dropout, SR).events == 1


def test_loop_fires_repetition():
    x = speech_like(2.5, seed=1)
    seg = x[8000:15000]  # 437.5 ms, not a whole number of hops
    loop = np.concatenate([x[:15000], seg, seg, seg, x[15000:]])
    d = detect_repetition(loop, SR)
    assert d.events >= 1
    covered = sum(b - a for a, b in d.spans)
    assert covered >= 0.6  # most of the 2 repeated copies (0.875 s)


def test_held_vowel_is_not_a_loop():
    t = np.arange(int(1.5 * SR)) / SR
    vowel = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 30)) * 0.1
    x = np.concatenate([speech_like(1.0, seed=2), vowel.astype(np.float32), speech_like(1.0, seed=3)])
    assert detect_repetition(x, SR).events == 0


@pytest.mark.parametrize("sr", [24000, 22050])
def test_detectors_fire_at_codec_rates(sr):
    """Thresholds are in ms and dB, so the detectors work at a codec's own rate."""
    x = speech_like(2.5, sr=sr, seed=1)
    n = len(x)
    clicks = x.copy()
    clicks[np.arange(n // 5, n - n // 5, sr // 10)] += 0.5
    assert detect_clicks(clicks, sr).events >= 10
    burst = x.copy()
    burst[sr : sr + sr // 10] += 0.3 * np.random.default_rng(0).standard_normal(sr // 10)
    assert detect_bursts(burst, sr).events == 1
    assert detect_clipping(np.clip(5 * x, -1, 1), sr).events > 10
    gap = np.concatenate([x[: n // 2], np.zeros(sr // 2, np.float32), x[n // 2 :]])
    assert detect_silence(gap, sr).events == 1
    seg = x[sr // 2 : sr // 2 + int(0.44 * sr)]
    assert detect_repetition(np.concatenate([x[:sr], seg, seg, seg, x[sr:]]), sr).events >= 1


def test_config_thresholds_are_used():
    x = speech_like(2.5, seed=1).copy()
    x[16000:17600] += 0.3 * np.random.default_rng(0).standard_normal(1600)
    assert detect_bursts(x, SR, ArtifactConfig(burst_flatness=0.99)).events == 0


def test_repeated_ngram_fraction_hand_values():
    """[1,2,3,1,2,3], n=3: n-grams (1,2,3) (2,3,1) (3,1,2) (1,2,3): one of four repeats -> 0.25."""
    assert repeated_ngram_fraction([1, 2, 3, 1, 2, 3], 3) == 0.25
    assert repeated_ngram_fraction([1, 2, 3, 4, 5], 2) == 0.0
    assert repeated_ngram_fraction([7] * 6, 2) == 4 / 5
    assert repeated_ngram_fraction([1, 2, 3, 9, 9, 9, 1, 2, 3], 3, window=3) == 0.0  # too far back
    assert repeated_ngram_fraction([1, 2], 3) == 0.0
