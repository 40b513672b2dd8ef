"""Audio input: WAV/FLAC at any rate, stereo mix-down, resampling, and every bad-file error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from rrpo.data.audio import audio_info, load_audio, resample, rms_db, save_audio
from rrpo.errors import RrpoError


def sine(freq: float, sr: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    """Frequency of the largest FFT bin (Hann window), refined by parabolic interpolation."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spec))
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / len(x)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
def test_any_rate_resampled_to_16k_keeps_frequency(tmp_path, fmt, sr):
    path = tmp_path / f"tone.{fmt}"
    sf.write(str(path), sine(440.0, sr), sr)
    assert audio_info(path) == (sr, pytest.approx(1.0), 1)
    x, rate = load_audio(path, 16000)
    assert rate == 16000 and x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16000) <= 1
    assert peak_hz(x, 16000) == pytest.approx(440.0, abs=0.5)
    # a 0.5-amplitude sine has RMS 0.5/sqrt(2); resampling keeps the level (edges trimmed)
    assert np.sqrt(np.mean(x[800:-800] ** 2)) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)


def test_native_rate_when_sr_is_none(tmp_path):
    sf.write(str(tmp_path / "a.wav"), sine(1000.0, 22050, 0.5), 22050)
    x, rate = load_audio(tmp_path / "a.wav")
    assert rate == 22050 and len(x) == 11025
    assert peak_hz(x, rate) == pytest.approx(1000.0, abs=1.0)


def test_downsampling_removes_content_above_new_nyquist():
    """A 7 kHz tone at 48 kHz must not alias into the 0-4 kHz band when resampled to 8 kHz."""
    x = resample(sine(7000.0, 48000), 48000, 8000)
    assert len(x) == 8000
    assert np.sqrt(np.mean(x[400:-400] ** 2)) < 0.01


def test_stereo_mixdown(tmp_path):
    left, right = sine(300.0, 16000, 0.5, 0.4), sine(500.0, 16000, 0.5, 0.2)
    path = tmp_path / "st.wav"
    sf.write(str(path), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    assert audio_info(path)[2] == 2
    x, _ = load_audio(path)
    np.testing.assert_allclose(x, (left + right) / 2, atol=1e-7)
    both, _ = load_audio(path, mono=False)
    assert both.shape == (2, 8000)
    np.testing.assert_allclose(both[0], left, atol=1e-7)
    np.testing.assert_allclose(both[1], right, atol=1e-7)
    # stereo at 44.1 kHz, mixed down and resampled
    sf.write(str(tmp_path / "st44.flac"), np.stack([sine(300.0, 44100), sine(300.0, 44100)], axis=1), 44100)
    y, rate = load_audio(tmp_path / "st44.flac", 16000)
    assert rate == 16000 and y.ndim == 1 and peak_hz(y, 16000) == pytest.approx(300.0, abs=0.5)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_wav_sample_formats(tmp_path, subtype):
    x = sine(440.0, 16000, 0.2)
    sf.write(str(tmp_path / "a.wav"), x, 16000, subtype=subtype)
    y, _ = load_audio(tmp_path / "a.wav")
    np.testing.assert_allclose(y, x, atol=1e-4)


def test_save_audio_wav_flac_and_refuses_nan(tmp_path):
    x = sine(440.0, 16000, 0.2)
    save_audio(tmp_path / "a.flac", x, 16000)
    assert sf.info(str(tmp_path / "a.flac")).format == "FLAC"
    save_audio(tmp_path / "a.wav", np.clip(2 * x, -1, 1), 16000)
    before = (tmp_path / "a.wav").read_bytes()
    bad = x.copy()
    bad[5] = np.nan
    with pytest.raises(RrpoError, match="NaN"):
        save_audio(tmp_path / "a.wav", bad, 16000)
    assert (tmp_path / "a.wav").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac", "a.wav"]  # no temp file left


def test_rms_db():
    """A full-scale sine has RMS 1/sqrt(2): 20*log10(0.7071) = -3.0103 dBFS; silence is -inf."""
    assert rms_db(sine(1000.0, 16000, amp=1.0)) == pytest.approx(-3.0103, abs=1e-3)
    assert rms_db(np.full(100, 0.1)) == pytest.approx(-20.0)
    assert rms_db(np.zeros(10)) == -math.inf


# ------------------------------------------------------------------------------- bad files


def _wav_bytes(tmp_path, x=None, subtype="PCM_16"):
    p = tmp_path / "src.wav"
    sf.write(str(p), sine(440.0, 16000, 0.5) if x is None else x, 16000, subtype=subtype)
    return p.read_bytes()


def test_missing_empty_folder(tmp_path):
    with pytest.raises(RrpoError, match="audio file not found") as e:
        load_audio(tmp_path / "nope.wav")
    assert e.value.path == str(tmp_path / "nope.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    for fn in (load_audio, audio_info):
        with pytest.raises(RrpoError, match=r"empty \(0 bytes\)"):
            fn(tmp_path / "empty.wav")
    with pytest.raises(RrpoError, match="is a folder"):
        load_audio(tmp_path)


@pytest.mark.parametrize("keep", [30, 44, 1000, -1])
def test_truncated_wav(tmp_path, keep):
    """A WAV cut short (mid-header, right after it, mid-data, one byte short) is refused by both
    audio_info and load_audio, although libsndfile itself reads such files silently."""
    data = _wav_bytes(tmp_path)
    path = tmp_path / "cut.wav"
    path.write_bytes(data[:keep])
    for fn in (audio_info, load_audio):
        with pytest.raises(RrpoError, match="truncated") as e:
            fn(path)
        assert e.value.path == str(path)


def test_truncated_flac(tmp_path):
    p = tmp_path / "a.flac"
    sf.write(str(p), sine(440.0, 16000), 16000)
    data = p.read_bytes()
    p.write_bytes(data[:60])
    with pytest.raises(RrpoError, match="not a readable audio file"):
        audio_info(p)
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(RrpoError, match="truncated"):
        load_audio(p)


def test_wav_with_unknown_data_size_is_accepted(tmp_path):
    """Streaming writers leave the data size 0xFFFFFFFF; that is not a truncation."""
    data = bytearray(_wav_bytes(tmp_path))
    i = data.index(b"data")
    data[i + 4 : i + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    (tmp_path / "s.wav").write_bytes(bytes(data))
    x, _ = load_audio(tmp_path / "s.wav")
    assert len(x) == 8000


def test_not_audio(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("these are not samples\n" * 20)
    for fn in (audio_info, load_audio):
        with pytest.raises(RrpoError, match="not a readable audio file") as e:
            fn(p)
        assert e.value.path == str(p) and str(p) not in e.value.reason


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_samples(tmp_path, value):
    x = sine(440.0, 16000, 0.2)
    x[100] = value
    p = tmp_path / "n.wav"
    sf.write(str(p), x, 16000, subtype="FLOAT")
    with pytest.raises(RrpoError, match="NaN or infinite"):
        load_audio(p)


def test_silence(tmp_path):
    p = tmp_path / "s.wav"
    sf.write(str(p), np.zeros(8000, np.float32), 16000)
    with pytest.raises(RrpoError, match="silent"):
        load_audio(p)
    x, _ = load_audio(p, allow_silence=True)
    assert not x.any()
    q = tmp_path / "quiet.wav"
    sf.write(str(q), sine(440.0, 16000, amp=1e-3), 16000)  # -60 dBFS: quiet, not silent
    assert load_audio(q)[0].size == 16000
