"""The built-in codec: arithmetic, a trained round trip on generated audio, the CLI verbs, token
shards with resume, and one-line errors for bad input. All audio is generated here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from rrpo.cli import main
from rrpo.codec import load_codec
from rrpo.codec.base import frame_energy
from rrpo.codec.builtin import (
    BuiltinCodecConfig,
    _quantile_bins,
    _uniform_bins,
    n_tokens,
    relative_level,
    relative_pitch,
    smooth_voiced_runs,
)
from rrpo.codec.shards import TokenShards
from rrpo.data.manifest import Utterance, write_manifest

SR = 16000


def glide(seconds: float, f_start: float, f_end: float, seed: int = 0) -> np.ndarray:
    """A harmonic 'vowel' with a log-linear pitch glide, a rise-and-fall loudness envelope, a
    vowel-like spectral tilt, and 0.15 s of noise (an unvoiced stretch) at the start."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = f_start * (f_end / f_start) ** (t / seconds)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum((0.8**k) * np.sin(k * phase) for k in range(1, 12) if k * f0.max() < SR / 2)
    env = np.sin(np.pi * np.linspace(0.05, 0.95, n)) ** 0.5
    x = 0.3 * x / np.abs(x).max() * env
    k = int(0.15 * SR)
    x[:k] = 0.05 * rng.standard_normal(k)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six generated utterances of two speakers (a low and a high voice) and their manifest."""
    root = tmp_path_factory.mktemp("corpus")
    recs = []
    for i, (a, b) in enumerate([(110, 180), (200, 140), (150, 260), (240, 170), (100, 130), (180, 300)]):
        p = root / f"u{i}.wav"
        sf.write(p, glide(1.2 + 0.1 * i, a, b, seed=i), SR)
        recs.append(
            Utterance(
                id=f"u{i}",
                audio=p.name,
                sampling_rate=SR,
                duration=1.2 + 0.1 * i,
                text="",
                speaker="lo" if i in (0, 2, 4) else "hi",
                language="en",
                emotion="neutral",
                split="train",
            )
        )
    return write_manifest(root / "m.jsonl", recs)


@pytest.fixture(scope="module")
def codec_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("codec") / "c"
    rc = main(
        [
            "codec",
            "train",
            f"manifests=[{corpus.path}]",
            f"out={out}",
            "spectral_clusters=8",
            "pitch_bins=4",
            "energy_bins=3",
            "min_speaker_recordings=3",
            "decoder=learned",
            "decoder_steps=30",
            "decoder_channels=16",
            "decoder_dims=24",
        ]
    )
    assert rc == 0
    return out


def test_token_count_arithmetic():
    """hop 640 (16 kHz / 25 Hz): one token per started frame, none below one full frame."""
    assert n_tokens(639, 640) == 0
    assert n_tokens(640, 640) == 1
    assert n_tokens(641, 640) == 2
    assert n_tokens(1000, 640) == 2
    assert n_tokens(1280, 640) == 2
    assert n_tokens(16000, 640) == 25


def test_relative_pitch_and_level_by_hand():
    """f0 [100, 200, 0, 100]: median voiced 100 Hz -> [0, +12 st, unvoiced, 0].
    level [-10, -20, -30, -40] dB, 100th percentile -10 -> [0, -10, -20, -30]."""
    rp = relative_pitch(np.array([100.0, 200.0, 0.0, 100.0]))
    assert rp[0] == pytest.approx(0) and rp[1] == pytest.approx(12) and np.isnan(rp[2]) and rp[3] == pytest.approx(0)
    assert np.allclose(relative_level(np.array([-10.0, -20, -30, -40]), 100), [0, -10, -20, -30])


def test_quantile_bins_by_hand():
    """values 0..99, 4 bins: edges at the 25/50/75 % quantiles (24.75, 49.5, 74.25); bin medians
    12, 37, 62, 87 (bin 0 holds 0..24, whose median is 12)."""
    edges, centres = _quantile_bins(np.arange(100.0), 4)
    assert np.allclose(edges, [24.75, 49.5, 74.25], atol=1e-6)
    assert np.allclose(centres, [12, 37, 62, 87])


def test_uniform_bins_by_hand():
    """values 0..99, 4 bins between the 1st and 99th percentiles (0.99, 98.01): width
    (98.01 - 0.99) / 4 = 24.255, edges 25.245, 49.5, 73.755; bins hold 0..25, 26..49, 50..73,
    74..99, whose medians are 12.5, 37.5, 61.5, 86.5. Widths follow the range, not the density:
    add 5 values at 1000 (105 values; 1st / 99th percentiles 1.04 / 1000, width 249.74): edges
    250.78, 500.52, 750.26, so 0..99 all fall in the lowest bin (median 49.5), bins 1 and 2 are
    empty (centres the middles of their edges, 375.65 and 625.39) and the top bin is 1000, where
    equal-occupancy edges (26, 52, 78) would split 0..99 four ways. One bin: the median."""
    edges, centres = _uniform_bins(np.arange(100.0), 4)
    assert np.allclose(edges, [25.245, 49.5, 73.755])
    assert np.allclose(centres, [12.5, 37.5, 61.5, 86.5])
    tail = np.concatenate([np.arange(100.0), np.full(5, 1000.0)])
    edges, centres = _uniform_bins(tail, 4)
    assert np.allclose(edges, [250.78, 500.52, 750.26])
    assert np.allclose(centres, [49.5, 375.65, 625.39, 1000.0])  # bins 1, 2 empty: their middles
    assert np.allclose(_quantile_bins(tail, 4)[0][:2], [26, 52])
    e1, c1 = _uniform_bins(np.array([3.0, 1.0, 2.0]), 1)
    assert e1.size == 0 and c1[0] == 2.0


def test_pitch_binning_setting():
    """'uniform' is the default; anything else than 'uniform' / 'quantile' is a config error, as is
    a synthesis period outside [1, 20] ms."""
    from rrpo.config import ConfigError

    assert BuiltinCodecConfig().pitch_binning == "uniform"
    assert BuiltinCodecConfig(pitch_binning="quantile").pitch_binning == "quantile"
    with pytest.raises(ConfigError, match="pitch_binning"):
        BuiltinCodecConfig(pitch_binning="lloyd")
    with pytest.raises(ConfigError, match="synthesis_period_ms"):
        BuiltinCodecConfig(synthesis_period_ms=0.5)


def test_pitch_smoothing_by_hand():
    """[1, 2, 1] / 4 inside voiced runs, a run's ends repeating themselves.
    st [0, 12, 0, 5], voiced [1, 1, 1, 0], one pass: [(0+0+12)/4, (0+24+0)/4, (12+0+0)/4, 5]
    = [3, 6, 3, 5] (the unvoiced 5 is kept).
    st [0, 12, 0, 5, 1, 9], voiced [1, 1, 0, 1, 1, 1] (runs [0, 12] and [5, 1, 9]), pass 1:
    [3, 9, 0, 4, 4, 7]; pass 2: [(3+6+9)/4, (3+18+9)/4, 0, (4+8+4)/4, (4+8+7)/4, (4+14+7)/4]
    = [4.5, 7.5, 0, 4, 4.75, 6.25]. Zero passes change nothing."""
    assert np.allclose(smooth_voiced_runs(np.array([0, 12, 0, 5.0]), np.array([1, 1, 1, 0]), 1), [3, 6, 3, 5])
    st, v = np.array([0, 12, 0, 5, 1, 9.0]), np.array([1, 1, 0, 1, 1, 1])
    assert np.allclose(smooth_voiced_runs(st, v, 1), [3, 9, 0, 4, 4, 7])
    assert np.allclose(smooth_voiced_runs(st, v, 2), [4.5, 7.5, 0, 4, 4.75, 6.25])
    assert np.array_equal(smooth_voiced_runs(st, v, 0), st)


def test_frame_energy_by_hand():
    """Constant 0.5 -> 0.25 per frame; a frame of [1, -1, 0, 0] -> 0.5; a partial last frame keeps
    its own mean square."""
    assert np.allclose(frame_energy(np.full(8, 0.5), 4, 1.0, 2), [0.25, 0.25])
    assert np.allclose(frame_energy(np.array([1.0, -1, 0, 0, 2, 2]), 4, 1.0, 2), [0.5, 4.0])


def test_round_trip_keeps_length_pitch_and_energy(codec_dir):
    import pyworld as pw

    codec = load_codec(codec_dir)
    assert codec.vocab_size == 8 * 5 * 3 and codec.frame_rate == 25.0 and codec.can_decode
    x = glide(1.5, 120, 240, seed=9)  # unseen pitch range / length
    tokens, energy = codec.encode_with_energy(x, SR)
    assert tokens.dtype == np.int64 and len(tokens) == n_tokens(len(x), 640) == 38
    assert tokens.min() >= 0 and tokens.max() < codec.vocab_size
    assert np.allclose(energy, frame_energy(x, SR, 25.0, len(tokens)), rtol=1e-5)
    y = codec.decode(tokens)
    assert y.dtype == np.float32 and len(y) == len(tokens) * 640 and np.isfinite(y).all()
    # pitch contour: the glide rises, so the voiced pitch bins and the decoded F0 rise with it
    _, p, e = codec.factors(tokens)
    voiced = p > 0
    assert voiced[10:].mean() > 0.8 and not voiced[:2].any()  # the noise start is unvoiced
    f0, _ = pw.dio(y.astype(np.float64), SR, frame_period=40.0, f0_floor=60, f0_ceil=600)
    f0_in, _ = pw.dio(x.astype(np.float64), SR, frame_period=40.0, f0_floor=60, f0_ceil=600)
    n = min(len(f0), len(f0_in))
    both = (f0[:n] > 0) & (f0_in[:n] > 0)
    assert both.sum() > 15
    assert np.corrcoef(np.log(f0[:n][both]), np.log(f0_in[:n][both]))[0, 1] > 0.8
    # energy contour: each token's decoded level is its bin's level (the decoder's gain makes it
    # so), and follows the input's level up to the 3-bin quantisation
    lvl_in = 10 * np.log10(energy + 1e-10)
    lvl_out = 10 * np.log10(frame_energy(y, SR, 25.0, len(tokens)) + 1e-10)
    assert np.allclose(lvl_out[1:-1], codec.pooled.level_db + codec.energy_centres[e][1:-1], atol=1.5)
    assert np.corrcoef(lvl_in, lvl_out)[0, 1] > 0.7
    # the cluster decoder keeps length and level too
    yc = codec.decode(tokens, decoder="cluster")
    assert len(yc) == len(y)
    lvl_c = 10 * np.log10(frame_energy(yc, SR, 25.0, len(tokens)) + 1e-10)
    assert np.allclose(lvl_c[1:-1], codec.pooled.level_db + codec.energy_centres[e][1:-1], atol=1.5)
    # pitch_smoothing smooths the decoded F0 across bin steps; a steady run stays as it is
    import dataclasses

    steady = np.full(20, tokens[20])
    plain = codec.decode(steady)
    codec.cfg = dataclasses.replace(codec.cfg, pitch_smoothing=2)
    ys, steady_s = codec.decode(tokens), codec.decode(steady)
    codec.cfg = dataclasses.replace(codec.cfg, pitch_smoothing=0)
    assert len(ys) == len(y) and np.isfinite(ys).all() and not np.allclose(ys, y)
    assert np.allclose(steady_s, plain)
    # a 10 ms synthesis grid (the default is 5 ms; both decoders) keeps length, each token's level
    # and the pitch contour
    assert codec.cfg.synthesis_period_ms == 5.0
    codec.cfg = dataclasses.replace(codec.cfg, synthesis_period_ms=10.0)
    for dec, ref in (("learned", y), ("cluster", yc)):
        y10 = codec.decode(tokens, decoder=dec)
        assert len(y10) == len(ref) and np.isfinite(y10).all() and not np.allclose(y10, ref)
        lvl10 = 10 * np.log10(frame_energy(y10, SR, 25.0, len(tokens)) + 1e-10)
        assert np.allclose(lvl10[1:-1], codec.pooled.level_db + codec.energy_centres[e][1:-1], atol=1.5)
        f5, _ = pw.dio(y10.astype(np.float64), SR, frame_period=40.0, f0_floor=60, f0_ceil=600)
        m = min(len(f5), len(f0))
        both = (f5[:m] > 0) & (f0[:m] > 0)
        assert both.sum() > 15 and np.corrcoef(np.log(f5[:m][both]), np.log(f0[:m][both]))[0, 1] > 0.95
    codec.cfg = dataclasses.replace(codec.cfg, synthesis_period_ms=5.0)
    # decoding as a speaker one octave higher (a profile 12 semitones up) doubles F0

    up = dataclasses.replace(codec.pooled, f0_st=codec.pooled.f0_st + 12)
    y2 = codec.decode(tokens, profile=up)
    f0b, _ = pw.dio(y2.astype(np.float64), SR, frame_period=40.0, f0_floor=60, f0_ceil=800)
    m = min(len(f0b), len(f0))
    both = (f0b[:m] > 0) & (f0[:m] > 0)
    assert np.median(f0b[:m][both] / f0[:m][both]) == pytest.approx(2.0, rel=0.1)


def test_token_layout_and_features(codec_dir):
    codec = load_codec(codec_dir)
    ids = np.arange(codec.vocab_size)
    s, p, e = codec.factors(ids)
    assert np.array_equal(codec.compose(s, p, e), ids)
    assert s.max() == 7 and p.max() == 4 and e.max() == 2
    feats = codec.token_features()
    assert feats.shape == (codec.vocab_size, codec.centroids.shape[1] + 3) and feats.dtype == np.float32
    tok = int(codec.compose(3, 2, 1))
    assert np.allclose(feats[tok, :-3], codec.centroids[3])
    assert feats[tok, -3] == pytest.approx(codec.pitch_centres[1] / 6)
    assert feats[tok, -2] == 1.0 and feats[int(codec.compose(3, 0, 1)), -2] == 0.0
    assert feats[tok, -1] == pytest.approx(codec.energy_centres[1] / 10)


def test_train_writes_versioned_codec_dir(codec_dir):
    meta = json.loads((codec_dir / "codec.json").read_text())
    assert meta["format"] == "rrpo-codec" and meta["kind"] == "builtin" and meta["version"] == 2
    assert meta["vocab_size"] == 120 and meta["config"]["spectral_clusters"] == 8
    assert (codec_dir / "codec.safetensors").exists() and (codec_dir / "config.yaml").exists()
    assert (codec_dir / "command.txt").exists()
    assert (codec_dir / "decoder.safetensors").exists() and not (codec_dir / "decoder.ckpt").exists()
    prof = json.loads((codec_dir / "profiles.json").read_text())
    assert sorted(prof["profiles"]) == ["hi", "lo"] and prof["profiles"]["lo"]["recordings"] == 3
    assert prof["profiles"]["hi"]["f0_hz"] > prof["profiles"]["lo"]["f0_hz"]
    assert meta["config"]["pitch_binning"] == "uniform"


def test_codec_saved_before_pitch_binning_reads_as_quantile(codec_dir, tmp_path):
    """A codec.json without `pitch_binning` was written when every pitch bin was a quantile bin:
    it loads with pitch_binning='quantile' (its stored edges are used either way)."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(codec_dir, old)
    meta = json.loads((old / "codec.json").read_text())
    del meta["config"]["pitch_binning"]
    (old / "codec.json").write_text(json.dumps(meta))
    codec = load_codec(old)
    assert codec.cfg.pitch_binning == "quantile"
    assert np.array_equal(codec.pitch_edges, load_codec(codec_dir).pitch_edges)


