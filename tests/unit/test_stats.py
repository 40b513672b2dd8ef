"""Bootstrap intervals, paired permutation tests and variance components, against values worked by hand."""

import math

import numpy as np
import pytest

from rrpo.stats import (
    bootstrap_ci,
    cluster_bootstrap_ci,
    design_half_width,
    paired_difference,
    paired_permutation_p,
    variance_components,
    weighted_quantile,
)


def test_weighted_quantile_is_the_inverted_cdf():
    """values (0, 1/3, 2/3, 1), P (8, 12, 6, 1)/27: CDF 8/27 = .296, 20/27 = .741, 26/27 = .963, 1.
    q = 0.1 → 0; q = 0.5 → 1/3; q = 0.9 → 2/3; q = 0.975 → 1; q = 20/27 exactly → 1/3."""
    v, p = np.array([0, 1 / 3, 2 / 3, 1]), np.array([8, 12, 6, 1]) / 27
    assert weighted_quantile(v, p, 0.1) == 0
    assert weighted_quantile(v, p, 0.5) == pytest.approx(1 / 3)
    assert weighted_quantile(v, p, 0.9) == pytest.approx(2 / 3)
    assert weighted_quantile(v, p, 0.975) == 1
    assert weighted_quantile(v, p, 20 / 27) == pytest.approx(1 / 3)


def test_bootstrap_ci_exact_enumeration():
    """x = (0, 0, 1): a resample's mean is k/3, k ~ Binomial(3, 1/3), P = (8, 12, 6, 1)/27 (all 27 resamples).
    80 % interval: 10th percentile 0, 90th 2/3. 95 %: 2.5th 0, 97.5th 1 (CDF at 2/3 is .963 < .975)."""
    r = bootstrap_ci([0, 0, 1], level=0.8)
    assert r["exact"] and r["n"] == 3
    assert r["stat"] == pytest.approx(1 / 3)
    assert (r["lo"], r["hi"]) == (0, pytest.approx(2 / 3))
    r = bootstrap_ci([0, 0, 1], level=0.95)
    assert (r["lo"], r["hi"]) == (0, 1)


def test_bootstrap_ci_ratio_and_nan():
    """Σx/Σw: events (0, 2) over seconds (1, 1) → rate 1.0; resamples (0,0), (0,2), (2,0), (2,2) over 2 s
    give 0, 1, 1, 2; the 50 % interval (25th, 75th percentile, inverted CDF): P(≤0) = 1/4 ≥ .25 → 0; P(≤1) = 3/4
    ≥ .75 → 1. A NaN unit is dropped (n = 2)."""
    r = bootstrap_ci([0, 2, math.nan], [1, 1, 1], level=0.5)
    assert r["n"] == 2 and r["stat"] == 1.0 and (r["lo"], r["hi"]) == (0, 1)


def test_bootstrap_ci_monte_carlo_is_seeded_and_close_to_normal():
    """Large n: the percentile interval of a 0/1 mean with p = .5, n = 400 is about ±1.96·sqrt(.25/400) = ±.049."""
    x = np.array([0, 1] * 200)
    a, b = bootstrap_ci(x, n_boot=4000, seed=3), bootstrap_ci(x, n_boot=4000, seed=3)
    assert a == b and not a["exact"]
    assert a["lo"] == pytest.approx(0.451, abs=0.01) and a["hi"] == pytest.approx(0.549, abs=0.01)


def test_cluster_bootstrap_exact():
    """Clusters A = (0, 1), B = (1, 1). One draw: A w.p. 1/2 then a resample of A (sum 0, 1, 2 w.p. 1/4,
    1/2, 1/4), or B (sum 2). So a draw's sum T is 0, 1, 2 w.p. 1/8, 1/4, 5/8. The statistic (T1 + T2)/4
    is 0, 1/4, 1/2, 3/4, 1 w.p. (1, 4, 14, 20, 25)/64 (CDF 1, 5, 19, 39, 64 /64).
    50 % interval: 25th percentile 1/2 (19/64 = .297), 75th 1 (39/64 = .609 < .75). 90 %: 5th 1/4
    (5/64 = .078), 95th 1."""
    r = cluster_bootstrap_ci([[0, 1], [1, 1]], level=0.5)
    assert r["exact"] and r["clusters"] == 2 and r["n"] == 4
    assert r["stat"] == 0.75
    assert (r["lo"], r["hi"]) == (0.5, 1.0)
    r = cluster_bootstrap_ci([[0, 1], [1, 1]], level=0.9)
    assert (r["lo"], r["hi"]) == (0.25, 1.0)


