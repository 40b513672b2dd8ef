"""audit_audio on tiny inputs: every section present, figures worked by hand where possible."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rrpo.audit.summary import PER_ABSENT, audit_audio

from tests.unit.audit_signals import SR, speech_like


class FixedJudge:
    """Probabilities fixed per call position: (0.7, 0.2, 0.1), (0.1, 0.3, 0.6), (0.5, 0.4, 0.1)."""

    classes = ("neutral", "happy", "sad")
    P = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])

    def predict_proba(self, items, groups=None):
        self.groups = groups
        return self.P[: len(items)]


class EchoRecognizer:
    def __init__(self, hyps):
        self.hyps = list(hyps)

    def transcribe(self, audio, sr):
        return self.hyps.pop(0)


def test_audit_audio_summary():
    """Targets neutral, happy, sad (and one 'angry' the judge cannot score):
    p(target) = 0.7, 0.3, 0.1 -> mean 0.3667; argmax = neutral, sad, neutral -> accuracy 1/3.
    The first utterance is its own parallel reference -> MCD 0, F0 RMSE 0.
    WER: 'hello world' vs 'hello word' (1 sub / 2) and 'good day' vs 'good day' -> 1/4 pooled."""
    a, b, c, d = (speech_like(1.0, seed=s) for s in range(4))
    clipped = np.clip(d * 6, -1, 1)
    gen = [
        (
            a,
            SR,
            {
                "id": "u0",
                "emotion": "neutral",
                "speaker": "x",
                "ref_id": "r0",
                "language": "en",
                "text": "Hello, world",
            },
        ),
        (b, SR, {"id": "u1", "emotion": "happy", "speaker": "x", "language": "en", "text": "good day"}),
        (c, SR, {"id": "u2", "emotion": "sad", "speaker": "x", "tokens": [1, 2, 3, 4, 1, 2, 3, 4]}),
        (clipped, SR, {"id": "u3", "emotion": "angry"}),
    ]
    refs = {"r0": (a, SR), "r1": (speech_like(1.0, seed=9), SR), "r2": (speech_like(1.0, seed=10), SR)}
    judge = FixedJudge()
    out = audit_audio(gen, refs, judge, recognizer=EchoRecognizer(["hello word", "good day"]), per_utterance=True)
    assert out["n"] == 4 and out["duration_s"] == pytest.approx(4.0)
    j = out["judge"]
    assert j["n"] == 3 and j["target_prob"] == pytest.approx((0.7 + 0.3 + 0.1) / 3)
    assert j["accuracy"] == pytest.approx(1 / 3)
    assert j["per_emotion"]["happy"] == {"n": 1, "target_prob": pytest.approx(0.3), "accuracy": 0.0}
    assert judge.groups == ["x", "x", "x"]
    assert set(out["artifacts"]) == {"clicks", "bursts", "clipping", "silence", "repetition"}
    assert out["artifacts"]["clipping"]["utterances_with"] == 1 and out["artifacts"]["clipping"]["events_per_s"] > 0
    assert out["artifacts"]["clicks"]["utterances_with"] == 0
    dist = out["distances"]
    assert dist["n_parallel"] == 1 and dist["mcd_db"] == 0.0 and dist["f0_rmse_cents"] == 0.0
    assert dist["frechet_egemaps"] > 0 and math.isfinite(dist["frechet_egemaps"])
    assert out["wer"]["wer"] == pytest.approx(0.25) and out["wer"]["n_utts"] == 2
    assert out["token_repetition"] == pytest.approx(1 / 5)  # 4-grams: (1,2,3,4) repeats once among five
    rows = out["utterances"]
    assert rows[0]["judge_pred"] == "neutral" and "judge_target_prob" not in rows[3]
    assert rows[0]["asr"] == "hello word" and rows[2].get("wer") is None


def test_audit_audio_without_judge_or_references():
    x = speech_like(0.5, seed=1)
    out = audit_audio([(np.stack([x, x]), SR, {"emotion": "sad"})], judge=None, recognizer=False)  # (C, T)
    assert out["duration_s"] == pytest.approx(0.5)
    assert out["judge"]["n"] == 0 and math.isnan(out["judge"]["target_prob"])
    assert out["distances"]["n_parallel"] == 0 and math.isnan(out["distances"]["frechet_egemaps"])
    assert out["wer"]["n_utts"] == 0
    assert out["per"] == {"n": 0, "per": None, "absent": PER_ABSENT}  # no phone judge: PER is absent


def test_audit_audio_phone_error_rates_per_utterance_and_language(monkeypatch):
    """A phone judge with a scripted recogniser and scripted reference phonemes ('ten': a..j, 'five':
    k..o, 'none': nothing). u0 (en) heard a b X d e f g h i: 1 substitution + 1 deletion of 10 = 0.2;
    u1 (zh) heard k l m: 2 deletions of 5 = 0.4; u2's text has no phoneme: left out and counted as
    skipped; u3 has no text: not scored. Pooled (2 + 2) / (10 + 5) = 4/15; per language en 0.2, zh 0.4."""
    import rrpo.phones.inventory as inventory
    from rrpo.phones.judge import PhoneJudge

    from tests.unit.test_phones_judge import REFS, ScriptedModel

    monkeypatch.setattr(inventory, "phonemise", lambda text, language: REFS[text])
    model = ScriptedModel("abXdefghi", "klm")
    x = speech_like(0.5, seed=2)
    gen = [
        (x, SR, {"id": "u0", "emotion": "sad", "language": "en", "text": "ten"}),
        (x, SR, {"id": "u1", "emotion": "sad", "language": "zh", "text": "five"}),
        (x, SR, {"id": "u2", "emotion": "sad", "language": "zh", "text": "none"}),
        (x, SR, {"id": "u3", "emotion": "sad"}),
    ]
    out = audit_audio(gen, recognizer=False, phone_judge=PhoneJudge(model), per_utterance=True)
    per = out["per"]
    assert per["n"] == 2 and per["per"]["stat"] == pytest.approx(4 / 15) and per["skipped"] == 1
    assert (per["sub"], per["del"], per["ins"]) == pytest.approx((1 / 15, 3 / 15, 0.0))
    assert per["languages"]["en"]["per"]["stat"] == pytest.approx(0.2) and per["languages"]["en"]["n"] == 1
    assert per["languages"]["zh"]["per"]["stat"] == pytest.approx(0.4)
    rows = out["utterances"]
    assert {k: rows[0][k] for k in ("per", "phones", "phone_edits", "phone_sub", "phone_del", "phone_ins")} == {
        "per": pytest.approx(0.2),
        "phones": 10,
        "phone_edits": 2,
        "phone_sub": 1,
        "phone_del": 1,
        "phone_ins": 0,
    }
    assert rows[0]["phones_heard"] == "a b X d e f g h i" and rows[1]["phone_del"] == 2
    assert "per" not in rows[2] and "per" not in rows[3]
    assert len(model.calls) == 2  # the recogniser heard only the utterances with phonemes to compare


def test_pooled_recall_weights_each_summary_by_its_count():
    """Summary 1: angry 1 of 4 (0.25), happy 2 of 2 (1.0), sad n 0 (left out); summary 2: angry 3 of 6
    (0.5), surprise 0 of 5. Pooled: angry (1 + 3) / 10 = 0.4, happy 1.0, surprise 0.0; the order given
    (happy, angry) first, then the rest alphabetically (surprise). A summary without a judge adds nothing."""
    from rrpo.audit.summary import pooled_recall

    pts = [
        {
            "judge": {
                "per_emotion": {
                    "angry": {"n": 4, "accuracy": 0.25},
                    "happy": {"n": 2, "accuracy": 1.0},
                    "sad": {"n": 0, "accuracy": float("nan")},
                }
            }
        },
        {"judge": {"per_emotion": {"surprise": {"n": 5, "accuracy": 0.0}, "angry": {"n": 6, "accuracy": 0.5}}}},
        {"n": 0},
    ]
    r = pooled_recall(pts, ["neutral", "happy", "angry"])
    assert list(r) == ["happy", "angry", "surprise"]
    assert r["angry"] == pytest.approx(0.4) and r["happy"] == 1.0 and r["surprise"] == 0.0
    assert pooled_recall([]) == {}
