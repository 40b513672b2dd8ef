"""rrpo.phones: the edit distance behind PER, espeak-ng's phoneme strings, and the phone judge's
scores and pooled summary, against values worked by hand (the judge's recogniser is scripted)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import rrpo.phones.inventory as inventory
from rrpo.errors import RrpoError
from rrpo.phones.inventory import edit_ops, error_rate, parse_phonemes
from rrpo.phones.judge import PhoneJudge, per_ratio


# ------------------------------------------------------------------------------------ edit distance
@pytest.mark.parametrize(
    "ref, hyp, ops",
    [
        ("", "", (0, 0, 0)),
        ("abc", "", (0, 3, 0)),  # every reference phoneme deleted
        ("", "xy", (0, 0, 2)),  # every heard phoneme inserted
        ("abc", "abc", (0, 0, 0)),
        ("abc", "xabc", (0, 0, 1)),
        ("abcd", "bcde", (0, 1, 1)),  # delete a, insert e (cost 2) beats four substitutions (cost 4)
        # ties: "ab" -> "ba" costs 2 as two substitutions or as a deletion and an insertion (b kept);
        # the alignment with most substitutions is taken
        ("ab", "ba", (2, 0, 0)),
        ("ab", "c", (1, 1, 0)),  # sub + del (cost 2), whichever of a, b is substituted
        ("abc", "axc", (1, 0, 0)),  # one substitution (cost 1), not a deletion and an insertion (cost 2)
    ],
)
def test_edit_ops_worked_by_hand(ref, hyp, ops):
    assert edit_ops(ref, hyp) == ops


def test_edit_ops_compare_whole_phoneme_names():
    """Lists of names: 'i' and 'i:' differ. tS i n -> tS i: n n: one substitution (i -> i:) and one
    insertion (a 4-symbol hypothesis of a 3-symbol reference needs at least one), cost 2."""
    assert edit_ops(["tS", "i", "n"], ["tS", "i:", "n", "n"]) == (1, 0, 1)
    assert error_rate(["tS", "i", "n"], ["tS", "i:", "n", "n"]) == pytest.approx(2 / 3)
    assert math.isnan(error_rate([], ["a"]))


# ---------------------------------------------------------------------------- espeak's phoneme strings
@pytest.mark.parametrize(
    "espeak_output, phonemes",
    [
        # English (en-us) "hello world": primary stress removed, the length mark of 3: kept
        ("h|@|l|'oU w|'3:|l|d", ["h", "@", "l", "oU", "w", "3:", "l", "d"]),
        # "explain, then stop.": the variant digit of t2 goes as a tone digit would, but 0 (the vowel
        # of "stop") is a phoneme of digits only and stays
        ("E|k|s|p|l|'eI|n D|'E|n s|t2|'0|p", ["E", "k", "s", "p", "l", "eI", "n", "D", "E", "n", "s", "t", "0", "p"]),
        # "hot butter": 0 and the r-coloured schwa 3 stay, t# (a variant) and @2 -> @
        ("h|'0|t b|'V|t#|3 D|@2", ["h", "0", "t", "b", "V", "t#", "3", "D", "@"]),
        # secondary stress
        (",Ek|s|p|l|'eI|n", ["Ek", "s", "p", "l", "eI", "n"]),
        # Mandarin (cmn) "你好，世界": tones 214 and 51 removed, pauses _ dropped, variant dots kept
        ("n|i214|X|'Au214|_| s.|'i.51|_| tS;|'iE51|_|", ["n", "i", "X", "Au", "s.", "i.", "tS;", "iE"]),
        # a language switch inside Mandarin ("iPhone 很"): the (en) / (cmn) tags are no phonemes
        ("(en)|'aI|_| f|'oU|n|(cmn)|_| X|@214|n|", ["aI", "f", "oU", "n", "X", "@", "n"]),
        # a lone ':' or '::' is a short pause; '_:' too once its '_' is stripped; 'a:' is a long a
        ("a|:|b ::|c _:|a:", ["a", "b", "c", "a:"]),
        ("", []),
    ],
)
def test_parse_phonemes_on_literal_espeak_strings(espeak_output, phonemes):
    assert parse_phonemes(espeak_output) == phonemes


def test_phonemise_reads_a_text_with_espeak():
    """The same parse on espeak-ng's own output (the binding is tested in test_synth.py)."""
    assert inventory.phonemise("Hello world", "en") == ("h", "@", "l", "oU", "w", "3:", "l", "d")
    with pytest.raises(RrpoError, match="no espeak-ng voice"):
        inventory.phonemise("x", "xx")