def test_cluster_bootstrap_is_wider_than_flat_when_clusters_differ():
    """Three seeds at 0.1, 0.5, 0.9 accuracy (40 utterances each): the seed-level spread dominates, so the
    hierarchical interval is much wider than the flat one over 120 utterances (≈ ±0.09)."""
    cl = [np.r_[np.ones(k), np.zeros(40 - k)] for k in (4, 20, 36)]
    flat = bootstrap_ci(np.concatenate(cl), n_boot=2000)
    hier = cluster_bootstrap_ci(cl, n_boot=2000)
    assert hier["stat"] == flat["stat"] == pytest.approx(0.5)
    assert (hier["hi"] - hier["lo"]) > 2 * (flat["hi"] - flat["lo"])


def test_paired_permutation_exact():
    """a = (0, 0, 0), b = (1, 1, 0): T = mean(b) − mean(a) = 2/3; swapping pairs flips the signs of the
    differences (1, 1, 0): of 8 patterns 4 give |T*| = 2/3 → p = 0.5. a = 0000, b = 1111: only the two
    patterns with all pairs swapped the same way reach |T| = 1 → p = 2/16. Cluster level with the two
    clusters (0,0)/(1,1) and (0)/(1): 4 patterns, |T*| = 1 for 2 → p = 0.5."""
    assert paired_permutation_p([[0, 0, 0]], [[1, 1, 0]]) == pytest.approx(0.5)
    assert paired_permutation_p([[0, 0, 0, 0]], [[1, 1, 1, 1]]) == pytest.approx(0.125)
    assert paired_permutation_p([[0, 0], [0]], [[1, 1], [1]], level="cluster") == pytest.approx(0.5)


def test_paired_permutation_ratio_swaps_weights_too():
    """Artifact rates: a has events (1, 0) in seconds (1, 3) → 1/4; b has (0, 0) in (1, 1) → 0. T = −1/4.
    Swap patterns (pair 1, pair 2): none: b−a = 0 − 1/4 = −1/4; swap 1: a = (0, 0)/(1, 3) = 0,
    b = (1, 0)/(1, 1) = 1/2 → 1/2; swap 2: a = (1, 0)/(1, 1) = 1/2, b = (0, 0)/(1, 3) = 0 → −1/2; both:
    a = 0, b = 1/4 → 1/4. |T*| ≥ 1/4 in all four → p = 1."""
    assert paired_permutation_p([([1, 0], [1, 3])], [([0, 0], [1, 1])]) == 1.0


def test_paired_difference_interval_and_alignment():
    """b − a with a constant gain of 0.2 on every utterance: the bootstrap interval is the point (0.2, 0.2);
    with 3 × 10 utterances the unit-level test is Monte Carlo (2^30 patterns) and p < 0.001; the
    cluster-level one has 2^3 patterns and the minimum p = 2/8."""
    rng = np.random.default_rng(0)
    a = [rng.uniform(0, 0.5, 10) for _ in range(3)]
    b = [x + 0.2 for x in a]
    r = paired_difference(a, b, n_boot=500, n_perm=999)
    assert r["diff"] == pytest.approx(0.2)
    assert r["lo"] == pytest.approx(0.2) and r["hi"] == pytest.approx(0.2)
    assert r["p_perm"] == pytest.approx(1 / 1000)
    assert r["p_perm_cluster"] == pytest.approx(0.25)
    assert r["n"] == 30 and r["clusters"] == 3
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([[0, 1]], [[0]])


