"""The eGeMAPS judge: metrics by hand, training on generated tones, storage, the CLI verbs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rrpo.audit.judge import EgemapsJudge, JudgeConfig, fit_judge, load_judge, register_judge_kind
from rrpo.audit.metrics import classification_metrics, expected_calibration_error
from rrpo.cli import main
from rrpo.errors import ConfigError, RrpoError

SR = 16000
CLASSES = ["neutral", "angry", "sad"]


def test_ece_hand_values():
    """Confidences 0.9, 0.6, 0.7, 0.8 (correct, wrong, correct, correct), 10 bins: each alone in a
    bin -> (|1−0.9| + |0−0.6| + |1−0.7| + |1−0.8|) / 4 = 0.3. With 2 bins all fall in (0.5, 1]:
    accuracy 0.75, mean confidence 0.75 -> 0."""
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    y = np.array([0, 1, 1, 0])
    assert expected_calibration_error(p, y, bins=10) == pytest.approx(0.3)
    assert expected_calibration_error(p, y, bins=2) == pytest.approx(0.0)


def test_classification_metrics_hand_values():
    """labels a a a b, predictions a a b b: wa 3/4; recall a 2/3, b 1 -> ua 5/6."""
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7]])
    m = classification_metrics(["neutral", "neutral", "neutral", "sad"], p, ["neutral", "sad"])
    assert m["wa"] == 0.75 and m["ua"] == pytest.approx(5 / 6)
    assert m["recall"] == {"neutral": pytest.approx(2 / 3), "sad": 1.0}
    assert m["confusion"] == [[2, 1], [0, 1]]
    with pytest.raises(ValueError):
        classification_metrics(["happy"], p[:1], ["neutral", "sad"])


def tone(f0: float, level: float, seconds: float, rng) -> np.ndarray:
    """A vibrato harmonic tone with a little noise: class = (pitch, loudness, brightness)."""
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))
    ph = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * ph) / k ** (1.5 if level < 0.2 else 0.8) for k in range(1, 12))
    x = level * x / np.abs(x).max() + 0.002 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def make_set(speaker_f0: float, n: int, seed: int):
    """neutral: base pitch, medium level; angry: +40 % pitch, loud and bright; sad: −15 %, soft, dark."""
    rng = np.random.default_rng(seed)
    spec = {"neutral": (1.0, 0.2), "angry": (1.4, 0.6), "sad": (0.85, 0.06)}
    items, labels = [], []
    for emo in CLASSES:
        for _ in range(n):
            mult, lvl = spec[emo]
            items.append(
                (
                    tone(
                        speaker_f0 * mult * rng.uniform(0.95, 1.05),
                        lvl * rng.uniform(0.8, 1.2),
                        rng.uniform(0.4, 0.6),
                        rng,
                    ),
                    SR,
                )
            )
            labels.append(emo)
    return items, labels


@pytest.fixture(scope="module")
def tone_sets():
    train = [make_set(110.0, 6, 0), make_set(220.0, 6, 1)]  # two speakers
    test = make_set(160.0, 6, 2)  # a third, unseen speaker
    return train, test


def test_judge_learns_tones_above_chance_and_round_trips(tone_sets, tmp_path):
    (a, la), (b, lb) = tone_sets[0]
    items, labels = a + b, la + lb
    speakers = ["s1"] * len(a) + ["s2"] * len(b)
    cfg = JudgeConfig(classes=CLASSES, min_group=5, c_grid=[0.1, 1.0])
    feats = EgemapsJudge.features(items)
    assert feats.shape == (len(items), 88)
    judge, info = fit_judge(feats, labels, speakers, cfg)
    assert info["C"] in (0.1, 1.0) and info["train_speakers"] == ["s1", "s2"]
    test_items, test_labels = tone_sets[1]
    proba = judge.predict_proba(test_items, groups=["s3"] * len(test_items))
    assert proba.shape == (len(test_items), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    m = classification_metrics(test_labels, proba, judge.classes)
    assert m["wa"] > 0.6  # chance is 1/3

    judge.save(tmp_path / "j")
    again = load_judge(tmp_path / "j")
    assert again.classes == tuple(CLASSES)
    np.testing.assert_allclose(again.predict_proba(test_items, groups=["s3"] * len(test_items)), proba)
    # fixed calibration statistics of the speaker give the same answer as batch statistics of the same set
    stats = judge.group_stats(test_items, ["s3"] * len(test_items))
    np.testing.assert_allclose(judge.predict_proba(test_items[:2], stats=stats), proba[:2], atol=1e-9)
    # too small a group without statistics is an error, not a silent guess
    with pytest.raises(RrpoError, match="speaker group"):
        judge.predict_proba(test_items[:2])


def test_judge_storage_errors_and_plugins(tmp_path):
    with pytest.raises(RrpoError, match="no judge.json"):
        load_judge(tmp_path)
    (tmp_path / "judge.json").write_text(json.dumps({"kind": "emotion2vec", "classes": ["neutral", "sad"]}))
    with pytest.raises(RrpoError, match="unknown judge kind"):
        load_judge(tmp_path)

    class Constant:
        def __init__(self, classes):
            self.classes = tuple(classes)

        def predict_proba(self, items, groups=None):
            return np.full((len(items), len(self.classes)), 1 / len(self.classes))

    register_judge_kind("emotion2vec", lambda folder, meta: Constant(meta["classes"]))
    j = load_judge(tmp_path)
    assert j.classes == ("neutral", "sad") and j.predict_proba([(np.zeros(10), SR)]).shape == (1, 2)
    (tmp_path / "judge.json").write_text(json.dumps({"kind": "egemaps-logreg", "classes": ["neutral", "sad"]}))
    with pytest.raises(RrpoError, match="weights not found"):
        load_judge(tmp_path)
    (tmp_path / "weights.npz").write_bytes(b"not an npz file")
    with pytest.raises(RrpoError, match="not a judge weights file"):
        load_judge(tmp_path)
    with pytest.raises(ConfigError):
        JudgeConfig(classes=["neutral", "bored"])


def test_judge_cli_train_and_eval(tone_sets, tmp_path, capsys):
    from rrpo.data.audio import save_audio
    from rrpo.data.manifest import Utterance, write_manifest

    recs = []
    sets = {"s1": tone_sets[0][0], "s2": tone_sets[0][1], "s3": tone_sets[1]}
    for spk, (items, labels) in sets.items():
        for i, ((x, sr), emo) in enumerate(zip(items, labels)):
            path = tmp_path / "wav" / f"{spk}_{i}.wav"
            save_audio(path, x, sr)
            recs.append(
                Utterance(
                    id=f"{spk}_{i}",
                    audio=str(path),
                    sampling_rate=sr,
                    duration=len(x) / sr,
                    text="",
                    speaker=spk,
                    language="zh",
                    emotion=emo,
                    split="train",
                )
            )
    man = tmp_path / "m.jsonl"
    write_manifest(man, recs)
    out = tmp_path / "judge"
    rc = main(
        [
            "judge",
            "train",
            f"manifests=[{man}]",
            f"out={out}",
            "exclude_speakers=[s3]",
            "classes=[neutral, angry, sad]",
            "min_group=5",
            "c_grid=[0.1, 1.0]",
        ]
    )
    assert rc == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["train_speakers"] == ["s1", "s2"] and trained["n_train"] == 36
    for f in ("judge.json", "weights.npz", "config.yaml", "command.txt", "metrics.jsonl"):
        assert (out / f).exists()
    rc = main(["judge", "eval", f"judge={out}", f"manifests=[{man}]", "speakers=[s3]", f"out={tmp_path / 'eval.json'}"])
    assert rc == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["n"] == 18 and ev["speakers"] == ["s3"] and ev["wa"] > 0.6
    assert set(ev["recall"]) == set(CLASSES) and 0 <= ev["ece"] <= 1
    assert json.loads((tmp_path / "eval.json").read_text())["wa"] == ev["wa"]
    # a user error is one line and exit status 2
    assert main(["judge", "eval", f"judge={tmp_path / 'nope'}", f"manifests=[{man}]"]) == 2
    assert "no judge.json" in capsys.readouterr().err
