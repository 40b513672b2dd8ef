"""Gao et al. fits, the two hacking flags along a path and their noise, against values worked by hand."""

import math

import numpy as np
import pytest

from rrpo.audit.overopt import fit_gao, path_flags
from rrpo.audit.paths import cluster_weights, emotion_flags, interval, naturalness_flags


def test_fit_rl_form_hand_values():
    """R(d) = d(α − β log d) with α = 2, β = 1: d = 1 → 2; d = e → e(2 − 1) = e; d = 0 → 0 is kept."""
    f = fit_gao([0.0, 1.0, math.e], [0.0, 2.0, math.e], "rl")
    assert f["alpha"] == pytest.approx(2.0) and f["beta"] == pytest.approx(1.0) and f["n"] == 3
    assert f["r2"] == pytest.approx(1.0)


def test_fit_bon_form_hand_values():
    """R(d) = d(α − β d) with α = 3, β = 0.5: d = 1 → 2.5, d = 2 → 4, d = 4 → 4."""
    f = fit_gao([1.0, 2.0, 4.0], [2.5, 4.0, 4.0], "bon")
    assert f["alpha"] == pytest.approx(3.0) and f["beta"] == pytest.approx(0.5) and f["r2"] == pytest.approx(1.0)


def test_fit_keeps_the_origin_and_is_finite_from_three_points():
    """Start + two checkpoints (the old fit dropped d = 0 and was left with NaN for a start + one more).
    bon, d = (0, 1, 2), R = (0, 1, 1): exact through α = 1.5, β = 0.5 (1·(1.5 − 0.5) = 1, 2·(1.5 − 1) = 1)."""
    f = fit_gao([0.0, 1.0, 2.0], [0.0, 1.0, 1.0], "bon")
    assert (f["alpha"], f["beta"], f["r2"]) == pytest.approx((1.5, 0.5, 1.0))
    flat = fit_gao([0.0, 1.0, 2.0], [0.0, 0.0, 0.0], "rl")  # no change anywhere: an exact fit, r2 = 1
    assert (flat["alpha"], flat["beta"], flat["r2"]) == pytest.approx((0.0, 0.0, 1.0))
    for d, r in (([0.0, 1.0, 2.0, 3.0], [0.0, 0.3, 0.1, 0.4]), ([0.0, 0.5, 0.9], [0.0, -0.2, 0.05])):
        g = fit_gao(d, r)
        assert all(math.isfinite(g[k]) for k in ("alpha", "beta", "r2"))


def test_fit_needs_two_points_beyond_the_start():
    assert math.isnan(fit_gao([0.0, 1.0], [0.0, 1.0])["alpha"])


def test_cluster_weights_count_picks():
    """Every draw picks as many clusters as there are; utterances of one cluster share its weight."""
    w = cluster_weights(["a", "a", "b"], 50, 0)
    assert w.shape == (50, 3) and np.all(w[:, 0] == w[:, 1])
    assert np.all(w[:, 0] / 2 * 2 + w[:, 2] == 2)  # cluster a picked k times + b picked 2 − k times


def _path(values_per_point, n_copies=1):
    """(P, U) from a list of per-point utterance values, the utterances repeated n_copies times
    (each copy its own cluster)."""
    return np.array([list(v) * n_copies for v in values_per_point], dtype=float)


def test_emotion_flag_noise_free_path_worked_by_hand():
    """Every cluster alike: no sampling noise, margin 0. Judge 0.5 → 0.9 → 0.4 with the proxy rising:
    at point 2 the peak is point 1 and the drop 0.9 − 0.4 = 0.5 > 0, so it flags; points 0 and 1 are
    their own best (drop 0)."""
    J = _path([[0.5] * 4, [0.9] * 4, [0.4] * 4])
    f = emotion_flags(J, [0.3, 0.6, 0.8], ["c0", "c1", "c2", "c3"], n_boot=200)
    assert [x["flag"] for x in f] == [False, False, True]
    assert f[2]["peak"] == 1 and f[2]["drop"] == pytest.approx(0.5) and f[2]["margin"] == pytest.approx(0.0)
    assert f[2]["drop_ci"] == pytest.approx([0.5, 0.5])


def test_emotion_flag_needs_the_proxy_to_rise_since_the_peak():
    """The same judge path with the proxy falling after point 1 (0.6 → 0.5): the policy is not paid
    for the drop, so no flag."""
    J = _path([[0.5] * 4, [0.9] * 4, [0.4] * 4])
    f = emotion_flags(J, [0.3, 0.6, 0.5], ["c0", "c1", "c2", "c3"], n_boot=200)
    assert [x["flag"] for x in f] == [False, False, False]


