"""Speaker profiles, speaker-relative encoding, decoding with a profile, the learned decoder's
resume, and one-line errors for bad profiles and speakers. All audio is generated here."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import soundfile as sf

from rrpo.cli import main
from rrpo.codec import load_codec
from rrpo.codec.builtin import _level_values, _pitch_values
from rrpo.codec.profile import ProfileAccumulator, SpeakerProfile
from rrpo.data.manifest import Utterance, write_manifest
from rrpo.errors import RrpoError

from tests.unit.test_codec_builtin import SR, codec_dir, corpus, glide  # noqa: F401 (fixtures)


def st(hz):
    return 12 * math.log2(hz)


def _two_recordings() -> ProfileAccumulator:
    """The accumulator of the two hand-worked recordings of the tests below (level percentile 100)."""
    acc = ProfileAccumulator(100.0)
    acc.add(
        np.array([100.0, 200, 0]),
        np.array([-10.0, -20, -50]),
        np.array([[1.0, 1], [3, 3], [9, 9]]),
        np.array([[2.0], [4], [100]]),
    )
    acc.add(np.array([400.0, 0]), np.array([-30.0, -30]), np.array([[0.0, 0], [2, 2]]), np.array([[0.0], [2]]))
    return acc


def test_profile_statistics_by_hand():
    """Two recordings, level percentile 100, speech = frames within 30 dB of the recording's top:
    rec 1: f0 [100, 200, 0], dB [-10, -20, -50] -> reference -10, speech frames 0 and 1;
    rec 2: f0 [400, 0], dB [-30, -30] -> reference -30, both frames speech.
    F0 median of 100, 200, 400 Hz = 200 Hz; level = median(-10, -30) = -20 dB;
    mean mel envelope over the 4 speech frames = ([1,1] + [3,3] + [0,0] + [2,2]) / 4 = [1.5, 1.5];
    mean log envelope = (2 + 4 + 0 + 2) / 4 = 2 (the silent frame's 9 and 100 are left out)."""
    acc = _two_recordings()
    p = acc.finish("a", None, min_voiced=1)
    assert p.recordings == 2 and p.voiced_frames == 3
    assert p.f0_st == pytest.approx(st(200)) and p.f0_hz == pytest.approx(200)
    assert p.level_db == pytest.approx(-20)
    assert np.allclose(p.env_mel, [1.5, 1.5]) and np.allclose(p.env_log, [2.0])
    assert p.own_weight == 1.0


def test_fallback_for_few_recordings_by_hand(caplog):
    """Same two recordings, min_recordings 4, pooled envelopes 0: w = 2/4, so the envelopes are
    halved ([0.75, 0.75], 1.0) while F0 (200 Hz) and level (-20 dB) stay the speaker's; a warning
    names the speaker."""
    acc = _two_recordings()
    pooled = SpeakerProfile("*", 10, 10, st(120), -30.0, np.zeros(2), np.zeros(1))
    with caplog.at_level("WARNING"):
        p = acc.finish("few", pooled, min_recordings=4, min_voiced=1)
    assert np.allclose(p.env_mel, [0.75, 0.75]) and np.allclose(p.env_log, [1.0]) and p.own_weight == 0.5
    assert p.f0_st == pytest.approx(st(200)) and p.level_db == pytest.approx(-20)
    assert "speaker 'few' has only 2 recording(s)" in caplog.text


def test_no_voiced_frames_names_the_speaker_or_falls_back():
    """No pooled profile or enough recordings: an error naming the speaker; one recording (< 4)
    with a pooled profile: the pooled F0 median (120 Hz)."""
    acc = ProfileAccumulator(95.0)
    acc.add(np.zeros(3), np.array([-10.0, -20, -30]), np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(RrpoError, match=r"speaker 'mute' has 0 voiced frame\(s\) in its 1 recording"):
        acc.finish("mute", None)
    pooled = SpeakerProfile("*", 10, 10, st(120), -30.0, np.zeros(2), np.zeros(1))
    with pytest.raises(RrpoError, match="speaker 'mute' has 0 voiced"):
        acc.finish("mute", pooled, min_recordings=1)
    assert acc.finish("mute", pooled, min_recordings=4).f0_hz == pytest.approx(120)


def test_relative_values_by_hand():
    """Pitch re the speaker (200 Hz): f0 [200, 0, 400] -> [0, nan, +12] st; re the utterance
    (median of 200 and 400 Hz = 6 st above 200 Hz) -> [-6, nan, +6]. Level re the speaker's
    -15 dB: [-10, -20] -> [+5, -5]; re the utterance's 100th percentile -> [0, -10]."""
    sp = _pitch_values(np.array([200.0, 0, 400]), "speaker", st(200))
    assert sp[0] == pytest.approx(0) and np.isnan(sp[1]) and sp[2] == pytest.approx(12)
    ut = _pitch_values(np.array([200.0, 0, 400]), "utterance", 0.0)
    assert ut[0] == pytest.approx(-6) and np.isnan(ut[1]) and ut[2] == pytest.approx(6)
    assert np.allclose(_level_values(np.array([-10.0, -20]), "speaker", 95, -15.0), [5, -5])
    assert np.allclose(_level_values(np.array([-10.0, -20]), "utterance", 100, 0.0), [0, -10])


def test_speaker_relative_tokens_ignore_the_speakers_gain(codec_dir):  # noqa: F811
    """Every recording of a speaker 6 dB louder: its profile's level is 6 dB higher, so the tokens
    (relative to the profile) are the same; against the quiet profile the energy bins rise."""
    codec = load_codec(codec_dir)
    recs = [glide(1.2, 120 + 10 * i, 180, seed=i) for i in range(3)]
    quiet = codec.profile_from_audio([(x, SR) for x in recs], "q")
    loud = codec.profile_from_audio([(2 * x, SR) for x in recs], "l")
    assert loud.level_db - quiet.level_db == pytest.approx(20 * math.log10(2), abs=1e-3)
    assert loud.f0_st == pytest.approx(quiet.f0_st, abs=1e-6)
    t_q = codec.encode(recs[0], SR, profile=quiet)
    t_l = codec.encode(2 * recs[0], SR, profile=loud)
    assert np.array_equal(t_q, t_l)
    _, _, e_q = codec.factors(t_q)
    _, _, e_x = codec.factors(codec.encode(2 * recs[0], SR, profile=quiet))
    assert (e_x >= e_q).all() and (e_x > e_q).any()


def test_decode_with_a_profile_puts_the_speaker_back(codec_dir):  # noqa: F811
    """Tokens of the low voice decoded as itself keep the input's median F0 (within 1 semitone or
    0.6 of a pitch bin's width, whichever is larger; both decoders); decoded as the high voice, F0
    moves by the two profiles' difference."""
    import pyworld as pw

    codec = load_codec(codec_dir)
    lo, hi = codec.speaker_profile("lo"), codec.speaker_profile("hi")
    assert hi.f0_st - lo.f0_st > 2
    x = glide(1.3, 110, 190, seed=3)
    f_in = pw.dio(x.astype(np.float64), SR, frame_period=10.0, f0_floor=60, f0_ceil=600)[0]
    tok = codec.encode(x, SR, profile=lo)
    # the decoded median is the input's up to the pitch quantiser's step: this tiny codec has 4
    # bins of equal width over its training range (two glide voices, a wide range)
    step = float(np.diff(codec.pitch_edges).max())
    assert codec.cfg.pitch_binning == "uniform" and np.allclose(np.diff(codec.pitch_edges), step)
    for dec in ("learned", "cluster"):
        y = codec.decode(tok, profile=lo, decoder=dec)
        f0, _ = pw.dio(y.astype(np.float64), SR, frame_period=10.0, f0_floor=60, f0_ceil=600)
        offset = abs(12 * np.log2(np.median(f0[f0 > 0]) / np.median(f_in[f_in > 0])))
        assert offset < max(1.0, 0.6 * step), (dec, offset, step)
    # the shift: F0 is the profile's median plus the bin's centre whichever decoder renders the
    # envelope; DIO tracks the cluster decoder's output, while on this 30-step learned decoder's
    # it measured a 3.7-semitone shift for the 6.3 set once the pitch bins became uniform
    y_lo, y_hi = codec.decode(tok, profile=lo, decoder="cluster"), codec.decode(tok, profile=hi, decoder="cluster")
    f_lo = pw.dio(y_lo.astype(np.float64), SR, frame_period=10.0, f0_floor=60, f0_ceil=600)[0]
    f_hi = pw.dio(y_hi.astype(np.float64), SR, frame_period=10.0, f0_floor=60, f0_ceil=600)[0]
    shift = 12 * np.log2(np.median(f_hi[f_hi > 0]) / np.median(f_lo[f_lo > 0]))
    assert shift == pytest.approx(hi.f0_st - lo.f0_st, abs=1.0)


def test_decoder_training_resumes_to_the_same_weights(tmp_path):
    """12 steps at once, or 6 steps, an interruption (checkpoint at step 6) and a resume: the same
    weights; a checkpoint of another quantiser (fingerprint) is not resumed from."""
    from rrpo.codec.decoder import DecoderShape, TrainItem, train_decoder

    rng = np.random.default_rng(0)
    shape = DecoderShape(clusters=5, pitch_bins1=3, energy_bins=2, dims=6, channels=8, profile_dims=8)
    items = [
        TrainItem(
            s=rng.integers(0, 5, T),
            p=rng.integers(0, 3, T),
            e=rng.integers(0, 2, T),
            prof=rng.standard_normal(8).astype(np.float32),
            target=rng.random((4 * T, 10)).astype(np.float32),
        )
        for T in (9, 14, 20)
    ]
    kw = dict(steps=12, batch=3, crop=8, lr=1e-2, seed=1, fingerprint="abc")
    full, st_full = train_decoder(shape, items, **kw)
    ck = tmp_path / "dec.ckpt"
    _, st_a = train_decoder(shape, items, checkpoint=ck, stop_at=6, **kw)
    assert ck.exists() and st_a["decoder_steps"] == 6
    resumed, st_b = train_decoder(shape, items, checkpoint=ck, **kw)
    assert st_b["decoder_resumed_from"] == 6 and st_b["decoder_steps"] == 12
    for k in full:
        assert np.allclose(full[k], resumed[k], atol=1e-6), k
    other, st_c = train_decoder(shape, items, checkpoint=ck, **{**kw, "fingerprint": "xyz"})
    assert st_c["decoder_resumed_from"] == 0


# ----------------------------------------------------------------------------------- the CLI


def _one_error_line(capsys) -> str:
    """The one error line (progress bars of the training verbs share stderr), and no traceback."""
    err = capsys.readouterr().err
    lines = [ln[ln.index("rrpo: error: ") :] for ln in err.splitlines() if "rrpo: error: " in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_decode_verbs_with_speaker_profile_and_reference(codec_dir, tmp_path, capsys):  # noqa: F811
    wav = tmp_path / "a.wav"
    sf.write(wav, glide(1.0, 150, 200), SR)
    toks = tmp_path / "t.npy"
    assert main(["codec", "encode", f"codec={codec_dir}", f"audio={wav}", f"out={toks}", "speaker=lo"]) == 0
    assert (
        main(["codec", "decode", f"codec={codec_dir}", f"tokens={toks}", "speaker=hi", f"out={tmp_path / 'hi.wav'}"])
        == 0
    )
    reflist = "[" + ", ".join(str(tmp_path / f"r{i}.wav") for i in range(2)) + "]"
    refs = []
    for i in range(2):
        refs.append(tmp_path / f"r{i}.wav")
        sf.write(refs[-1], glide(1.1, 250 + 20 * i, 300, seed=i), SR)
    assert (
        main(
            [
                "codec",
                "profile",
                f"codec={codec_dir}",
                f"reference={reflist}",
                "speaker=new",
                f"out={tmp_path / 'new.json'}",
            ]
        )
        == 0
    )
    prof = json.loads((tmp_path / "new.json").read_text())
    assert prof["speaker"] == "new" and prof["recordings"] == 2 and 240 < prof["f0_hz"] < 320
    assert (
        main(
            [
                "codec",
                "decode",
                f"codec={codec_dir}",
                f"tokens={toks}",
                f"profile={tmp_path / 'new.json'}",
                f"out={tmp_path / 'new.wav'}",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "codec",
                "decode",
                f"codec={codec_dir}",
                f"tokens={toks}",
                f"reference={reflist}",
                f"out={tmp_path / 'ref.wav'}",
            ]
        )
        == 0
    )
    a, _ = sf.read(tmp_path / "new.wav")
    b, _ = sf.read(tmp_path / "ref.wav")
    # same profile, same audio: up to the rounding of the profile file's numbers, which moves a few
    # samples by a few 16-bit steps (3.05e-5 each; 5 steps seen)
    assert len(a) == len(b) == 25 * 640 and np.allclose(a, b, atol=5e-4)


def test_unknown_speaker_at_decode_is_one_line(codec_dir, tmp_path, capsys):  # noqa: F811
    (tmp_path / "t.txt").write_text("1 2 3\n")
    rc = main(
        [
            "codec",
            "decode",
            f"codec={codec_dir}",
            f"tokens={tmp_path / 't.txt'}",
            "speaker=nobody",
            f"out={tmp_path / 'y.wav'}",
        ]
    )
    assert rc == 2
    line = _one_error_line(capsys)
    assert "no profile of speaker 'nobody'" in line and "profiles.json" in line
    assert not (tmp_path / "y.wav").exists()


@pytest.mark.parametrize(
    "edit,msg",
    [
        (lambda d: d.update(version=7), "speaker profile version 7 cannot be read"),
        (lambda d: d.update(env_mel=d["env_mel"][:-1]), "has envelopes of shape"),
        (lambda d: d.update(format="x"), "not a speaker profile"),
    ],
)
def test_bad_profile_file_is_one_line(codec_dir, tmp_path, capsys, edit, msg):  # noqa: F811
    codec = load_codec(codec_dir)
    d = codec.speaker_profile("lo").to_dict()
    edit(d)
    (tmp_path / "p.json").write_text(json.dumps(d))
    (tmp_path / "t.txt").write_text("1 2 3\n")
    rc = main(
        [
            "codec",
            "decode",
            f"codec={codec_dir}",
            f"tokens={tmp_path / 't.txt'}",
            f"profile={tmp_path / 'p.json'}",
            f"out={tmp_path / 'y.wav'}",
        ]
    )
    assert rc == 2
    line = _one_error_line(capsys)
    assert msg in line and "p.json" in line
    assert not (tmp_path / "y.wav").exists()


def test_speaker_without_voiced_frames_is_one_line(tmp_path, capsys):
    """A manifest whose speaker 'hiss' speaks only white noise: codec train and tokenize name the speaker,
    and write no codec.json / no shard metadata."""
    rng = np.random.default_rng(0)
    recs = []
    for i in range(3):
        for spk in ("v", "hiss"):
            p = tmp_path / f"{spk}{i}.wav"
            x = (
                glide(1.0, 120 + 30 * i, 200, seed=i)
                if spk == "v"
                else 0.2 * rng.standard_normal(SR).astype(np.float32)
            )
            sf.write(p, x, SR)
            recs.append(
                Utterance(
                    id=f"{spk}{i}",
                    audio=p.name,
                    sampling_rate=SR,
                    duration=1.0,
                    text="",
                    speaker=spk,
                    language="en",
                    emotion="neutral",
                    split="train",
                )
            )
    man = write_manifest(tmp_path / "m.jsonl", recs)
    rc = main(
        [
            "codec",
            "train",
            f"manifests=[{man.path}]",
            f"out={tmp_path / 'c'}",
            "spectral_clusters=4",
            "pitch_bins=2",
            "energy_bins=2",
            "decoder=cluster",
            "min_speaker_recordings=3",
        ]
    )
    assert rc == 2
    line = _one_error_line(capsys)
    assert "speaker 'hiss' has" in line and "voiced frame(s)" in line
    assert not (tmp_path / "c" / "codec.json").exists()


def test_tokenize_speaker_without_voiced_frames_is_one_line(codec_dir, tmp_path, capsys):  # noqa: F811
    """4 recordings of noise (the codec's min_speaker_recordings is 3): no fallback, an error."""
    rng = np.random.default_rng(1)
    recs = []
    for i in range(4):
        p = tmp_path / f"n{i}.wav"
        sf.write(p, 0.2 * rng.standard_normal(SR // 2).astype(np.float32), SR)
        recs.append(
            Utterance(
                id=f"n{i}",
                audio=p.name,
                sampling_rate=SR,
                duration=0.5,
                text="",
                speaker="hiss",
                language="en",
                emotion="neutral",
                split="train",
            )
        )
    man = write_manifest(tmp_path / "m.jsonl", recs)
    rc = main(["tokenize", f"codec={codec_dir}", f"manifest={man.path}", f"out={tmp_path / 's'}"])
    assert rc == 2
    line = _one_error_line(capsys)
    assert "speaker 'hiss' has" in line and "voiced frame(s)" in line and "m.jsonl" in line
    assert not (tmp_path / "s" / "meta.json").exists()


def test_pooled_profile_by_default_and_foreign_profile_refused(codec_dir):  # noqa: F811
    codec = load_codec(codec_dir)
    tok = codec.encode(glide(1.0, 150, 200), SR)
    assert np.array_equal(tok, codec.encode(glide(1.0, 150, 200), SR, profile=codec.pooled))
    bad = dataclasses.replace(codec.pooled, env_log=np.zeros(3))
    with pytest.raises(RrpoError, match="has envelopes of shape"):
        codec.decode(tok, profile=bad)
    with pytest.raises(RrpoError, match="not a speaker profile of the built-in codec"):
        codec.decode(tok, profile="lo")