# --------------------------------------------------------------------------------------- the judge
class ScriptedModel:
    """Stands in for a PhoneModel: ``recognise`` returns the scripted phonemes in turn."""

    path = None
    meta: dict = {}

    def __init__(self, *heard):
        self.heard = [list(h) for h in heard]
        self.calls = []

    def recognise(self, audio, sr):
        self.calls.append((len(audio), sr))
        return self.heard.pop(0)


REFS = {"ten": tuple("abcdefghij"), "five": tuple("klmno"), "none": ()}


@pytest.fixture
def scripted_phonemes(monkeypatch):
    """The texts' phonemes without espeak: 'ten' reads a..j, 'five' k..o, 'none' nothing."""
    monkeypatch.setattr(inventory, "phonemise", lambda text, language: REFS[text])


def test_score_worked_by_hand(scripted_phonemes):
    """Reference a..j (10 phonemes), heard a b X d e f g h i: c -> X substituted, j deleted: 2 edits,
    PER 2/10 = 0.2."""
    model = ScriptedModel("abXdefghi")
    row = PhoneJudge(model).score(np.zeros(1600, np.float32), 16000, "ten", "en", id="u0")
    assert row == {
        "id": "u0",
        "phones": 10,
        "phone_edits": 2,
        "sub": 1,
        "del": 1,
        "ins": 0,
        "per": pytest.approx(0.2),
        "heard": "a b X d e f g h i",
    }
    assert model.calls == [(1600, 16000)]
    with pytest.raises(RrpoError, match="no phoneme"):
        PhoneJudge(ScriptedModel("a")).score(np.zeros(160), 16000, "none", "en")


def test_summarise_pools_edits_over_phonemes(scripted_phonemes):
    """Two utterances: 2 edits of 10 (one substitution, one deletion) and 1 of 5 (k l m n o p: one
    insertion): pooled (2 + 1) / (10 + 5) = 0.2 (the mean of the two rates would be too), each share 1/15.
    Both resamples' rates are 0.2, so the interval is [0.2, 0.2]."""
    j = PhoneJudge(ScriptedModel("abXdefghi", "klmnop"))
    rows = [j.score(np.zeros(160), 16000, t, "en") for t in ("ten", "five")]
    s = j.summarise(rows)
    assert s["n"] == 2 and s["per"]["stat"] == pytest.approx(3 / 15)
    assert (s["per"]["lo"], s["per"]["hi"]) == pytest.approx((0.2, 0.2))
    assert (s["sub"], s["del"], s["ins"]) == pytest.approx((1 / 15, 1 / 15, 1 / 15))
    assert j.summarise([]) == {"n": 0, "per": None}


def test_summarise_pools_not_averages_and_its_interval_is_exact_for_two():
    """2 edits of 10 (0.2) and 3 of 5 (0.6): pooled 5/15 = 1/3, not the mean 0.4. The 4 equally likely
    resamples give 0.2 (u1 u1), 1/3 (u1 u2, u2 u1) and 0.6 (u2 u2): the 95 % interval is [0.2, 0.6]."""
    rows = [
        {"phones": 10, "phone_edits": 2, "sub": 2, "del": 0, "ins": 0},
        {"phones": 5, "phone_edits": 3, "sub": 0, "del": 1, "ins": 2},
    ]
    s = PhoneJudge.summarise(rows)
    assert s["per"]["stat"] == pytest.approx(1 / 3)
    assert (s["per"]["lo"], s["per"]["hi"]) == pytest.approx((0.2, 0.6))
    assert (s["sub"], s["del"], s["ins"]) == pytest.approx((2 / 15, 1 / 15, 2 / 15))
    assert per_ratio(s, {"per": {"stat": 1 / 6}}) == pytest.approx(2.0)
    assert math.isnan(per_ratio(s, {"n": 0, "per": None}))


def test_identity_names_the_folder_and_its_files(tmp_path):
    """A saved model's identity: its resolved folder and hashes of phones.json and the weights; other
    weights in the same folder change the weights' hash (the cache keys that carry it change)."""
    import torch

    from rrpo.phones.model import NetShape, PhoneModel, PhoneNet

    symbols = ["a", "b", "c"]
    shape = NetShape(channels=16, blocks=1, n_phones=len(symbols) + 1)
    torch.manual_seed(0)
    PhoneModel(shape, symbols, PhoneNet(shape).state_dict()).save(tmp_path / "pm")
    a = PhoneJudge.load(tmp_path / "pm").identity()
    assert a["path"] == str((tmp_path / "pm").resolve()) and len(a["phones_json"]) == 64
    torch.manual_seed(1)
    PhoneModel(shape, symbols, PhoneNet(shape).state_dict()).save(tmp_path / "pm")
    b = PhoneJudge.load(tmp_path / "pm").identity()
    assert b["path"] == a["path"] and b["phones_json"] == a["phones_json"] and b["weights"] != a["weights"]
    assert PhoneJudge(ScriptedModel()).identity()["path"] is None
