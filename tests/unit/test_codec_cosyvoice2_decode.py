"""Decoding through the `cosyvoice` package, with fakes: a tiny CAM++ ONNX graph made here, and a fake
`cosyvoice` module injected into sys.modules whose CosyVoice2Model.token2wav has the current
upstream signature (ace7c47) or the release-era one (77d8cf13) and checks its call as upstream's
code would (a session id must be registered in hift_cache_dict; token_offset is required)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rrpo.codec import load_codec  # noqa: E402
from rrpo.codec.cosyvoice2 import CosyVoice2Profile, flow_log_mel, kaldi_fbank, whisper_log_mel  # noqa: E402
from rrpo.errors import RrpoError  # noqa: E402

from tests.unit.test_codec_cosyvoice2 import fake_tokenizer, tone  # noqa: E402

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
    for f in ("cosyvoice2.yaml", "llm.pt", "flow.pt", "hift.pt"):
        if f not in skip:
            (d / f).write_bytes(b"x")
    if "CosyVoice-BlankEN" not in skip:
        (d / "CosyVoice-BlankEN").mkdir()
    return d


def _check_call(model, token, prompt_token, prompt_feat, embedding, uuid, token_offset, finalize):
    assert model.hift_cache_dict[uuid] is None  # upstream indexes it: KeyError if unregistered
    assert token.dtype == torch.int32 and token.shape[0] == 1
    assert prompt_token.dtype == torch.int32 and prompt_feat.shape == (1, 2 * prompt_token.shape[1], 80)
    assert embedding.shape == (1, 192) and token_offset == 0 and finalize is True
    model.calls.append({"uuid": uuid, "token": token, "prompt_token": prompt_token, "embedding": embedding})
    return torch.ones(1, 960 * token.shape[1]) * 0.1  # 24 kHz, 25 Hz tokens


class ModelCurrent:
    def __init__(self):
        self.hift_cache_dict, self.calls = {}, []

    def token2wav(
        self, token, prompt_token, prompt_feat, embedding, token_offset, uuid, stream=False, finalize=False, speed=1.0
    ):
        assert stream is False
        return _check_call(self, token, prompt_token, prompt_feat, embedding, uuid, token_offset, finalize)


class ModelRelease:
    def __init__(self):
        self.hift_cache_dict, self.calls = {}, []

    def token2wav(self, token, prompt_token, prompt_feat, embedding, uuid, token_offset, finalize=False, speed=1.0):
        return _check_call(self, token, prompt_token, prompt_feat, embedding, uuid, token_offset, finalize)


def inject_cosyvoice(monkeypatch, model_cls=None, fail_import=None):
    """A fake `cosyvoice` package: cosyvoice.cli.cosyvoice.CosyVoice2(model_dir).model.token2wav."""
    pkg, cli, mod = (types.ModuleType(n) for n in ("cosyvoice", "cosyvoice.cli", "cosyvoice.cli.cosyvoice"))
    pkg.cli, cli.cosyvoice = cli, mod
    if fail_import:

        def __getattr__(name):
            raise ModuleNotFoundError(f"No module named '{fail_import}'", name=fail_import)

        mod.__getattr__ = __getattr__
    else:

        class CosyVoice2:
            sample_rate = 24000

            def __init__(self, model_dir):
                self.model_dir, self.model = model_dir, model_cls()

        mod.CosyVoice2 = CosyVoice2
    for name, m in (("cosyvoice", pkg), ("cosyvoice.cli", cli), ("cosyvoice.cli.cosyvoice", mod)):
        monkeypatch.setitem(sys.modules, name, m)


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


@pytest.mark.parametrize("model_cls", [ModelCurrent, ModelRelease])
def test_decode_calls_token2wav_with_either_signature(tmp_path, monkeypatch, model_cls):
    inject_cosyvoice(monkeypatch, model_cls)
    codec = load_codec(model_dir(tmp_path))
    assert codec.can_decode
    prof = codec.profile_from_audio([(tone(1.0, 300.0), SR)])
    y = codec.decode(np.array([1, 2, 3, 4, 5]), profile=prof)
    assert y.dtype == np.float32 and len(y) == 5 * 640  # 5 tokens x 960 samples at 24 kHz -> 16 kHz
    model = codec._decoder.model
    call = model.calls[0]
    assert call["token"].tolist() == [[1, 2, 3, 4, 5]]
    assert torch.equal(call["prompt_token"][0].long(), torch.from_numpy(prof.prompt_token))
    assert np.allclose(call["embedding"][0].numpy(), prof.embedding)
    assert model.hift_cache_dict == {}  # the session is removed after the call
    codec.decode(np.array([7, 8]), profile=prof)
    assert len(model.calls) == 2 and model.calls[1]["uuid"] != call["uuid"]
    with pytest.raises(RrpoError, match="voice of a reference recording"):
        codec.decode(np.array([1, 2]))


@pytest.mark.parametrize(
    "missing", ["cosyvoice2.yaml", "llm.pt", "flow.pt", "hift.pt", "campplus.onnx", "CosyVoice-BlankEN"]
)
def test_every_missing_file_is_named(tmp_path, monkeypatch, missing):
    inject_cosyvoice(monkeypatch, ModelCurrent)
    codec = load_codec(model_dir(tmp_path, skip=(missing,)))
    assert not codec.can_decode
    with pytest.raises(RrpoError, match=f"decoding needs {missing}"):
        codec.decode(np.array([1, 2]), profile=None)


@pytest.mark.parametrize("module", ["matcha", "modelscope", "hyperpyyaml"])
def test_missing_dependency_is_named(tmp_path, monkeypatch, module):
    inject_cosyvoice(monkeypatch, fail_import=module)
    d = model_dir(tmp_path)
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


def test_generate_writes_tokens_before_decoding_and_keeps_them_on_failure(tmp_path, monkeypatch, capsys):
    """policy generate with a CosyVoice2 codec: the reference recording builds the profile; a
    decode failure is one line and tokens.jsonl already holds every sampled row."""
    import json

    import soundfile as sf

    from rrpo.cli import main
    from rrpo.policy.io import save_policy

    from tests.unit.test_policy import small_policy

    class Broken(ModelCurrent):
        def token2wav(
            self,
            token,
            prompt_token,
            prompt_feat,
            embedding,
            token_offset,
            uuid,
            stream=False,
            finalize=False,
            speed=1.0,
        ):
            raise RuntimeError("CUDA out of memory")

    inject_cosyvoice(monkeypatch, Broken)
    d = model_dir(tmp_path)
    sf.write(tmp_path / "ref.wav", tone(1.0, 300.0), SR)
    save_policy(small_policy(speakers=(), vocab=6561), tmp_path / "p")

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

    assert main(args("gen")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "token2wav failed (CUDA out of memory)" in err[0]
    rows = [json.loads(x) for x in (tmp_path / "gen" / "tokens.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["今天天气好", "我们走吧"] and all(r["n_tokens"] > 0 for r in rows)
    # working decoder: WAVs beside the tokens
    inject_cosyvoice(monkeypatch, ModelCurrent)
    assert main(args("gen2")) == 0
    rows = [json.loads(x) for x in (tmp_path / "gen2" / "tokens.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all((tmp_path / "gen2" / r["wav"]).exists() for r in rows)
    capsys.readouterr()
    # without a reference the CosyVoice2 codec refuses before sampling
    assert main(args("gen3", ref=False)) == 2
    assert "reference recording" in capsys.readouterr().err
    assert not (tmp_path / "gen3" / "tokens.jsonl").exists()