def test_variance_components_by_hand():
    """2 RM seeds × 2 optimiser seeds × 2 utterances: (0,0): (1,3), (0,1): (3,5), (1,0): (5,7), (1,1): (7,9).
    Run means 2, 4, 6, 8; RM means 3, 7; grand 5. SS_A = b·n·((3−5)² + (7−5)²) = 4·8 = 32, MS_A = 32/1;
    SS_B = n·(1 + 1 + 1 + 1) = 8, MS_B = 8/2 = 4; SS_E = 4 runs × 2 = 8, MS_E = 8/4 = 2.
    σ²_utt = 2, σ²_opt = (4 − 2)/2 = 1, σ²_rm = (32 − 4)/(2·2) = 7.
    Design (2, 2, 2): 7/2 + 1/4 + 2/8 = 4 → half-width 1.96·2; design (3, 3, 300): 7/3 + 1/9 + 2/2700."""
    cells = {(0, 0): [1, 3], (0, 1): [3, 5], (1, 0): [5, 7], (1, 1): [7, 9]}
    v = variance_components(cells)
    assert v["ms"] == {"rm": 32, "opt": 4, "utt": 2}
    assert v["sigma2"] == {"rm": 7, "opt": 1, "utt": 2}
    assert v["grand_mean"] == 5
    assert design_half_width(v["sigma2"], 2, 2, 2) == pytest.approx(3.92)
    assert design_half_width(v["sigma2"], 3, 3, 300) == pytest.approx(1.96 * math.sqrt(7 / 3 + 1 / 9 + 2 / 2700))


def test_variance_components_one_rm_seed_and_negative_estimates():
    """One RM seed, optimiser seeds (0, 1) and (0, 1): run means equal, MS_B = 0 < MS_E = 0.5, so the raw
    σ²_opt = (0 − 0.5)/2 = −0.25 is reported as 0 and σ²_rm is NaN (not replicated)."""
    v = variance_components({(0, 0): [0, 1], (0, 1): [0, 1]})
    assert v["raw"]["opt"] == pytest.approx(-0.25) and v["sigma2"]["opt"] == 0.0
    assert math.isnan(v["sigma2"]["rm"]) and v["sigma2"]["utt"] == 0.5


def test_unweighted_accuracy_interval_by_hand():
    """Class a: (right, wrong); class b: (right). recall_a* ~ Binomial(2, 1/2)/2: 0, 1/2, 1 w.p. 1/4, 1/2, 1/4;
    recall_b* = 1; UA* = (recall_a* + 1)/2: 1/2, 3/4, 1 w.p. 1/4, 1/2, 1/4 → 50 % interval (1/2, 3/4), 95 % (1/2, 1).
    Large classes (5 × 50, recall 0.6) use seeded draws: ± about 1.96·sqrt(.24/50)/sqrt(5) = 0.061."""
    from rrpo.stats import unweighted_accuracy_ci

    r = unweighted_accuracy_ci(["a", "a", "b"], ["a", "b", "b"], level=0.5)
    assert r["exact"] and r["ua"] == 0.75 and (r["lo"], r["hi"]) == (0.5, 0.75)
    assert unweighted_accuracy_ci(["a", "a", "b"], ["a", "b", "b"])["hi"] == 1.0
    y = [k for k in "abcde" for _ in range(50)]
    p = [k if i % 5 < 3 else "z" for i, k in enumerate(y)]
    r = unweighted_accuracy_ci(y, p, n_boot=4000)
    assert not r["exact"] and r["ua"] == pytest.approx(0.6)
    assert r["lo"] == pytest.approx(0.6 - 0.061, abs=0.012) and r["hi"] == pytest.approx(0.6 + 0.061, abs=0.012)


