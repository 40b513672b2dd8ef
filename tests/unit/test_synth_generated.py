"""Generated sentences and the large synthetic corpus: many distinct sentences, renditions instead of
a fully parallel corpus, and speakers at several pitch bases."""

from __future__ import annotations

import pytest
import soundfile as sf

from rrpo.config import load_config
from rrpo.data.prosody import measure
from rrpo.data.sentences import GRAMMAR, SENTENCES, generate_sentences, grammar_size
from rrpo.data.synth import SynthConfig, plan, synthesize
from rrpo.errors import ConfigError, RrpoError


def test_grammar_size_worked_by_hand():
    """20 subjects x (15 times + none) x (15 places + none) x 12 verbs x 25 objects = 1,536,000 in both."""
    for lang in ("zh", "en"):
        g = GRAMMAR[lang]
        assert [len(g[k]) for k in ("subject", "when", "place", "verb", "object")] == [20, 15, 15, 12, 25]
        assert grammar_size(lang) == 20 * 16 * 16 * 12 * 25 == 1_536_000


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_generated_sentences_are_distinct_reproducible_and_extend(lang):
    a = generate_sentences(lang, 3000, seed=0)
    assert len(a) == len(set(a)) == 3000
    assert a == generate_sentences(lang, 3000, seed=0)
    assert generate_sentences(lang, 100, seed=0) == a[:100]  # a bigger corpus extends a smaller one
    assert generate_sentences(lang, 100, seed=1) != a[:100]
    assert not set(a) & set(SENTENCES[lang])  # never a built-in sentence
    end = "。" if lang == "zh" else "."
    assert all(s.endswith(end) and s.count(end) == 1 for s in a)
    if lang == "en":
        assert all(s[0].isupper() and "  " not in s for s in a)
    # every slot value is used somewhere in 3000 sentences (no dead vocabulary)
    for k in ("subject", "verb", "object"):
        assert all(any(w in s for s in a) for w in GRAMMAR[lang][k])


def test_generated_sentence_errors():
    with pytest.raises(RrpoError, match="no sentence grammar for language 'pl'"):
        generate_sentences("pl", 3)
    with pytest.raises(RrpoError, match="at most 768000"):
        generate_sentences("en", 800_000)


def test_plan_with_renditions_and_pitch_bases_worked_by_hand():
    """10 sentences x 2 renditions = 20 utterances; sentence s is spoken in emotions s%5 and (s+1)%5,
    so each of the 5 emotions gets 4; speakers are 2 voices x 2 pitch bases = 4 names."""
    cfg = SynthConfig(
        languages=["en"],
        sentences="generated",
        sentences_per_language=10,
        renditions=2,
        voices_per_language=2,
        pitch_bases=[1.0, 1.2],
    )
    jobs = plan(cfg)
    assert len(jobs) == 20 and len({j.id for j in jobs}) == 20
    emos = cfg.emotions
    for s in range(10):
        assert sorted(j.emotion for j in jobs if j.sentence == s) == sorted([emos[s % 5], emos[(s + 1) % 5]])
    assert all(sum(j.emotion == e for j in jobs) == 4 for e in emos)
    assert {j.speaker for j in jobs} <= {"en-m3", "en-m3-p120", "en-f1", "en-f1-p120"}
    assert all(j.pitch_base == (1.2 if j.speaker.endswith("p120") else 1.0) for j in jobs)
    texts = generate_sentences("en", 10, 0)
    assert all(j.text == texts[j.sentence] for j in jobs)
    assert plan(cfg) == jobs  # reproducible
    # parallel (renditions 0): every speaker x emotion x sentence
    assert (
        len(
            plan(
                SynthConfig(
                    languages=["en"],
                    sentences="generated",
                    sentences_per_language=10,
                    voices_per_language=2,
                    pitch_bases=[1.0, 1.2],
                )
            )
        )
        == 4 * 5 * 10
    )
    # ids keep their width: 1000 sentences -> s000..s999, 1001 -> s0000..s1000
    big = plan(
        SynthConfig(
            languages=["zh"], sentences="generated", sentences_per_language=1001, renditions=1, voices_per_language=1
        )
    )
    assert big[0].id.endswith("_s0000") and len(big) == 1001


def test_config_limits_name_the_key():
    assert SynthConfig(sentences="generated", sentences_per_language=5000).sentences_per_language == 5000
    with pytest.raises(ConfigError, match="sentences_per_language.*built-in"):
        load_config(SynthConfig, None, ["sentences_per_language=33"])
    with pytest.raises(ConfigError, match="renditions"):
        load_config(SynthConfig, None, ["renditions=6"])
    with pytest.raises(ConfigError, match="pitch_bases"):
        load_config(SynthConfig, None, ["pitch_bases=[2.0]"])
    with pytest.raises(ConfigError, match="sentences"):
        load_config(SynthConfig, None, ["sentences=written"])


def test_a_pitch_base_raises_the_measured_f0(tmp_path):
    """The same sentences by one voice at pitch base 1.0 and 1.25: the 1.25 speaker's mean F0 is higher
    (espeak's pitch setting follows the factor within its measured mapping; at least x1.1 here)."""
    cfg = SynthConfig(
        languages=["en"],
        sentences="generated",
        sentences_per_language=2,
        voices_per_language=1,
        emotions=["neutral"],
        pitch_bases=[1.0, 1.25],
        jitter=0.0,
    )
    man = synthesize(cfg, tmp_path / "c")
    assert len(man) == 4
    f0 = {}
    for u in man:
        audio, sr = sf.read(str(man.audio_path(u)))
        f0.setdefault(u.speaker, []).append(measure(audio, sr).f0_mean_hz)
        assert u.text in generate_sentences("en", 2, 0)
        assert (u.extra.get("pitch_base") == 1.25) == u.speaker.endswith("-p125")
    for a, b in zip(f0["en-m3"], f0["en-m3-p125"]):
        assert b > 1.1 * a
