"""rrpo.phones: phonemes by hand, the recogniser's shapes, training with resume on a tiny synthetic
set, and a phonetic built-in codec (content ids from a phone model's states) round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from rrpo.cli import main
from rrpo.data.manifest import Utterance, write_manifest
from rrpo.phones.inventory import PhoneSet, edit_ops, error_rate, parse_phonemes
from rrpo.phones.model import NetShape, PhoneModel, PhoneNet, align, greedy, n_frames

SR = 16000


def test_parse_phonemes_by_hand():
    # stress marks go, length marks and variants stay, pauses and language tags go
    assert parse_phonemes("h|@|l|'oU w|'3:|l|d") == ["h", "@", "l", "oU", "w", "3:", "l", "d"]
    assert parse_phonemes("t|'3:|n|I|p|s|:|: a|n|d") == ["t", "3:", "n", "I", "p", "s", "a", "n", "d"]
    # Mandarin: tone digits removed, "_|" pauses dropped
    assert parse_phonemes("tS;|'i55|n|_| th|'iE55|n|_|") == ["tS;", "i", "n", "th", "iE", "n"]
    assert parse_phonemes("(en)h|,a#|l|oU(cmn) t#") == ["h", "a#", "l", "oU", "t#"]
    assert parse_phonemes("") == []


def test_edit_ops_by_hand():
    assert edit_ops("kitten", "sitting") == (2, 0, 1)  # k->s, e->i, +g
    assert edit_ops("abc", "abc") == (0, 0, 0)
    assert edit_ops("abc", "") == (0, 3, 0)
    assert edit_ops("", "ab") == (0, 0, 2)
    assert sum(edit_ops("ab", "ba")) == 2
    # a tie between one substitution and a deletion + insertion: the substitution is counted
    assert edit_ops(["a"], ["b"]) == (1, 0, 0)
    assert error_rate(list("abcde"), list("abxde")) == pytest.approx(0.2)
    assert np.isnan(error_rate([], ["a"]))


def test_phone_set():
    ps = PhoneSet.from_sequences([("b", "a"), ("a", "c")])
    assert ps.symbols == ["<blank>", "a", "b", "c"] and len(ps) == 4
    assert ps.encode(["c", "x", "a"]) == [3, 1] and ps.unknown(["c", "x"]) == 1
    assert ps.decode([0, 2, 0, 3]) == ["b", "c"]


def test_greedy_ctc_decoding_by_hand():
    # frames: a a blank a b b blank  -> a a b (repeats merged, a blank splits two a's)
    ids = [1, 1, 0, 1, 2, 2, 0]
    logits = torch.full((1, 7, 3), -5.0)
    logits[0, torch.arange(7), torch.tensor(ids)] = 5.0
    assert greedy(logits, torch.tensor([7])) == [[1, 1, 2]]
    assert greedy(logits, torch.tensor([3])) == [[1]]


def test_frames_and_alignment():
    assert n_frames(640) == 1 and n_frames(641) == 2 and n_frames(16000) == 25
    net = PhoneNet(NetShape(channels=8, blocks=1, n_phones=3))
    # 1 s of audio: 101 mel frames -> 26 network frames, aligned to the codec's 25 tokens
    assert int(PhoneNet.out_lengths(torch.tensor([101]))[0]) == 26
    x = np.arange(26)[:, None].astype(np.float32)
    assert align(x, 25).shape == (25, 1) and align(x, 28)[-1, 0] == 25
    h, lens = net.states(torch.zeros(2, 101, 80), torch.tensor([101, 50]))
    assert h.shape == (2, 26, 8) and lens.tolist() == [26, 13]


def _model(tmp_path, symbols=("a", "b", "c"), channels=8):
    shape = NetShape(channels=channels, blocks=1, n_phones=len(symbols) + 1)
    torch.manual_seed(0)
    m = PhoneModel(shape, list(symbols), PhoneNet(shape).state_dict())
    m.save(tmp_path / "pm")
    return PhoneModel.load(tmp_path / "pm")


def test_model_save_load_and_states(tmp_path):
    m = _model(tmp_path)
    audio = np.random.default_rng(0).standard_normal(SR + 100).astype(np.float32) * 0.1
    st = m.states(audio, SR)
    assert st.shape == (n_frames(SR + 100), 8)
    # resampled input: the same number of 25 Hz frames as the 16 kHz duration
    assert m.states(audio[::2].copy(), 8000).shape[0] == n_frames(2 * len(audio[::2]))
    assert isinstance(m.recognise(audio, SR), list)
    (tmp_path / "pm" / "phones.json").write_text(json.dumps({"format": "other"}))
    from rrpo.errors import RrpoError

    with pytest.raises(RrpoError, match="version"):
        PhoneModel.load(tmp_path / "pm")


# ------------------------------------------------------------------------------ tiny training


@pytest.fixture(scope="module")
def synth_corpus(tmp_path_factory):
    """Eight espeak-ng utterances (English and Mandarin) and their manifest."""
    from rrpo.data import espeak
    from rrpo.data.audio import resample

    root = tmp_path_factory.mktemp("phones")
    texts = [
        ("en", "the cat sat on the mat"),
        ("en", "a dog ran to the park"),
        ("en", "she sells sea shells"),
        ("en", "red lorry yellow lorry"),
        ("zh", "今天天气很好"),
        ("zh", "我们去公园"),
        ("en", "the sun is hot today"),
        ("zh", "他在看书"),
    ]
    recs = []
    for i, (lang, text) in enumerate(texts):
        pcm, sr = espeak.synthesize(text, "en-us" if lang == "en" else "cmn")
        x = resample(pcm.astype(np.float32) / 32768.0, sr, SR)
        sf.write(root / f"s{i}.wav", x, SR)
        recs.append(
            Utterance(
                id=f"s{i}",
                audio=f"s{i}.wav",
                sampling_rate=SR,
                duration=len(x) / SR,
                text=text,
                speaker="spk" + str(i % 2),
                language=lang,
                emotion="neutral",
                split="train",
            )
        )
    return write_manifest(root / "m.jsonl", recs)


TINY = [
    "channels=16",
    "blocks=1",
    "batch_seconds=6",
    "train.progress=false",
    "train.log_every=1",
    "train.warmup_steps=0",
]


def test_train_resume_repeats_losses(synth_corpus, tmp_path):
    from rrpo.config import load_config
    from rrpo.phones.train import PhoneTrainConfig, train_phones
    from rrpo.runs import RunDir

    def cfg(*extra):
        return load_config(PhoneTrainConfig, None, [f"manifests=[{synth_corpus.path}]", *TINY, *extra])

    full = train_phones(cfg("train.steps=4"), tmp_path / "a")
    c = cfg("train.steps=4", "train.ckpt_every=2", "train.keep_checkpoints=0")
    train_phones(c, tmp_path / "b")
    import shutil

    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step_4")  # as if killed after step 3
    train_phones(c, tmp_path / "b")
    la = [m["phones/ctc"] for m in RunDir(tmp_path / "a").read_metrics() if "phones/ctc" in m]
    lb = [m["phones/ctc"] for m in RunDir(tmp_path / "b").read_metrics() if "phones/ctc" in m]
    assert len(la) == 4 and la == pytest.approx(lb, rel=1e-6)
    assert full["data"]["utterances"] == 8 and full["data"]["phones"] > 10
    m = PhoneModel.load(tmp_path / "b")
    assert m.phones.symbols[0] == "<blank>" and len(m.phones) == full["data"]["phones"] + 1
    # the features were cached and read back by the resumed run
    assert len(list((tmp_path / "b" / "features").glob("train-*.npy"))) == 1


def test_training_lowers_the_loss(synth_corpus, tmp_path):
    from rrpo.config import load_config
    from rrpo.phones.train import PhoneTrainConfig, train_phones
    from rrpo.runs import RunDir

    c = load_config(
        PhoneTrainConfig,
        None,
        [
            f"manifests=[{synth_corpus.path}]",
            *TINY,
            "train.steps=40",
            "train.lr=3e-3",
            "dropout=0",
            "freq_masks=0",
            "time_masks=0",
        ],
    )
    train_phones(c, tmp_path / "r")
    losses = [m["phones/ctc"] for m in RunDir(tmp_path / "r").read_metrics() if "phones/ctc" in m]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_train_errors_are_one_line(tmp_path, capsys):
    man = write_manifest(
        tmp_path / "m.jsonl",
        [
            Utterance(
                id="x",
                audio="x.wav",
                sampling_rate=SR,
                duration=1.0,
                text="",
                speaker="s",
                language="en",
                emotion="neutral",
                split="train",
            )
        ],
    )
    assert main(["phones", "train", f"out={tmp_path / 'o'}", f"manifests=[{man.path}]"]) == 2
    err = capsys.readouterr().err
    assert "no transcribed utterance" in err and err.count("\n") == 1
    assert main(["phones", "train", f"out={tmp_path / 'o'}"]) == 2
    assert "manifests" in capsys.readouterr().err


# ------------------------------------------------------------------------------ phonetic codec


def test_phonetic_codec_round_trip(synth_corpus, tmp_path):
    """A codec whose content ids are k-means clusters of a phone model's states: it trains, keeps
    a copy of the model, reloads, encodes (content ids = the nearest state centroid) and decodes."""
    from rrpo.codec import load_codec
    from rrpo.codec.builtin import nearest
    from rrpo.data.audio import load_audio

    pm = _model(tmp_path, symbols=("a", "b", "c", "d"), channels=16)
    out = tmp_path / "codec"
    rc = main(
        [
            "codec",
            "train",
            f"manifests=[{synth_corpus.path}]",
            f"out={out}",
            "content=phonetic",
            f"content_model={tmp_path / 'pm'}",
            "spectral_clusters=6",
            "pitch_bins=3",
            "energy_bins=2",
            "min_speaker_recordings=2",
        ]
    )
    assert rc == 0
    assert (out / "content" / "phones.json").exists()
    codec = load_codec(out)
    assert codec.content_centroids.shape == (6, 16) and codec.vocab_size == 6 * 4 * 2
    audio, sr = load_audio(synth_corpus.audio_path(synth_corpus[0]))
    toks = codec.encode(audio, sr)
    s, _, _ = codec.factors(toks)
    expect = nearest(pm.states(audio, sr)[: len(toks)], codec.content_centroids)
    assert np.array_equal(s, expect)
    y = codec.decode(toks)
    assert y.shape == (len(toks) * codec.hop,) and np.isfinite(y).all()
    assert codec.token_features().shape == (codec.vocab_size, codec.centroids.shape[1] + 3)


def test_nearest_by_hand():
    from rrpo.codec.builtin import nearest

    c = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.array([[1.0, 1.0], [9.0, 1.0], [1.0, 7.0], [6.0, 5.0]])
    assert nearest(x, c, chunk=3).tolist() == [0, 1, 2, 1]


def test_phonetic_codec_needs_a_model(synth_corpus, tmp_path, capsys):
    rc = main(["codec", "train", f"manifests=[{synth_corpus.path}]", f"out={tmp_path / 'c'}", "content=phonetic"])
    assert rc == 2 and "content_model" in capsys.readouterr().err


def test_log_mel_by_hand():
    """A 1 kHz tone peaks in the band whose centre (HTK mel, 20-7,600 Hz, 80 bands) is nearest 1 kHz,
    frames are 1 + n // 160, and each band is normalised to mean 0, deviation 1 over the utterance."""
    from rrpo.phones.model import LogMel

    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    centres_mel = np.linspace(mel(20.0), mel(7600.0), 82)[1:-1]
    want = int(np.argmin(np.abs(centres_mel - mel(1000.0))))
    t = np.arange(16000) / SR
    rng = np.random.default_rng(0)
    x = (0.5 * np.sin(2 * np.pi * 1000.0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    x += 1e-3 * rng.standard_normal(len(x)).astype(np.float32)
    lm = LogMel()
    f = lm(x, SR)
    assert f.shape == (1 + 16000 // 160, 80)
    assert np.allclose(f.mean(0), 0, atol=1e-4) and np.allclose(f.std(0, ddof=1), 1, atol=2e-2)
    raw = np.log(lm.fb.numpy() @ (np.abs(np.fft.rfft(x[4000:4400] * np.hanning(402)[1:-1], 512)) ** 2) + 1e-6)
    assert int(np.argmax(raw)) == want