def test_encode_decode_verbs(codec_dir, tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, glide(1.0, 150, 200), SR)
    assert main(["codec", "encode", f"codec={codec_dir}", f"audio={wav}", f"out={tmp_path / 't.txt'}"]) == 0
    toks = [int(v) for v in (tmp_path / "t.txt").read_text().split()]
    assert len(toks) == 25
    assert (
        main(["codec", "decode", f"codec={codec_dir}", f"tokens={tmp_path / 't.txt'}", f"out={tmp_path / 'y.wav'}"])
        == 0
    )
    y, sr = sf.read(tmp_path / "y.wav")
    assert sr == SR and len(y) == 25 * 640


def test_tokenize_shards_resume(codec_dir, corpus, tmp_path, capsys):
    from rrpo.data.audio import load_audio

    out = tmp_path / "shards"
    args = ["tokenize", f"codec={codec_dir}", f"manifest={corpus.path}", f"out={out}", "shard_size=2"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["encoded"] == 6 and first["resumed_past"] == 0
    shards = TokenShards(out)
    assert len(shards) == 6 and shards.vocab_size == 120
    codec = load_codec(codec_dir)
    meta = json.loads((out / "meta.json").read_text())
    assert sorted(meta["profiles"]) == ["hi", "lo"]
    x, _ = load_audio(corpus.audio_path(corpus[4]))
    # the shards' profile of 'lo' is the codec's (the same three recordings)
    assert meta["profiles"]["lo"]["f0_st"] == pytest.approx(codec.speaker_profile("lo").f0_st, abs=1e-4)
    t_ref, e_ref = codec.encode_with_energy(x, SR, profile=codec.speaker_profile("lo"))
    t, e = shards.get("u4")
    assert np.array_equal(t, t_ref) and np.allclose(e, e_ref)
    # an interrupted run lost its last shard: the re-run encodes only those two utterances
    files = sorted(out.glob("shard_*.npz"))
    assert len(files) == 3
    files[-1].unlink()
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["encoded"] == 2 and again["resumed_past"] == 4
    shards = TokenShards(out)
    assert sorted(shards.ids()) == [f"u{i}" for i in range(6)]
    assert np.array_equal(shards.get("u4")[0], t_ref)
    # decode one utterance straight from the shards
    assert main(["codec", "decode", f"codec={codec_dir}", f"tokens={out}", "id=u4", f"out={tmp_path / 'u4.wav'}"]) == 0
    assert len(sf.read(tmp_path / "u4.wav")[0]) == len(t_ref) * 640


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rrpo: error: ")
    return err[0]


def test_too_short_audio_is_one_line(codec_dir, tmp_path, capsys):
    wav = tmp_path / "short.wav"
    sf.write(wav, 0.1 * np.sin(np.arange(500) / 5.0), SR)  # 31 ms < one 40 ms frame
    rc = main(["codec", "encode", f"codec={codec_dir}", f"audio={wav}", f"out={tmp_path / 't.npy'}"])
    assert rc == 2
    line = _one_error_line(capsys)
    assert "short.wav" in line and "shorter than one token frame" in line
    assert not (tmp_path / "t.npy").exists()


def test_token_out_of_range_is_one_line(codec_dir, tmp_path, capsys):
    (tmp_path / "t.txt").write_text("1 2 120 3\n")
    rc = main(["codec", "decode", f"codec={codec_dir}", f"tokens={tmp_path / 't.txt'}", f"out={tmp_path / 'y.wav'}"])
    assert rc == 2
    line = _one_error_line(capsys)
    assert "token id 120 at position 2 is out of range [0, 120)" in line
    assert not (tmp_path / "y.wav").exists()


def test_codec_of_another_version_is_one_line(codec_dir, tmp_path, capsys):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(codec_dir, old)
    meta = json.loads((old / "codec.json").read_text())
    meta["version"] = 99
    (old / "codec.json").write_text(json.dumps(meta))
    (tmp_path / "t.txt").write_text("1 2 3\n")
    rc = main(["codec", "decode", f"codec={old}", f"tokens={tmp_path / 't.txt'}", f"out={tmp_path / 'y.wav'}"])
    assert rc == 2
    line = _one_error_line(capsys)
    assert "codec version 99" in line and "reads version 2" in line


def test_not_a_codec_dir_is_one_line(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("1\n")
    rc = main(["codec", "decode", f"codec={tmp_path}", f"tokens={tmp_path / 't.txt'}", f"out={tmp_path / 'y.wav'}"])
    assert rc == 2
    assert "not a codec directory" in _one_error_line(capsys)
