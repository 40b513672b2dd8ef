"""CosyVoice2 decoding pieces that need no upstream code (features, the speaker profile, missing
files and packages named), and `policy generate` over a decoding codec. The tiny CAM++ ONNX graph is
made here; decoding itself runs upstream's real flow and vocoder (random weights, a directory built
by tests/unit/cosyvoice2_upstream.py; tests/unit/test_cosyvoice2_upstream.py compares it with
upstream's own inference)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rrpo.codec import load_codec  # noqa: E402
from rrpo.codec.cosyvoice2 import (  # noqa: E402
    DECODE_FILES,
    CosyVoice2Profile,
    flow_log_mel,
    kaldi_fbank,
    whisper_log_mel,
)
from rrpo.errors import RrpoError  # noqa: E402

from tests.unit.cosyvoice2_upstream import make_upstream_dir, upstream_problem  # noqa: E402
from tests.unit.test_codec_cosyvoice2 import fake_tokenizer, tone  # noqa: E402

needs_upstream = pytest.mark.skipif(upstream_problem() is not None, reason=str(upstream_problem()))

SR = 16000
W = np.random.default_rng(0).standard_normal((80, 192)).astype(np.float32) * 0.1


def fake_campplus(path):
    """input (1, T, 80) float -> embedding (1, 192) = max over time @ W (the mean is zero after
    the frontend's mean subtraction, so the max carries the signal)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, "T", 80])
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 192])
    nodes = [
        helper.make_node("ReduceMax", ["input"], ["m"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["m", "W"], ["embedding"]),
    ]
    g = helper.make_graph(nodes, "campplus_fake", [x], [y], initializer=[numpy_helper.from_array(W, "W")])
    m = helper.make_model(g)
    m.opset_import[0].version = 17
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def model_dir(tmp_path, skip=()):
    d = tmp_path / "CosyVoice2-0.5B"
    d.mkdir()
    fake_tokenizer(d / "speech_tokenizer_v2.onnx")
    if "campplus.onnx" not in skip:
        fake_campplus(d / "campplus.onnx")
    for f in ("cosyvoice2.yaml", "flow.pt", "hift.pt"):
        if f not in skip:
            (d / f).write_bytes(b"x")
    return d


# ------------------------------------------------------------------------------ features


def test_kaldi_fbank_hand_worked():
    """1 s at 16 kHz: 1 + (16000 - 400) // 160 = 98 frames of 80 bins. A 1 kHz tone peaks in the
    bin whose centre is nearest 1 kHz on Kaldi's mel scale 1127 ln(1 + f/700): bins are spaced
    (mel(8000) - mel(20)) / 81 from mel(20), centre of bin i at mel(20) + (i + 1) * delta.
    Silence gives log(FLT_EPSILON) = -15.942 everywhere."""
    f = kaldi_fbank(tone(1.0, 1000.0))
    assert f.shape == (98, 80) and f.dtype == np.float32
    mel = lambda x: 1127 * np.log(1 + x / 700)  # noqa: E731
    delta = (mel(8000) - mel(20)) / 81
    want = int(np.argmin(np.abs(mel(20) + delta * (np.arange(80) + 1) - mel(1000))))
    assert int(np.median(f.argmax(1))) == want
    assert np.allclose(kaldi_fbank(np.zeros(800, np.float32)), np.log(np.finfo(np.float32).eps))


def test_kaldi_fbank_matches_kaldi_native_fbank_where_installed():
    knf = pytest.importorskip("kaldi_native_fbank")
    rng = np.random.default_rng(0)
    x = (tone(1.3, 220.0) + 0.05 * rng.standard_normal(int(1.3 * SR))).astype(np.float32)
    o = knf.FbankOptions()
    o.frame_opts.dither = 0
    o.mel_opts.num_bins = 80
    fb = knf.OnlineFbank(o)
    fb.accept_waveform(SR, x.tolist())
    fb.input_finished()
    ref = np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    assert np.abs(ref - kaldi_fbank(x)).max() < 1e-3


def test_flow_log_mel_hand_worked():
    """1 s at 24 kHz, padded by 720 on each side: 1 + (24000 + 1440 - 1920) // 480 = 50 frames (two
    per 25 Hz token); a 1 kHz tone peaks in the Slaney mel bin (0-8 kHz, 80 bins) nearest 1 kHz;
    silence gives log(1e-5) (the magnitude floor sqrt(1e-9) is below it)."""
    import librosa

    t = np.arange(24000) / 24000
    m = flow_log_mel((0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert m.shape == (50, 80)
    centres = librosa.mel_frequencies(n_mels=82, fmin=0, fmax=8000)[1:-1]
    assert abs(centres[int(np.median(m.argmax(1)))] - 1000) < 80
    assert np.allclose(flow_log_mel(np.zeros(24000, np.float32)), np.log(1e-5), atol=1e-6)


# ------------------------------------------------------------------------------ profile


def test_profile_from_reference_recordings(tmp_path):
    """Embedding = mean over the recordings of campplus(fbank - mean_t fbank); prompt = the first
    recording's tokens and 24 kHz mel, cut to two mel frames per token."""
    codec = load_codec(model_dir(tmp_path))
    a, b = tone(1.0, 300.0), tone(0.8, 500.0)
    prof = codec.profile_from_audio([(a, SR), (b[::2], SR // 2)], speaker="spk")
    assert isinstance(prof, CosyVoice2Profile) and prof.speaker == "spk"

    def emb(x):
        f = kaldi_fbank(x)
        return (f - f.mean(0)).max(0) @ W

    from rrpo.data.audio import resample

    want = (emb(a) + emb(resample(b[::2], SR // 2, SR))) / 2
    assert prof.embedding.shape == (192,) and np.allclose(prof.embedding, want, atol=1e-4)
    toks = whisper_log_mel(a)[:, ::4].argmax(0)  # what the fake tokenizer computes
    assert len(prof.prompt_token) == 25 and np.array_equal(prof.prompt_token, toks[:25])
    assert prof.prompt_feat.shape == (50, 80)


# ------------------------------------------------------------------------------ decode


@pytest.mark.parametrize("missing", DECODE_FILES)
def test_every_missing_file_is_named(tmp_path, missing):
    codec = load_codec(model_dir(tmp_path, skip=(missing,)))
    assert not codec.can_decode
    with pytest.raises(RrpoError, match=f"decoding needs {missing}"):
        codec.decode(np.array([1, 2]), profile=None)


@needs_upstream
@pytest.mark.parametrize("module", ["hyperpyyaml", "matcha"])
def test_missing_dependency_is_named(tmp_path, monkeypatch, module):
    """Upstream's yaml loader absent, or a module that a class of the yaml imports (as the flow
    imports matcha; here a module written for the test imports a matcha submodule that does not
    exist): one line naming the package."""
    d = make_upstream_dir(tmp_path / "cv2")
    if module == "hyperpyyaml":
        monkeypatch.setitem(sys.modules, "hyperpyyaml", None)  # import -> ModuleNotFoundError
    else:
        (tmp_path / "rrpo_needs_matcha.py").write_text("import matcha.rrpo_absent_module\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        yaml = (d / "cosyvoice2.yaml").read_text()
        (d / "cosyvoice2.yaml").write_text(
            yaml.replace("!new:cosyvoice.hifigan.generator.HiFTGenerator", "!new:rrpo_needs_matcha.HiFT")
        )
    codec = load_codec(d)
    prof = CosyVoice2Profile("s", np.zeros(192, np.float32), np.array([1, 2]), np.zeros((4, 80), np.float32))
    with pytest.raises(RrpoError, match=f"decoding needs the `{module}` package") as e:
        codec.decode(np.array([1, 2]), profile=prof)
    assert "\n" not in str(e.value)


def test_no_cosyvoice_package_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cosyvoice", None)  # import cosyvoice -> ImportError
    codec = load_codec(model_dir(tmp_path))
    with pytest.raises(RrpoError, match="needs the `cosyvoice` package"):
        codec.decode(np.array([1, 2]))


@needs_upstream
def test_generate_writes_tokens_before_decoding_and_keeps_them_on_failure(tmp_path, monkeypatch, capsys):
    """policy generate with a CosyVoice2 codec: the reference recording builds the profile; a
    decode failure is one line and tokens.jsonl already holds every sampled row."""
    import json

    import soundfile as sf
    from cosyvoice.cli.model import CosyVoice2Model

    from rrpo.cli import main
    from rrpo.policy.io import save_policy

    from tests.unit.test_policy import small_policy

    def broken(
        self, token, prompt_token, prompt_feat, embedding, token_offset, uuid, stream=False, finalize=False, speed=1.0
    ):
        raise RuntimeError("CUDA out of memory")

    d = make_upstream_dir(tmp_path / "cv2")
    sf.write(tmp_path / "ref.wav", tone(1.0, 300.0), SR)
    save_policy(small_policy(speakers=(), vocab=6561), tmp_path / "p")
    monkeypatch.setattr(CosyVoice2Model, "token2wav", broken)

    def args(out, ref=True):
        a = [
            "policy",
            "generate",
            f"policy={tmp_path / 'p'}",
            "texts=[今天天气好, 我们走吧]",
            "emotions=[angry]",
            f"codec={d}",
            f"out={tmp_path / out}",
            "sampling.max_ratio=2",
            "device=cpu",
        ]
        return a + ([f"reference=[{tmp_path / 'ref.wav'}]"] if ref else [])

    capsys.readouterr()
    assert main(args("gen")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "token2wav failed (CUDA out of memory)" in err[0]
    rows = [json.loads(x) for x in (tmp_path / "gen" / "tokens.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["今天天气好", "我们走吧"] and all(r["n_tokens"] > 0 for r in rows)
    # working decoder (upstream's flow and vocoder): WAVs beside the tokens
    monkeypatch.undo()
    assert main(args("gen2")) == 0
    rows = [json.loads(x) for x in (tmp_path / "gen2" / "tokens.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all((tmp_path / "gen2" / r["wav"]).exists() for r in rows)
    capsys.readouterr()
    # without a reference the CosyVoice2 codec refuses before sampling
    assert main(args("gen3", ref=False)) == 2
    assert "reference recording" in capsys.readouterr().err
    assert not (tmp_path / "gen3" / "tokens.jsonl").exists()
