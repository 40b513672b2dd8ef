"""bench/codec.py's pure helpers: the training-manifest draw and the unquantised ceilings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.unit.bench_loader import load_bench

bench = load_bench("codec")


def _manifest(tmp_path, durations):
    path = tmp_path / "m.jsonl"
    rows = [
        {
            "id": f"u{i}",
            "audio": f"/a/u{i}.wav",
            "sampling_rate": 16000,
            "duration": d,
            "text": "a b",
            "speaker": f"s{i % 2}",
            "language": "en",
            "emotion": "neutral",
            "split": "train",
        }
        for i, d in enumerate(durations)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_manifest_files_all_and_capped(tmp_path):
    m = _manifest(tmp_path, [600.0, 600.0, 600.0, 600.0])
    every = bench.manifest_files([m], 0.0)
    assert [u["id"] for u in every] == ["u0", "u1", "u2", "u3"]
    assert {u["speaker"] for u in every} == {"s0", "s1"}
    # 0.5 h = 1,800 s: three 600 s utterances fit, the fourth would make 2,400 s
    capped = bench.manifest_files([m], 0.5)
    assert len(capped) == 3
    assert len({u["id"] for u in capped}) == 3
    # the draw is seeded: the same three every time
    assert [u["id"] for u in bench.manifest_files([m], 0.5)] == [u["id"] for u in capped]


def test_ceiling_audio_keeps_length_pitch_and_level():
    pytest.importorskip("pyworld")
    from rrpo.codec.builtin import BuiltinCodecConfig, analyse

    sr = 16000
    t = np.arange(int(1.2 * sr)) / sr
    # a 150 Hz harmonic tone (5 partials), the shape WORLD tracks easily
    x = sum(0.1 / k * np.sin(2 * np.pi * 150 * k * t) for k in range(1, 6)).astype(np.float32)
    cfg = BuiltinCodecConfig()
    fr = analyse(x, cfg)
    for kind in ("world", "unquantised"):
        y = bench.ceiling_audio(x, cfg, fr, kind)
        assert y.dtype == np.float32 and len(y) == len(x)
        f0 = bench.f0_track(y, sr)
        voiced = f0[f0 > 0]
        assert len(voiced) > 0.8 * len(f0)
        assert abs(12 * np.log2(np.median(voiced) / 150.0)) < 0.5  # within half a semitone
        # level within 3 dB of the original's
        mid = slice(sr // 5, -sr // 5)
        ratio_db = 10 * np.log10(np.mean(y[mid] ** 2) / np.mean(x[mid] ** 2))
        assert abs(ratio_db) < 3.0, (kind, ratio_db)


def test_token_grid_and_grid_f0_by_hand():
    from rrpo.codec.builtin import grid_f0, token_grid

    # 2 tokens of 40 ms (centres 20 and 60 ms) on a 10 ms grid: 0, 10, ..., 80 ms
    grid, i0, i1, w = token_grid(2, 25.0, 10.0)
    assert np.allclose(grid, np.arange(9) * 0.01)
    assert i0.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1] and i1.tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert np.allclose(w[:, 0], [0, 0, 0, 0.25, 0.5, 0.75, 0, 0, 0])
    # both voiced: log-linear, 100 and 200 Hz meet at sqrt(100 * 200) half-way
    f0 = grid_f0(np.array([100.0, 200.0]), i0, i1, w)
    assert np.allclose(f0[[0, 3, 4, 6]], [100.0, 100 * 2**0.25, 100 * 2**0.5, 200.0])
    # one unvoiced: the nearer token's value, so voicing stops half-way
    f0 = grid_f0(np.array([100.0, 0.0]), i0, i1, w)
    assert f0.tolist() == [100.0, 100.0, 100.0, 100.0, 0.0, 0.0, 0.0, 0.0, 0.0]
