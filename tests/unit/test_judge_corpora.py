"""Several corpora for the judges: class masks, the masked logistic regression (by hand), corpus
selection, and the second (log-mel) judge: training, exact resume, storage, the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from rrpo.audit.judge import JudgeConfig, corpus_class_mask, fit_judge, load_judge, select_corpora
from rrpo.audit.masked_logreg import balanced_weights, fit_masked_logreg, masked_loss_grad, masked_softmax
from rrpo.audit.mel_judge import MelJudgeConfig, masked_cross_entropy, train_mel_judge
from rrpo.cli import main
from rrpo.config import load_config
from rrpo.data.manifest import Utterance, read_manifest, write_manifest

from tests.unit.test_audit_judge import CLASSES, make_set, tone_sets  # noqa: F401  (fixture)


def test_corpus_class_mask_by_hand():
    """labels (a, b, a, c) in corpora (x, x, y, y), classes (a, b, c): x has a, b; y has a, c."""
    m = corpus_class_mask(["neutral", "sad", "neutral", "angry"], ["x", "x", "y", "y"], ["neutral", "sad", "angry"])
    assert m.tolist() == [[1, 1, 0], [1, 1, 0], [1, 0, 1], [1, 0, 1]]


def test_masked_softmax_and_gradient_by_hand():
    """Zero parameters, one example x = (1, 0), label 0, mask (1, 1, 0), C = 1: p = (1/2, 1/2, 0), loss ln 2;
    ∂z = p − e_0 = (−1/2, 1/2, 0) → ∂W rows (−1/2, 0), (1/2, 0), (0, 0), ∂b = (−1/2, 1/2, 0): the masked
    class gets no gradient. A finite-difference check at a random point agrees."""
    assert masked_softmax(np.array([[0.0, 0.0, 9.0]]), np.array([[1, 1, 0]], bool)).tolist() == [[0.5, 0.5, 0.0]]
    x, y, mask, w = np.array([[1.0, 0.0]]), np.array([0]), np.array([[1, 1, 0]], bool), np.ones(1)
    loss, g = masked_loss_grad(np.zeros(9), x, y, mask, w, 1.0)
    assert loss == pytest.approx(np.log(2))
    assert g.tolist() == pytest.approx([-0.5, 0, 0.5, 0, 0, 0, -0.5, 0.5, 0])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 2)), np.array([0, 1, 2, 0, 1, 0])
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 0, 1], [1, 1, 1], [1, 1, 0]], bool)
    p0 = rng.normal(size=9)
    _, g = masked_loss_grad(p0, x, y, mask, np.ones(6), 0.5)
    num = [
        (
            masked_loss_grad(p0 + e, x, y, mask, np.ones(6), 0.5)[0]
            - masked_loss_grad(p0 - e, x, y, mask, np.ones(6), 0.5)[0]
        )
        / 2e-6
        for e in np.eye(9) * 1e-6
    ]
    assert g == pytest.approx(num, abs=1e-5)


def test_masked_fit_equals_sklearn_with_full_masks_and_balanced_weights():
    """Full masks: the same objective as scikit-learn's multinomial L2 logistic regression. balanced: labels
    (0, 0, 0, 1) → 4/(2·3) = 2/3 and 4/(2·1) = 2."""
    from sklearn.linear_model import LogisticRegression

    assert balanced_weights(np.array([0, 0, 0, 1]), 2).tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2])
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int) + (x[:, 1] > 1)
    coef, icpt = fit_masked_logreg(x, y, np.ones((60, 3), bool), 0.5)
    ref = LogisticRegression(C=0.5, max_iter=5000, tol=1e-10).fit(x, y)
    p_ours = masked_softmax(x @ coef.T + icpt, np.ones((60, 3), bool))
    assert p_ours == pytest.approx(ref.predict_proba(x), abs=2e-4)


@pytest.mark.slow
def test_class_masking_keeps_a_missing_class_from_being_pushed_down(tone_sets):
    """Corpus A has all three classes; corpus B (two more speakers, same acoustics) lacks 'sad'. Unmasked, B's
    utterances teach 'not sad' and lower p(sad) on true sad test tones; masked, they do not."""
    (a1, a2), test = tone_sets
    from rrpo.audit.judge import EgemapsJudge

    items, labels, speakers, corpora = [], [], [], []
    for spk, (it, lb) in (("a1", a1), ("a2", a2)):
        items += it
        labels += lb
        speakers += [spk] * len(lb)
        corpora += ["A"] * len(lb)
    for spk, seed, f0 in (("b1", 5, 130.0), ("b2", 6, 190.0)):
        it, lb = make_set(f0, 6, seed)
        keep = [i for i, l in enumerate(lb) if l != "sad"]
        items += [it[i] for i in keep]
        labels += [lb[i] for i in keep]
        speakers += [spk] * len(keep)
        corpora += ["B"] * len(keep)
    feats = EgemapsJudge.features(items)
    cfg = JudgeConfig(classes=CLASSES, min_group=4, c_grid=[1.0])
    masked, info = fit_judge(feats, labels, speakers, cfg, corpora=corpora)
    plain, _ = fit_judge(
        feats,
        labels,
        speakers,
        JudgeConfig(classes=CLASSES, min_group=4, c_grid=[1.0], class_masking=False),
        corpora=corpora,
    )
    assert info["class_masking"] and info["corpora"]["B"]["classes"] == ["neutral", "angry"]
    tf = EgemapsJudge.features(test[0])
    sad = [i for i, l in enumerate(test[1]) if l == "sad"]
    k = CLASSES.index("sad")
    pm = masked.proba_from_features(tf, ["t"] * len(tf))[sad, k].mean()
    pp = plain.proba_from_features(tf, ["t"] * len(tf))[sad, k].mean()
    assert pm > pp


def _manifests(tmp_path, tone_sets):
    from rrpo.data.audio import save_audio

    (s1, s2), s3 = tone_sets
    paths = []
    for corpus, sets in (("ca", {"s1": s1, "s3": s3}), ("cb", {"s2": s2})):
        recs = []
        for spk, (items, labels) in sets.items():
            for i, ((x, sr), emo) in enumerate(zip(items, labels)):
                if corpus == "cb" and emo == "sad":
                    continue
                p = tmp_path / "wav" / f"{corpus}_{spk}_{i}.wav"
                save_audio(p, x, sr)
                recs.append(
                    Utterance(
                        id=f"{corpus}_{spk}_{i}",
                        audio=str(p),
                        sampling_rate=sr,
                        duration=len(x) / sr,
                        text="",
                        speaker=spk if corpus == "ca" else "s1",
                        language="zh",
                        emotion=emo,
                        split="train",
                    )
                )
        write_manifest(tmp_path / f"{corpus}.jsonl", recs)
        paths.append(tmp_path / f"{corpus}.jsonl")
    return paths


def test_select_corpora_groups_and_drops(tmp_path, tone_sets):
    """Two manifests: speaker groups are corpus/speaker (cb's 's1' is not ca's 's1'); with small_groups=drop a
    group below min_group is left out and listed."""
    mans = [read_manifest(p) for p in _manifests(tmp_path, tone_sets)]
    cfg = JudgeConfig(classes=CLASSES, exclude_speakers=["s3"], min_group=13, small_groups="drop")
    sel, corpora, groups, dropped = select_corpora(mans, cfg)
    assert sorted(set(groups)) == ["ca/s1"] and dropped == {"dropped_speakers": {"cb/s1": 12}, "narrow_speakers": {}}
    cfg = JudgeConfig(classes=CLASSES, exclude_speakers=["s3"], min_group=5, min_group_classes=3)
    _, _, groups, dropped = select_corpora(mans, cfg)  # cb/s1 covers neutral and angry only
    assert sorted(set(groups)) == ["ca/s1"] and dropped["narrow_speakers"] == {"cb/s1": 2}
    assert len(sel) == 18 and set(corpora) == {"ca"}


def _mel_cfg(*over):
    return load_config(
        MelJudgeConfig,
        "configs/judge_mel.yaml",
        [
            "classes=[neutral, angry, sad]",
            "exclude_speakers=[s3]",
            "min_group=5",
            "max_frames=30",
            "channels=8",
            "train.batch_size=8",
            "train.steps=4",
            "train.progress=false",
            *over,
        ],
    )


def test_masked_cross_entropy_by_hand():
    """logits (0, 0, 5), label 0, mask (1, 1, 0): the masked 5 is ignored → ln 2; weights (1, 3) on labels
    (0, 1) with logits 0 everywhere and full masks: (1·ln 3 + 3·ln 3)/4 = ln 3."""
    l = masked_cross_entropy(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([0]), torch.tensor([[True, True, False]]))
    assert float(l) == pytest.approx(np.log(2))
    l = masked_cross_entropy(
        torch.zeros(2, 3), torch.tensor([0, 1]), torch.ones(2, 3, dtype=torch.bool), torch.tensor([1.0, 3.0, 1.0])
    )
    assert float(l) == pytest.approx(np.log(3))


def test_mel_judge_resume_repeats_losses(tmp_path, tone_sets):
    """4 steps straight vs a run stopped after its step-2 checkpoint and resumed: identical losses."""
    mans = [read_manifest(p) for p in _manifests(tmp_path, tone_sets)]
    train_mel_judge(_mel_cfg("train.log_every=1"), mans, tmp_path / "a")
    cfg = _mel_cfg("train.log_every=1", "train.ckpt_every=2", "train.keep_checkpoints=0")
    train_mel_judge(cfg, mans, tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step_4")
    train_mel_judge(cfg, mans, tmp_path / "b")
    from rrpo.runs import RunDir

    la = [m["judge/loss"] for m in RunDir(tmp_path / "a").read_metrics()]
    lb = [m["judge/loss"] for m in RunDir(tmp_path / "b").read_metrics()]
    assert len(la) == 4 and la == pytest.approx(lb, rel=1e-6)


@pytest.mark.slow
def test_mel_judge_learns_tones_cli_and_storage(tmp_path, tone_sets, capsys):
    """rrpo judge train-mel on two corpora (one lacking 'sad'), then rrpo judge eval on the unseen speaker:
    above chance (1/3); the folder opens with load_judge and fixed statistics give the same probabilities."""
    paths = _manifests(tmp_path, tone_sets)
    out = tmp_path / "mel"
    rc = main(
        [
            "judge",
            "train-mel",
            "--config",
            "configs/judge_mel.yaml",
            f"manifests=[{paths[0]}, {paths[1]}]",
            f"out={out}",
            "classes=[neutral, angry, sad]",
            "exclude_speakers=[s3]",
            "min_group=5",
            "channels=16",
            "train.steps=150",
            "train.progress=false",
        ]
    )
    assert rc == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["corpora"] == {"ca": 18, "cb": 12}
    rc = main(["judge", "eval", f"judge={out}", f"manifests=[{paths[0]}]", "speakers=[s3]"])
    assert rc == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["n"] == 18 and ev["ua"] > 0.5
    j = load_judge(out)
    items = tone_sets[1][0]
    st = j.group_stats(items)
    assert j.predict_proba(items[:3], stats=st) == pytest.approx(j.predict_proba(items, groups=["x"] * 18)[:3])


def test_mel_statistics_of_a_steady_tone():
    """A steady sine: every band is constant after the first frames, so per band the 10th, 50th and 90th
    percentiles are equal to within a fraction of a dB, and the frame-to-frame difference is ~0 (its std
    small); 6 statistics × 40 bands."""
    from rrpo.audit.features import mel_statistics

    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    f = mel_statistics([(x, 16000)])[0].reshape(6, 40)
    loud = f[0] > f[0].max() - 30  # bands the tone reaches
    assert np.abs(f[4] - f[2])[loud].max() < 1.0 and np.abs(f[5])[loud].max() < 1.0


def test_logmel_stats_judge_trains_with_the_egemaps_trainer(tmp_path, tone_sets, capsys):
    """rrpo judge train features=logmel-stats writes a 'logmel-stats' judge (240 features) that load_judge
    opens and that judges the unseen tone speaker above chance."""
    paths = _manifests(tmp_path, tone_sets)
    out = tmp_path / "ms"
    assert (
        main(
            [
                "judge",
                "train",
                f"manifests=[{paths[0]}]",
                f"out={out}",
                "exclude_speakers=[s3]",
                "classes=[neutral, angry, sad]",
                "min_group=5",
                "c_grid=[0.1]",
                "features=logmel-stats",
            ]
        )
        == 0
    )
    meta = json.loads((out / "judge.json").read_text())
    assert meta["kind"] == "logmel-stats"
    j = load_judge(out)
    assert type(j).__name__ == "MelStatsJudge" and j.coef.shape == (3, 240)
    capsys.readouterr()
    assert main(["judge", "eval", f"judge={out}", f"manifests=[{paths[0]}]", "speakers=[s3]"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["n"] == 18 and ev["ua"] > 0.5


def test_group_weights_by_hand_and_sample_weight_reaches_the_fit():
    """group_weights: groups (a, a, a, b) → N/(G·n_g) = 4/(2·3), 4/(2·1) = (2/3, 2/3, 2/3, 2): each group
    sums to 2. In fit_judge, corpus weighting with two corpora of equal size gives every utterance weight 1,
    the unweighted fit exactly; speaker weighting with speakers of 30 and 10 utterances changes the fit
    (their weights 2/3 and 2 differ), for the plain and the masked (a corpus without a class) fit alike."""
    from rrpo.audit.judge import group_weights

    assert group_weights(["a", "a", "a", "b"]).tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2])
    assert group_weights([]).shape == (0,)
    rng = np.random.default_rng(0)
    cls = ["neutral", "angry", "sad"]
    n = {"s1": 30, "s2": 10, "s3": 20, "s4": 20}
    labels = [cls[i % 3] for s in n for i in range(n[s])]
    speakers = [s for s in n for _ in range(n[s])]
    corpora = ["X" if s in ("s1", "s2") else "Y" for s in speakers]
    feats = rng.normal(size=(len(labels), 4)) + np.array([[cls.index(l), 0, 0, 0] for l in labels])
    base = dict(classes=cls, min_group=4, c_grid=[1.0], class_weight="none")

    def coef(corp=corpora, lab=labels, **kw):
        j, info = fit_judge(feats, lab, speakers, JudgeConfig(**base, **kw), corpora=corp)
        return j.coef, info

    none, info = coef()
    assert info["sample_weight"] == "none" and not info["class_masking"]
    np.testing.assert_allclose(coef(sample_weight="corpus")[0], none, atol=1e-6)  # 40 and 40: weight 1 each
    assert not np.allclose(coef(sample_weight="speaker")[0], none, atol=1e-3)
    # corpus Y without 'sad': the masked fit, with and without speaker weights
    lab = [("neutral" if (c == "Y" and l == "sad") else l) for l, c in zip(labels, corpora)]
    masked, info = coef(lab=lab)
    assert info["class_masking"]
    assert not np.allclose(coef(lab=lab, sample_weight="speaker")[0], masked, atol=1e-3)
    with pytest.raises(Exception, match="sample_weight"):
        fit_judge(feats, labels, speakers, JudgeConfig(**base, sample_weight="corpus"))


def test_feature_cache_reuses_rows_and_notices_a_changed_file(tmp_path):
    """Files a, b: the first call extracts both (one extract call of 2 paths); a second call over (b, a, b)
    extracts nothing and returns the cached rows in that order; rewriting b (another size) extracts b again.
    Without a cache file, extract runs on every path."""
    from rrpo.audit.features import cached_features

    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"1")
    b.write_bytes(b"22")
    calls = []

    def extract(paths):
        calls.append([p.name for p in paths])
        return np.array([[len(p.read_bytes()), 0.0] for p in paths])

    cache = tmp_path / "c" / "f.npz"
    assert cached_features([a, b], extract, cache).tolist() == [[1, 0], [2, 0]]
    assert cached_features([b, a, b], extract, cache).tolist() == [[2, 0], [1, 0], [2, 0]]
    assert calls == [["a.wav", "b.wav"]]
    b.write_bytes(b"333")
    assert cached_features([a, b], extract, cache).tolist() == [[1, 0], [3, 0]]
    assert calls[-1] == ["b.wav"]
    assert cached_features([a], extract, None).tolist() == [[1, 0]] and calls[-1] == ["a.wav"]


def test_judge_train_and_eval_with_a_feature_cache_equal_those_without(tmp_path, tone_sets, capsys):
    """rrpo judge train / eval with feature_cache=DIR: the same weights and the same evaluation as without;
    the cache file holds one row per training and evaluation file."""
    paths = _manifests(tmp_path, tone_sets)
    base = ["judge", "train", f"manifests=[{paths[0]}]", "exclude_speakers=[s3]", "classes=[neutral, angry, sad]"]
    base += ["min_group=5", "c_grid=[0.1]"]
    cache = tmp_path / "feats"
    assert main([*base, f"out={tmp_path / 'plain'}"]) == 0
    assert main([*base, f"out={tmp_path / 'cached'}", f"feature_cache={cache}"]) == 0
    assert main([*base, f"out={tmp_path / 'again'}", f"feature_cache={cache}"]) == 0  # all rows from the cache
    w = [np.load(tmp_path / d / "weights.npz")["coef"] for d in ("plain", "cached", "again")]
    np.testing.assert_allclose(w[1], w[0], atol=1e-10)
    np.testing.assert_allclose(w[2], w[0], atol=1e-10)
    evals = []
    for extra in ([], [f"feature_cache={cache}"]):
        capsys.readouterr()
        ev = ["judge", "eval", f"judge={tmp_path / 'plain'}", f"manifests=[{paths[0]}]", "speakers=[s3]"]
        assert main([*ev, *extra]) == 0
        evals.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert evals[0]["ua"] == evals[1]["ua"] and evals[0]["confusion"] == evals[1]["confusion"]
    n_files = len(read_manifest(paths[0]))
    assert len(np.load(cache / "egemaps.npz")["keys"]) == n_files