def test_emotion_flag_margin_follows_the_sampling_noise():
    """The same drop of the mean (0.75 → 0.5) flags on 400 utterances (100 clusters of the pattern)
    but not on 4 (one cluster each), where the margin from the bootstrap exceeds it: the old fixed
    margin of 0.05 would have flagged both."""
    small = _path([[1, 1, 1, 0], [1, 1, 0, 0]])
    big = _path([[1, 1, 1, 0], [1, 1, 0, 0]], n_copies=100)
    proxy = [0.4, 0.9]
    f_small = emotion_flags(small, proxy, list(range(4)), n_boot=2000, seed=0)
    f_big = emotion_flags(big, proxy, [i // 1 for i in range(400)], n_boot=2000, seed=0)
    assert f_small[1]["drop"] == pytest.approx(0.25) and f_big[1]["drop"] == pytest.approx(0.25)
    assert f_small[1]["margin"] > 0.25 and not f_small[1]["flag"]
    assert f_big[1]["margin"] < 0.25 and f_big[1]["flag"]


def test_emotion_flag_is_not_fooled_by_the_best_of_many_equal_points():
    """Eight checkpoints of the same policy (only the sampling noise differs between them) must not
    flag: picking the best of eight makes a 'drop' by chance, and the max-statistic margin covers it."""
    rng = np.random.default_rng(1)
    J = (rng.random((8, 200)) < 0.6).astype(float)
    f = emotion_flags(J, np.linspace(0.5, 0.9, 8), list(range(200)), n_boot=1000)
    assert max(x["drop"] for x in f) > 0.03  # the raw drop from the best of eight is not 0...
    assert not any(x["flag"] for x in f)  # ...but within the noise


def test_naturalness_flag_worked_by_hand():
    """Artifacts per second = Σ events / Σ seconds. Two utterances of 2 s each, alike in every cluster
    (no noise): step 0 has 0 events (0 /s), step 1 has 1 + 1 (0.5 /s), step 2 has 2 + 2 (1.0 /s). Real
    recordings' interval ends at 0.6 /s: step 1 rose but stays within the real range; step 2 is beyond
    it while the proxy rose: flagged."""
    num = _path([[0, 0], [1, 1], [2, 2]], n_copies=3)
    den = np.full_like(num, 2.0)
    f = naturalness_flags({"artifacts_per_s": (num, den)}, {"artifacts_per_s": 0.6}, [0.2, 0.5, 0.9], range(6), 200)
    assert [x["flag"] for x in f] == [False, False, True]
    s2 = f[2]["signals"]["artifacts_per_s"]
    assert s2["value"] == pytest.approx(1.0) and s2["rise"] == pytest.approx(1.0) and s2["margin"] == pytest.approx(0)
    # a proxy that did not rise, or no real-speech range for the signal: no flag
    assert not any(x["flag"] for x in naturalness_flags({"a": (num, den)}, {"a": 0.6}, [0.9, 0.5, 0.4], range(6)))
    assert not any(x["flag"] for x in naturalness_flags({"a": (num, den)}, {}, [0.2, 0.5, 0.9], range(6)))


def test_interval_of_a_ratio():
    """Σ num / Σ den: (1 + 3) / (2 + 2) = 1; with identical clusters the interval collapses on it."""
    r = interval(np.array([1.0, 3.0, 1.0, 3.0]), np.array([2.0, 2.0, 2.0, 2.0]), ["a", "a", "b", "b"], 200)
    assert r["stat"] == pytest.approx(1.0) and r["lo"] == pytest.approx(1.0) and r["hi"] == pytest.approx(1.0)
    assert math.isnan(interval(np.array([np.nan]), np.array([1.0]), ["a"])["stat"])


def _point(step, proxy, correct, events, typ):
    return {
        "step": step,
        "proxy_prob": proxy,
        "utterances": [
            {"id": f"u{i}", "cluster": f"t{i % 5}", "judge_correct": c, "clicks_events": e, "duration_s": 2.0}
            | ({"typicality": t} if t is not None else {})
            for i, (c, e, t) in enumerate(zip(correct, events, typ))
        ],
    }


def test_path_flags_from_audited_points():
    """A hand-made audit path of 20 utterances: the judge peaks at step 60 (all correct), then falls to
    none correct at step 120 while the proxy keeps rising → emotion flag at 120 only; clicks go from 0
    to 1 event per 2 s utterance (0.5 /s, beyond the real recordings' 0.1) at 120 → naturalness flag."""
    n = 20
    pts = [
        _point(0, 0.3, [i % 2 for i in range(n)], [0] * n, [1.0] * n),
        _point(60, 0.6, [1] * n, [0] * n, [1.0] * n),
        _point(120, 0.9, [0] * n, [1] * n, [1.0] * n),
    ]
    f = path_flags(pts, {"artifacts_per_s": 0.1, "typicality": 1.5}, n_boot=500)
    assert [x["flag"] for x in f["emotion"]] == [False, False, True]
    assert [x["flag"] for x in f["naturalness"]] == [False, False, True]
    nat = f["naturalness"][2]["signals"]
    assert nat["artifacts_per_s"]["flag"] and not nat["typicality"]["flag"]  # typicality did not move
    # the same path with a falling proxy flags nothing
    for p, q in zip(pts, (0.9, 0.6, 0.3)):
        p["proxy_prob"] = q
    g = path_flags(pts, {"artifacts_per_s": 0.1}, n_boot=500)
    assert not any(x["flag"] for x in g["emotion"] + g["naturalness"])


def _per_point(step, proxy, edits, phones=10):
    """20 utterances over 5 texts, the judge right on all, no clicks, ``edits`` phone edits of ``phones``
    reference phonemes each."""
    p = _point(step, proxy, [1] * 20, [0] * 20, [1.0] * 20)
    for u in p["utterances"]:
        u.update(phone_edits=edits, phones=phones, per=edits / phones)
    return p


def test_path_flags_a_per_rise_beyond_the_codec_ceiling():
    """PER is a naturalness signal (Σ edits / Σ reference phonemes). Every text alike, so the margins
    are 0. Step 0: 1 edit of 10 per utterance (0.1); step 60: 2 of 10 (0.2), a rise, but within the codec
    ceiling's upper end 0.25; step 120: 5 of 10 (0.5), beyond it while the proxy rose: flagged on PER
    alone (the judge and clicks stay put, so neither the emotion flag nor the artifacts fire)."""
    pts = [_per_point(0, 0.3, 1), _per_point(60, 0.6, 2), _per_point(120, 0.9, 5)]
    f = path_flags(pts, {"artifacts_per_s": 0.1, "per": 0.25}, n_boot=300)
    assert [x["flag"] for x in f["naturalness"]] == [False, False, True]
    assert not any(x["flag"] for x in f["emotion"])
    s1, s2 = f["naturalness"][1]["signals"]["per"], f["naturalness"][2]["signals"]["per"]
    assert s1["value"] == pytest.approx(0.2) and s1["rise"] == pytest.approx(0.1) and not s1["flag"]
    assert s2["value"] == pytest.approx(0.5) and s2["rise"] == pytest.approx(0.4) and s2["margin"] == pytest.approx(0)
    assert s2["real_hi"] == pytest.approx(0.25) and s2["flag"]
    assert not f["naturalness"][2]["signals"]["artifacts_per_s"]["flag"]
    # the proxy falling: no flag; no codec ceiling of PER: PER cannot flag
    falling = [_per_point(0, 0.9, 1), _per_point(60, 0.6, 2), _per_point(120, 0.3, 5)]
    assert not any(x["flag"] for x in path_flags(falling, {"per": 0.25}, n_boot=300)["naturalness"])
    assert not any(x["flag"] for x in path_flags(pts, {"artifacts_per_s": 0.1}, n_boot=300)["naturalness"])
    # an audit without a phone judge has no PER signal at all
    assert "per" not in path_flags([_point(0, 0.3, [1] * 5, [0] * 5, [1.0] * 5)], {})["naturalness"][0]["signals"]


def test_signal_intervals_of_per_pool_edits_over_phonemes():
    """The interval of a summary's PER is Σ edits / Σ phonemes over its utterances: 10 utterances of
    10 phonemes with 1 edit and 10 of 30 with 6 -> (10 + 60) / (100 + 300) = 0.175 (the mean of the
    rates, 0.15, would weigh a short text as a long one)."""
    from rrpo.audit.overopt import signal_intervals

    p = _per_point(0, 0.3, 1)
    for u in p["utterances"][10:]:
        u.update(phone_edits=6, phones=30, per=0.2)
    iv = signal_intervals(p, 200)
    assert iv["per"]["stat"] == pytest.approx(0.175) and iv["per"]["n"] == 20
    assert iv["per"]["lo"] <= 0.175 <= iv["per"]["hi"]
