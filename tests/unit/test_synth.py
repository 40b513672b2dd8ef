"""The built-in synthetic corpus: the espeak-ng binding, the measurements, and the corpus itself.

The corpus tests synthesise a small config once (2 languages x 2 voices x 5 emotions x 3
sentences = 60 files, a few seconds) and MEASURE its audio: per language, each emotion must differ
from neutral renditions of the same sentence by the same voice in the direction its rule in
``rrpo.data.synth.RULES`` says, in mean F0, F0 range, speaking rate and loudness.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import threading

import numpy as np
import pytest
import soundfile as sf

from rrpo.config import load_config, to_dict
from rrpo.data import espeak
from rrpo.data.manifest import read_manifest
from rrpo.data.prosody import emotion_profile, measure
from rrpo.data.synth import RULES, SynthConfig, assign_splits, synthesize
from rrpo.errors import ConfigError, RrpoError

ZH = "我们星期六坐火车去海边。"  # 12 syllables
EN = "The weather is nice today."  # 7 syllables

SMALL = dict(sentences_per_language=3, voices_per_language=2)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root) -> dict[str, str]:
    return {str(p.relative_to(root)): _digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    cfg = SynthConfig(**SMALL)
    out = tmp_path_factory.mktemp("synth") / "corpus"
    man = synthesize(cfg, out)
    return cfg, out, man


@pytest.fixture(scope="module")
def profile(corpus):
    return emotion_profile(corpus[2])


# --------------------------------------------------------------------------- espeak-ng binding


def test_espeak_speaks_mandarin_and_english():
    """Both languages give non-silent speech of a plausible length (0.1-0.5 s per syllable), and
    Mandarin is really read as Mandarin: its phonemes carry tone numbers (e.g. ``55``, ``214``)."""
    for text, voice, syllables in ((ZH, "cmn", 12), (EN, "en-us", 7)):
        pcm, rate = espeak.synthesize(text, voice)
        assert rate == espeak.sample_rate() == 22050
        assert pcm.dtype == np.int16
        seconds = len(pcm) / rate
        assert 0.1 * syllables < seconds < 0.5 * syllables, (voice, seconds)
        rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) / 32768
        assert rms > 0.01, (voice, rms)  # about -40 dBFS: clearly not silence
    ph = espeak.phonemes(ZH, "cmn")
    assert len(re.findall(r"\d{2,3}", ph)) >= 10, ph  # one tone contour per syllable
    assert "letter" not in ph.lower()
    assert re.search(r"[a-zA-Z]", espeak.phonemes(EN, "en-us"))
    assert re.fullmatch(r"\d+\.\d+.*", espeak.version())


def test_espeak_same_arguments_same_samples_whatever_came_before():
    a1, _ = espeak.synthesize(EN, "en-us+f2", espeak.Prosody(rate=150, pitch=60, range=70), seed=3)
    espeak.synthesize(ZH, "cmn+m3", espeak.Prosody(rate=300, pitch=20, range=10), seed=9)
    a2, _ = espeak.synthesize(EN, "en-us+f2", espeak.Prosody(rate=150, pitch=60, range=70), seed=3)
    assert np.array_equal(a1, a2)


def test_espeak_is_thread_safe():
    """Concurrent calls give exactly what sequential calls give (the lock serialises them)."""
    jobs = [(ZH, "cmn+f2"), (EN, "en-us+m3"), (EN, "en-us+f4")]
    ref = [espeak.synthesize(t, v)[0] for t, v in jobs]
    got: dict[int, list] = {i: [] for i in range(len(jobs))}

    def work(i):
        for _ in range(3):
            got[i].append(espeak.synthesize(*jobs[i])[0])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, outs in got.items():
        assert len(outs) == 3 and all(np.array_equal(o, ref[i]) for o in outs)


def test_espeak_pitch_setting_scales_f0_as_documented():
    """pitch_value(1.3) asks for 1.3 x the voice's F0; with range 0 (a monotone, so F0 is the
    base) the median F0 rises by that factor within 5 %, in both languages."""
    import numpy as np

    from rrpo.data.audio import resample
    from rrpo.data.prosody import f0_track

    for text, voice in ((EN, "en-us+m3"), (ZH, "cmn+f2")):
        med = []
        for p in (50, espeak.pitch_value(1.3)):
            pcm, rate = espeak.synthesize(text, voice, espeak.Prosody(pitch=p, range=0))
            f0 = f0_track(resample(pcm / 32768.0, rate, 16000), 16000)
            med.append(float(np.median(f0[f0 > 0])))
        assert med[1] / med[0] == pytest.approx(1.3, rel=0.05), (voice, med)


def test_espeak_setting_maps_worked_by_hand():
    """pitch_value interpolates log F0 ratio over the measured table: 1.117 is setting 60, 1.254 is
    70, the log-midpoint of 1.0 and 1.117 (1.0569) is 55; 0.88 lies between 0.808 (30) and 0.894
    (40) at (ln .88 - ln .808) / (ln .894 - ln .808) = 0.844, i.e. 38.4 -> 38; out of range clamps
    to 20 / 100. range_value(f) = 50 f, clamped to [0, 100]."""
    assert espeak.pitch_value(1.0) == 50
    assert espeak.pitch_value(1.117) == 60 and espeak.pitch_value(1.254) == 70
    assert espeak.pitch_value(1.0569) == 55
    assert espeak.pitch_value(0.88) == 38
    assert espeak.pitch_value(0.5) == 20 and espeak.pitch_value(3.0) == 100
    assert espeak.range_value(1.7) == 85 and espeak.range_value(2.5) == 100 and espeak.range_value(0.45) == 22
    with pytest.raises(ValueError, match="pitch"):
        espeak.Prosody(pitch=101)
    with pytest.raises(RrpoError, match="no voice"):
        espeak.synthesize(EN, "xx-nolanguage")


# --------------------------------------------------------------------------- measurements


def test_measure_worked_by_hand():
    """A 200 Hz sine of amplitude 0.1, 1 s, between 0.3 s silences: F0 200 Hz, range ~0 st,
    speech 1.0 s, level 20 log10(0.1 / sqrt 2) = -23.01 dBFS.
    An exponential glide 100 -> 200 Hz over 1 s: mean F0 = integral of 100 * 2**t dt = 100 / ln 2
    = 144.3 Hz; 5th/95th percentiles 100 * 2**0.05 and 100 * 2**0.95, i.e. 0.9 octave = 10.8 st."""
    sr = 16000
    t = np.arange(sr) / sr
    pad = np.zeros(int(0.3 * sr))
    p = measure(np.concatenate([pad, 0.1 * np.sin(2 * np.pi * 200 * t), pad]), sr)
    assert p.f0_mean_hz == pytest.approx(200, rel=0.02)
    assert p.f0_range_st < 0.3
    assert p.speech_s == pytest.approx(1.0, abs=0.02)
    assert p.level_db == pytest.approx(-23.01, abs=0.2)
    phase = 2 * np.pi * 100 * (2**t - 1) / np.log(2)  # d(phase)/dt = 2 pi 100 2**t
    g = measure(np.concatenate([pad, 0.1 * np.sin(phase), pad]), sr)
    assert g.f0_mean_hz == pytest.approx(144.3, rel=0.03)
    assert g.f0_range_st == pytest.approx(10.8, abs=1.0)


# --------------------------------------------------------------------------- the corpus


def _sign(x: float, tol: float) -> int:
    return 0 if abs(x) <= tol else (1 if x > 0 else -1)


@pytest.mark.parametrize("language", ["zh", "en"])
def test_emotions_differ_from_neutral_as_the_rules_say(profile, language):
    """Measured on the generated audio, paired with the neutral rendition of the same sentence by
    the same voice: the sign of each difference is the sign the rule prescribes, by a margin."""
    table = profile[language]
    for emo, rule in RULES.items():
        if emo == "neutral":
            continue
        d = table[emo]["vs_neutral"]
        # mean F0 (semitones): rule.f0 > 1 raises it
        assert _sign(d["f0_st"], 1.0) == _sign(rule.f0 - 1, 0.05), (language, emo, d)
        # F0 range in Hz follows espeak's range setting; in semitones it follows range / f0
        assert _sign(d["f0_range_ratio"] - 1, 0.15) == _sign(rule.f0_range - 1, 0.05), (language, emo, d)
        assert _sign(d["f0_range_st"], 0.2) == _sign(rule.f0_range / rule.f0 - 1, 0.05), (language, emo, d)
        # speaking rate: a faster rule makes the same sentence shorter
        assert _sign(d["duration_ratio"] - 1, 0.04) == -_sign(rule.rate - 1, 0.03), (language, emo, d)
        # loudness (RMS dB over the spoken span)
        assert _sign(d["level_db"], 1.0) == _sign(rule.loudness_db, 0.5), (language, emo, d)
    # and the named directions, for the reader: angry loudest, sad lowest, slowest and quietest
    levels = {e: table[e]["level_db"] for e in RULES}
    assert max(levels, key=levels.get) == "angry" and min(levels, key=levels.get) == "sad"
    f0 = {e: table[e]["f0_hz"] for e in RULES}
    assert min(f0, key=f0.get) == "sad"
    rate = {e: table[e]["syllables_per_s"] for e in RULES}
    assert min(rate, key=rate.get) == "sad"


def test_manifest_content(corpus):
    cfg, out, man = corpus
    again = read_manifest(out / "manifest.jsonl")
    assert [u.to_json() for u in again] == [u.to_json() for u in man]
    assert len(man) == 2 * 2 * 5 * 3
    assert {u.language for u in man} == {"zh", "en"}
    assert {u.emotion for u in man} == set(RULES)
    for lang in ("zh", "en"):
        assert len({u.speaker for u in man if u.language == lang}) == 2
    by_sentence: dict = {}
    for u in man:
        path = man.audio_path(u)
        assert not u.audio.startswith("/") and path.is_file()
        assert u.audio == f"audio/{u.language}/{u.speaker}/{u.emotion}/{u.id}.wav"
        info = sf.info(str(path))
        assert info.samplerate == u.sampling_rate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert u.duration == pytest.approx(info.frames / info.samplerate, abs=1e-5)
        assert u.extra["synthetic"] is True and u.extra["engine"] == "espeak-ng"
        assert u.extra["voice"].split("+")[0] == {"zh": "cmn", "en": "en-us"}[u.language]
        assert set(u.extra["prosody"]) >= {"f0", "f0_range", "rate", "level_db", "espeak", "gain_db"}
        by_sentence.setdefault((u.language, u.extra["sentence"]), set()).add((u.text, u.split))
    # parallel: one text and one split per sentence, over every voice and emotion
    assert all(len(v) == 1 for v in by_sentence.values())
    assert all(len([u for u in man if (u.language, u.extra["sentence"]) == k]) == 10 for k in by_sentence)
    for lang in ("zh", "en"):
        split_of = {s: next(iter(v))[1] for (lg, s), v in by_sentence.items() if lg == lang}
        assert sorted(split_of.values()) == ["evaluation", "test", "train"]  # 3 sentences, one per split
        train_texts = {u.text for u in man if u.language == lang and u.split == "train"}
        assert not train_texts & {u.text for u in man if u.language == lang and u.split == "test"}


def test_meta_says_synthetic(corpus):
    cfg, out, _ = corpus
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["synthetic"] is True
    assert meta["engine"] == "espeak-ng" and meta["engine_version"] == espeak.version()
    # keys added later are recorded only away from their defaults (older folders stay recognised)
    assert meta["config"] == {
        k: v for k, v in to_dict(cfg).items() if k not in ("sentences", "renditions", "pitch_bases")
    }
    assert set(meta["rules"]) == set(RULES) and all(r["source"] for r in meta["rules"].values())


def test_same_config_same_bytes_and_rerun_is_idempotent(corpus, tmp_path):
    cfg, out, _ = corpus
    fresh = tmp_path / "fresh"
    synthesize(cfg, fresh)
    assert _tree(fresh) == _tree(out)
    # a re-run writes no audio and gives the same manifest
    mtimes = {p: p.stat().st_mtime_ns for p in fresh.rglob("*.wav")}
    synthesize(cfg, fresh)
    assert {p: p.stat().st_mtime_ns for p in fresh.rglob("*.wav")} == mtimes
    assert _tree(fresh) == _tree(out)
    # an interrupted run (files missing, manifest gone) is completed to the same bytes
    for p in list((fresh / "audio" / "en").rglob("*.wav"))[:7]:
        p.unlink()
    (fresh / "manifest.jsonl").unlink()
    synthesize(cfg, fresh)
    assert _tree(fresh) == _tree(out)


def test_seed_changes_the_corpus(tmp_path):
    small = dict(languages=["en"], sentences_per_language=2, voices_per_language=1, emotions=["neutral", "sad"])
    a = synthesize(SynthConfig(**small, seed=0), tmp_path / "a")
    b = synthesize(SynthConfig(**small, seed=1), tmp_path / "b")
    assert [u.id for u in a] == [u.id for u in b]
    assert any(_digest(a.audio_path(u)) != _digest(b.audio_path(v)) for u, v in zip(a, b))
    assert [u.extra["prosody"] for u in a] != [u.extra["prosody"] for u in b]
    # without jitter and at intensity 0 every emotion is neutral speech: the same samples
    flat = synthesize(SynthConfig(**small, jitter=0.0, intensity=0.0, seed=5), tmp_path / "flat")
    neu = [u for u in flat if u.emotion == "neutral"]
    sad = [u for u in flat if u.emotion == "sad"]
    for n, s in zip(neu, sad):
        assert sf.read(str(flat.audio_path(n)))[0].tolist() == sf.read(str(flat.audio_path(s)))[0].tolist()


def test_other_config_in_an_existing_folder_is_refused(tmp_path):
    small = dict(languages=["en"], sentences_per_language=1, voices_per_language=1, emotions=["neutral"])
    out = tmp_path / "c"
    synthesize(SynthConfig(**small), out)
    before = _tree(out)
    with pytest.raises(RrpoError, match=r"different settings \(config\.seed\)") as e:
        synthesize(SynthConfig(**small, seed=7), out)
    assert e.value.path == str(out / "meta.json")
    assert _tree(out) == before
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(RrpoError, match="not a folder"):
        synthesize(SynthConfig(**small), tmp_path / "file")
    assert (tmp_path / "file").read_text() == "not a folder"


def test_assign_splits_worked_by_hand():
    """12 sentences at 0.7/0.15/0.15: round(8.4)=8, round(1.8)=2, 2. 3 sentences: 2, 0, 0 raised to
    at least 1 each = 4, and train gives back the extra one: 1/1/1. 2 sentences cannot fill three
    splits, so no split is forced: 1 (round 1.4), 0, 0 and train takes the rest: 2/0/0."""
    fr = {"train": 0.7, "evaluation": 0.15, "test": 0.15}

    def counts(n):
        s = assign_splits(n, fr, 0, "en")
        return [s.count(k) for k in fr]

    assert counts(12) == [8, 2, 2]
    assert counts(3) == [1, 1, 1]
    assert counts(2) == [2, 0, 0]
    assert assign_splits(12, fr, 0, "en") == assign_splits(12, fr, 0, "en")
    assert assign_splits(12, fr, 0, "en") != assign_splits(12, fr, 1, "en")


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="sentences_per_language"):
        load_config(SynthConfig, None, ["sentences_per_language=99"])
    with pytest.raises(ConfigError, match="emotions"):
        load_config(SynthConfig, None, ["emotions=[neutral, fear]"])
    with pytest.raises(ConfigError, match="splits"):
        load_config(SynthConfig, None, ["splits={train: 0.5, test: 0.2}"])
    with pytest.raises(ConfigError, match="voices"):
        load_config(SynthConfig, None, ["voices_per_language=7"])
    with pytest.raises(ConfigError, match="unknown config key 'speakers'"):
        load_config(SynthConfig, None, ["speakers=3"])
    assert math.isclose(sum(SynthConfig().splits.values()), 1.0)


def test_cli_synth(tmp_path, capsys):
    from rrpo.cli import main

    out = tmp_path / "cli"
    rc = main(
        [
            "synth",
            f"out={out}",
            "languages=[zh]",
            "sentences_per_language=1",
            "voices_per_language=1",
            "emotions=[neutral, angry]",
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["utterances"] == 2 and printed["languages"] == {"zh": 2}
    assert len(read_manifest(out / "manifest.jsonl")) == 2
    before = _tree(out)
    assert (
        main(
            [
                "synth",
                f"out={out}",
                "languages=[zh]",
                "sentences_per_language=1",
                "voices_per_language=1",
                "emotions=[neutral, angry]",
                "seed=3",
            ]
        )
        == 2
    )
    assert "meta.json" in capsys.readouterr().err
    assert _tree(out) == before
    assert main(["synth", f"out={tmp_path / 'x'}", "nosuchkey=1"]) == 2
    assert "nosuchkey" in capsys.readouterr().err
    shutil.rmtree(out)
