"""The CosyVoice2 tokenizer adapter, on small ONNX graphs built here with ``onnx.helper``: one with
the real tokenizer's signature (feats (1, 128, T) float, feats_length (1,) int32 -> indices), one
with a wrong signature."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from rrpo.cli import main  # noqa: E402
from rrpo.codec import load_codec  # noqa: E402
from rrpo.codec.base import frame_energy  # noqa: E402
from rrpo.codec.cosyvoice2 import CosyVoice2Tokenizer, whisper_log_mel  # noqa: E402
from rrpo.errors import RrpoError  # noqa: E402

SR = 16000


def _save(model, path):
    model.opset_import[0].version = 17
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def fake_tokenizer(path, out_dtype=TensorProto.INT32):
    """indices[0, j] = argmax over the 128 mel bins of frame 4j (25 Hz from 100 Hz frames)."""
    feats = helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, "T"])
    lens = helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1])
    out = helper.make_tensor_value_info("indices", out_dtype, [1, "T4"])
    consts = [
        helper.make_tensor(n, TensorProto.INT64, [1], [v])
        for n, v in (("start", 0), ("end", 2**62), ("axis", 2), ("step", 4))
    ]
    nodes = [
        helper.make_node("Slice", ["feats", "start", "end", "axis", "step"], ["sub"]),  # (1, 128, T/4)
        helper.make_node("ArgMax", ["sub"], ["am"], axis=1, keepdims=0),  # (1, T/4) int64
        helper.make_node("Cast", ["am"], ["indices"], to=out_dtype),
        # feats_length must be consumed so the graph keeps it as an input
        helper.make_node("Identity", ["feats_length"], ["len_out"]),
    ]
    len_out = helper.make_tensor_value_info("len_out", TensorProto.INT32, [1])
    graph = helper.make_graph(nodes, "s3_fake", [feats, lens], [out, len_out], initializer=consts)
    return _save(helper.make_model(graph), path)


def wrong_tokenizer(path):
    x = helper.make_tensor_value_info("speech", TensorProto.FLOAT, [1, "T"])
    y = helper.make_tensor_value_info("codes", TensorProto.FLOAT, [1, "T"])
    graph = helper.make_graph([helper.make_node("Identity", ["speech"], ["codes"])], "wrong", [x], [y])
    return _save(helper.make_model(graph), path)


def tone(seconds=1.0, f=440.0):
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_whisper_log_mel_shape_and_scale():
    """1 s at 16 kHz -> 16000 // 160 = 100 frames (101 centred frames, the last dropped), 128 bins.
    The scale is (log10(x) + 4) / 4 with a floor 8 log10 units (2 after scaling) below the max;
    a 440 Hz tone peaks in the mel bin whose centre is nearest 440 Hz."""
    import librosa

    m = whisper_log_mel(tone())
    assert m.shape == (128, 100) and m.dtype == np.float32
    assert m.max() - m.min() <= 2.0 + 1e-6
    centres = librosa.mel_frequencies(n_mels=128 + 2, fmin=0, fmax=SR / 2)[1:-1]
    assert abs(centres[int(np.median(m[:, 10:90].argmax(0)))] - 440) < 40


def test_adapter_encodes_with_the_real_signature(tmp_path):
    fake_tokenizer(tmp_path / "speech_tokenizer_v2.onnx")
    codec = load_codec(tmp_path)  # a CosyVoice2 model dir
    assert isinstance(codec, CosyVoice2Tokenizer)
    assert codec.vocab_size == 6561 and codec.frame_rate == 25.0 and codec.sampling_rate == SR
    x = tone(1.0, 440) + tone(1.0, 1000) * np.linspace(0, 1, SR, dtype=np.float32)
    tokens, energy = codec.encode_with_energy(x, SR)
    expect = whisper_log_mel(x)[:, ::4].argmax(0)  # what the graph computes, done in numpy
    assert tokens.dtype == np.int64 and np.array_equal(tokens, expect) and len(tokens) == 25
    assert np.allclose(energy, frame_energy(x, SR, 25.0, 25))
    # resampled input: 1 s at 8 kHz gives the same count
    assert len(codec.encode(x[::2], 8000)) == 25
    # an int64 output works too (some exports)
    codec64 = load_codec(fake_tokenizer(tmp_path / "t64.onnx", TensorProto.INT64))
    assert np.array_equal(codec64.encode(x, SR), expect)
    assert codec.token_features() is None


def test_adapter_decode_says_encode_only(tmp_path):
    codec = load_codec(fake_tokenizer(tmp_path / "speech_tokenizer_v2.onnx"))
    assert codec.can_decode is False  # no cosyvoice package / flow.pt here
    with pytest.raises(RrpoError, match="encodes only"):
        codec.decode(np.array([1, 2, 3]))
    with pytest.raises(RrpoError, match="token id 6561 at position 1 is out of range"):
        codec.decode(np.array([1, 6561]))


def test_adapter_profile_calls_fail_in_one_line(tmp_path):
    """Without campplus.onnx and the decoder's files every profile call is one clear RrpoError
    naming what is missing (tests/unit/test_codec_cosyvoice2_decode.py decodes with fakes)."""
    codec = load_codec(fake_tokenizer(tmp_path / "speech_tokenizer_v2.onnx"))
    with pytest.raises(RrpoError, match="encodes only: decoding needs cosyvoice2.yaml"):
        codec.decode(np.array([1, 2, 3]), profile=object())
    with pytest.raises(RrpoError, match="need CAM\\+\\+ \\(campplus.onnx\\)"):
        codec.profile_from_audio([(np.zeros(16000, np.float32), 16000)])
    with pytest.raises(RrpoError, match="no speaker profiles .speaker 'spk1'"):
        codec.speaker_profile("spk1")


def test_tokenize_with_adapter(tmp_path, capsys):
    from rrpo.codec.shards import TokenShards
    from rrpo.data.manifest import Utterance, write_manifest

    fake_tokenizer(tmp_path / "speech_tokenizer_v2.onnx")
    sf.write(tmp_path / "a.wav", tone(0.8), SR)
    man = write_manifest(tmp_path / "m.jsonl", [Utterance("a", "a.wav", SR, 0.8, "", "s", "en", "neutral", "train")])
    assert (
        main(
            [
                "tokenize",
                f"codec={tmp_path / 'speech_tokenizer_v2.onnx'}",
                f"manifest={man.path}",
                f"out={tmp_path / 'sh'}",
            ]
        )
        == 0
    )
    t, e = TokenShards(tmp_path / "sh").get("a")
    assert len(t) == 20 and len(e) == 20


def test_wrong_signature_is_one_line(tmp_path, capsys):
    bad = wrong_tokenizer(tmp_path / "bad.onnx")
    sf.write(tmp_path / "a.wav", tone(0.5), SR)
    rc = main(["codec", "encode", f"codec={bad}", f"audio={tmp_path / 'a.wav'}", f"out={tmp_path / 't.npy'}"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a CosyVoice2 speech tokenizer" in err[0] and "bad.onnx" in err[0]
    assert "speech[1, 'T']" in err[0]


def test_not_onnx_is_one_line(tmp_path, capsys):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    sf.write(tmp_path / "a.wav", tone(0.5), SR)
    rc = main(
        [
            "codec",
            "encode",
            f"codec={tmp_path / 'junk.onnx'}",
            f"audio={tmp_path / 'a.wav'}",
            f"out={tmp_path / 't.npy'}",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a loadable ONNX model" in err[0]


def test_too_short_for_adapter(tmp_path):
    codec = load_codec(fake_tokenizer(tmp_path / "speech_tokenizer_v2.onnx"))
    with pytest.raises(RrpoError, match="shorter than one token frame"):
        codec.encode(np.zeros(300, np.float32), SR)
