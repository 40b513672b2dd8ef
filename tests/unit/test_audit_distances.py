"""Distances and WER against values worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rrpo.audit.distances import (
    MCD_CONST,
    dtw_path,
    edit_ops,
    f0_errors_on_path,
    feature_frechet,
    frechet_distance,
    frechet_from_stats,
    mcd_dtw,
    mcd_from_cepstra,
    normalise_words,
    reference_distances,
    word_error_rate,
)

from tests.unit.audit_signals import SR, speech_like


def test_dtw_path_hand_example():
    """cost rows a=(0,5,5 / 5,0,0): the cheapest path visits (0,0) (1,1) (1,2), total 0."""
    c = np.array([[0.0, 5.0, 5.0], [5.0, 0.0, 0.0]])
    assert dtw_path(c).tolist() == [[0, 0], [1, 1], [1, 2]]
    # a repeated frame in the second sequence is absorbed by a vertical step
    a = np.array([0.0, 1.0, 2.0])
    b = np.array([0.0, 1.0, 1.0, 2.0])
    path = dtw_path(np.abs(a[:, None] - b[None, :]))
    assert path.tolist() == [[0, 0], [1, 1], [1, 2], [2, 3]]


def test_mcd_hand_values():
    """Rows far apart so DTW keeps the diagonal; c_1 offset by δ = 0.1 in every frame gives
    MCD = (10/ln 10)·sqrt(2·δ²) = 4.3429·1.4142·0.1 = 0.6142 dB; c_0 (level) is ignored."""
    c = np.array([[0.0, 0.0, 0.0], [1.0, 5.0, 0.0], [2.0, 10.0, 3.0]])
    assert mcd_from_cepstra(c, c)[0] == 0.0
    d = c + np.array([7.0, 0.1, 0.0])
    mcd, path = mcd_from_cepstra(d, c)
    assert mcd == pytest.approx(0.6142, abs=1e-4)
    assert mcd == pytest.approx(MCD_CONST * 0.1)
    assert path.tolist() == [[0, 0], [1, 1], [2, 2]]


def test_mcd_on_waveforms():
    x = speech_like(1.5, seed=0)
    assert mcd_dtw(x, SR, x, SR) == 0.0
    assert mcd_dtw(0.5 * x, SR, x, SR) == pytest.approx(0.0, abs=1e-6)  # gain only moves c_0
    y = speech_like(1.5, seed=5)
    assert mcd_dtw(y, SR, x, SR) > 3.0
    # a time-stretched copy (phase vocoder, 0.8x) is aligned by DTW: closer than another utterance
    import librosa

    slow = librosa.effects.time_stretch(x.astype(np.float32), rate=0.8)
    assert mcd_dtw(slow, SR, x, SR) < mcd_dtw(y, SR, x, SR)


def test_f0_errors_hand_values():
    """Diagonal path over gen (200, 200, 0, 0) and ref (200·2^(1/12), 200, 100, 0): frames 0 and 1
    are voiced in both with errors −100 and 0 cents -> RMSE sqrt(10000/2) = 70.71; frame 2 differs
    in voicing -> voicing error 1/4."""
    path = np.array([[0, 0], [1, 1], [2, 2], [3, 3]])
    r = f0_errors_on_path(np.array([200.0, 200, 0, 0]), np.array([200 * 2 ** (1 / 12), 200, 100, 0]), path)
    assert r["f0_rmse_cents"] == pytest.approx(math.sqrt(5000), abs=1e-6)
    assert r["voicing_error"] == 0.25 and r["voiced_pairs"] == 2
    assert math.isnan(f0_errors_on_path(np.zeros(3), np.zeros(3), path[:3])["f0_rmse_cents"])


def test_f0_error_on_tones_a_semitone_apart():
    t = np.arange(SR) / SR

    def tone(f0):
        return (0.3 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))).astype(np.float32)

    r = reference_distances(tone(150 * 2 ** (1 / 12)), SR, tone(150.0), SR)
    assert r["f0_rmse_cents"] == pytest.approx(100.0, abs=10.0)
    assert r["voicing_error"] < 0.1
    same = reference_distances(tone(150.0), SR, tone(150.0), SR)
    assert same["f0_rmse_cents"] == 0.0 and same["mcd_db"] == 0.0


def test_frechet_hand_values():
    """1-D N(0,1) vs N(3,4): 3² + 1 + 4 − 2·sqrt(1·4) = 10.
    2-D μ (0,0) vs (1,2), Σ diag(1,4) vs diag(4,9): (1 + 4) + (5 + 13) − 2·(2 + 6) = 7."""
    assert frechet_from_stats(np.array([0.0]), np.array([[1.0]]), np.array([3.0]), np.array([[4.0]])) == pytest.approx(
        10.0
    )
    assert frechet_from_stats(
        np.zeros(2), np.diag([1.0, 4.0]), np.array([1.0, 2.0]), np.diag([4.0, 9.0])
    ) == pytest.approx(7.0)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # sample estimate of the 1-D case
    x = rng.normal(0, 1, (20000, 1))
    y = rng.normal(3, 2, (20000, 1))
    assert frechet_distance(x, y) == pytest.approx(10.0, rel=0.05)
    # feature_frechet is unit-free: scaling one feature of both sets does not change it
    b = a + np.array([0.5, 0.0, 0.0])
    s = np.array([1000.0, 1.0, 1.0])
    assert feature_frechet(b * s, a * s) == pytest.approx(feature_frechet(b, a), rel=1e-6)
    with pytest.raises(ValueError):
        frechet_distance(a[:1], a)
    # a feature constant in the reference: pooled std of [1, -1, 0, 0] is sqrt(0.5), so the generated
    # values become +-sqrt(2); sample variance 4, reference variance 0, equal means -> distance 4
    assert feature_frechet(np.array([[1.0], [-1.0]]), np.array([[0.0], [0.0]])) == pytest.approx(4.0)
    # a feature constant in both sets adds nothing
    assert feature_frechet(np.array([[1.0, 7.0], [-1.0, 7.0]]), np.array([[0.0, 7.0], [0.0, 7.0]])) == pytest.approx(
        4.0
    )


def test_wer_hand_values():
    """'the cat sat on the mat' (6 words): dropping 'the' is 1 deletion -> 1/6;
    'a cat sat on the mat today' is 1 substitution + 1 insertion -> 2/6."""
    ref = "The cat sat on the mat."
    r = word_error_rate(ref, "the cat sat on mat")
    assert (r["sub"], r["del"], r["ins"], r["n_ref"]) == (0, 1, 0, 6) and r["wer"] == pytest.approx(1 / 6)
    r = word_error_rate(ref, "A cat sat on the mat today")
    assert (r["sub"], r["del"], r["ins"]) == (1, 0, 1) and r["wer"] == pytest.approx(2 / 6)
    assert word_error_rate("Hello, World!", "hello world")["wer"] == 0.0
    assert word_error_rate("one two", "")["wer"] == 1.0
    # corpus WER pools errors: (1 + 0) / (6 + 2)
    r = word_error_rate([ref, "hello world"], ["the cat sat on mat", "Hello world"])
    assert r["wer"] == pytest.approx(1 / 8)
    assert edit_ops(["a", "b", "c"], ["c", "b", "a"]) == {"sub": 2, "del": 0, "ins": 0, "n_ref": 3}
    assert normalise_words("It’s  'quoted' -- ok?") == ["it's", "quoted", "ok"]
    with pytest.raises(ValueError):
        word_error_rate(["a"], ["a", "b"])


@pytest.mark.shared_data
def test_pocketsphinx_on_real_english(shared_data):
    """Two ESD English utterances: the shipped pocketsphinx model gets most words right."""
    import json

    from rrpo.audit.distances import PocketsphinxRecognizer
    from rrpo.data.audio import load_audio

    rows = [json.loads(l) for l in open(shared_data / "esd" / "MANIFEST.jsonl", encoding="utf-8")][:2]
    rec = PocketsphinxRecognizer()
    hyps = [rec.transcribe(*load_audio(shared_data / "esd" / r["path"])) for r in rows]
    assert word_error_rate([r["text"] for r in rows], hyps)["wer"] < 0.5