def test_cluster_bootstrap_strata_by_hand():
    """Clusters A = (0, 1), B = (1, 1). Unstratified (as in the docstring): the 50 % interval is (1/2, 1).
    In strata of their own each is drawn once per resample: T_A is 0, 1, 2 w.p. 1/4, 1/2, 1/4 and T_B = 2,
    so (T_A + 2)/4 is 1/2, 3/4, 1 w.p. 1/4, 1/2, 1/4: 50 % interval (1/2, 3/4), 95 % (1/2, 1).
    One stratum for both is the unstratified bootstrap."""
    a, b = [0.0, 1.0], [1.0, 1.0]
    plain = cluster_bootstrap_ci([a, b], level=0.5)
    assert plain["exact"] and (plain["lo"], plain["hi"]) == (0.5, 1.0)
    r = cluster_bootstrap_ci([a, b], level=0.5, strata=["f1", "f2"])
    assert r["exact"] and r["stat"] == 0.75 and (r["lo"], r["hi"]) == (0.5, 0.75)
    assert cluster_bootstrap_ci([a, b], level=0.95, strata=["f1", "f2"])["hi"] == 1.0
    same = cluster_bootstrap_ci([a, b], level=0.5, strata=["f", "f"])
    assert (same["lo"], same["hi"]) == (plain["lo"], plain["hi"])
    with pytest.raises(ValueError, match="strata"):
        cluster_bootstrap_ci([a, b], strata=["f"])


def test_paired_difference_strata_keep_every_fold_in_every_draw():
    """Fold 1: both systems 0 on 4 units (difference 0); fold 2: A 0, B 1 on 4 units (difference 1). Pooled
    difference 4/8 = 1/2. Stratified, every draw holds one cluster of each fold, each with a constant
    difference, so every draw gives 1/2: interval [1/2, 1/2]. Unstratified, a draw of fold 1 twice gives 0
    and of fold 2 twice gives 1 (each w.p. 1/4), so the 95 % interval is [0, 1]."""
    a = [[0, 0, 0, 0], [0, 0, 0, 0]]
    b = [[0, 0, 0, 0], [1, 1, 1, 1]]
    r = paired_difference(a, b, n_boot=400, n_perm=200, strata=["f1", "f2"])
    assert r["diff"] == 0.5 and (r["lo"], r["hi"]) == (0.5, 0.5)
    u = paired_difference(a, b, n_boot=400, n_perm=200)
    assert (u["lo"], u["hi"]) == (0.0, 1.0)


def test_variance_components_with_a_fold_level_by_hand():
    """2 folds × 1 RM seed × 2 optimiser seeds × 2 utterances: (F1,0,0): (1,3), (F1,0,1): (3,5), (F2,0,0):
    (5,7), (F2,0,1): (7,9). Run means 2, 4, 6, 8; fold means 3, 7; grand 5. The RM seed is not
    replicated (NaN), so the fold level is estimated against the optimiser seeds: MS_F = (1·2·2)·((3−5)² +
    (7−5)²)/1 = 32, MS_B = 2·4/2 = 4, MS_E = 8/4 = 2: σ²_fold = (32 − 4)/4 = 7, σ²_opt = (4 − 2)/2 = 1,
    σ²_utt = 2. Half-width for 2 fixed folds × 1 × 2 × 2: (0 + 1/2 + 2/4)/2 = 1/2 → 1.96·sqrt(1/2)."""
    cells = {("F1", 0, 0): [1, 3], ("F1", 0, 1): [3, 5], ("F2", 0, 0): [5, 7], ("F2", 0, 1): [7, 9]}
    v = variance_components(cells)
    assert v["f"] == 2 and v["ms"]["fold"] == 32 and v["ms"]["opt"] == 4 and v["ms"]["utt"] == 2
    assert v["sigma2"]["fold"] == 7 and v["sigma2"]["opt"] == 1 and v["sigma2"]["utt"] == 2
    assert math.isnan(v["sigma2"]["rm"]) and v["grand_mean"] == 5
    assert design_half_width(v["sigma2"], 1, 2, 2, n_fold=2) == pytest.approx(1.96 * math.sqrt(0.5))
    # a fold key on every cell with one fold: the fold is not replicated, the rest as without it
    one = variance_components({("F", 0, 0): [0, 1], ("F", 0, 1): [0, 1]})
    assert math.isnan(one["sigma2"]["fold"]) and one["raw"]["opt"] == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="keys"):
        variance_components({("F", 0, 0): [1, 2], (0, 1): [1, 2]})
