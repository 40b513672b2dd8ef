"""Small summary statistics shared by the experiment and ablation tables."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

import numpy as np


def mean_std(xs: Iterable[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value); None and NaN are left out.

    ``(nan, nan)`` when nothing is left."""
    xs = [float(x) for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return math.nan, math.nan
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


# ------------------------------------------------------------------------------------------------
# Intervals, paired differences and variance components for the experiment's tables.
#
# A *sample* is a list of clusters (one per trained run, e.g. per optimiser seed); a cluster is a
# pair (x, w) of 1-D arrays over its utterances. The statistic of a sample is Σx / Σw over all its
# utterances (w = None: w = 1, the plain mean), so an accuracy is the mean of 0/1 values and an
# artifact rate is Σ events / Σ seconds, exactly as the audit computes them.
# Percentiles are the inverted CDF: the q-th percentile is the smallest value v with P(S ≤ v) ≥ q.

Cluster = tuple[np.ndarray, "np.ndarray | None"]


def _as_cluster(c) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(c, tuple) and len(c) == 2:
        x, w = c
    else:
        x, w = c, None
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=np.float64).reshape(-1)
    if w.shape != x.shape:
        raise ValueError(f"values {x.shape} and weights {w.shape} differ in length")
    keep = np.isfinite(x) & np.isfinite(w)
    return x[keep], w[keep]


def _ratio(x: np.ndarray, w: np.ndarray) -> float:
    s = w.sum()
    return float(x.sum() / s) if s > 0 else math.nan


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The inverted-CDF quantile of a discrete distribution: the smallest v with P(V ≤ v) ≥ q.

    Example: values (0, 1/3, 2/3, 1) with weights (8, 12, 6, 1)/27 give q=0.1 → 0, q=0.9 → 2/3."""
    order = np.argsort(values, kind="stable")
    v, cdf = np.asarray(values)[order], np.cumsum(np.asarray(weights, dtype=np.float64)[order])
    cdf /= cdf[-1]
    return float(v[min(int(np.searchsorted(cdf, q - 1e-12, side="left")), len(v) - 1)])


def _interval(values: np.ndarray, weights: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    return weighted_quantile(values, weights, a), weighted_quantile(values, weights, 1 - a)


def _draw_table(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every resample of one cluster's n units (n^n equally likely index tuples) as (Σx, Σw) pairs."""
    n = len(x)
    idx = np.array(list(itertools.product(range(n), repeat=n)), dtype=int).reshape(-1, n)
    return x[idx].sum(1), w[idx].sum(1)


def bootstrap_ci(x, w=None, level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> dict:
    """Percentile bootstrap interval of Σx/Σw (the mean when ``w`` is None) over units (utterances).

    Resamples the units with replacement. When the n^n possible resamples are no more than ``n_boot``
    they are enumerated exactly (then the interval is exact and ``seed`` unused). Returns
    ``{"stat", "lo", "hi", "n", "exact"}``; NaN units are left out.
    Example (exact): x = (0, 0, 1), level 0.8: the resample mean is k/3 with k ~ Binomial(3, 1/3),
    P = (8, 12, 6, 1)/27, so the interval is (0, 2/3)."""
    xs, ws = _as_cluster((x, w))
    n = len(xs)
    out = {"stat": _ratio(xs, ws), "lo": math.nan, "hi": math.nan, "n": n, "exact": False}
    if n == 0:
        return out
    if n**n <= n_boot:
        sx, sw = _draw_table(xs, ws)
        vals = sx / sw
        out["lo"], out["hi"] = _interval(vals, np.ones(len(vals)), level)
        out["exact"] = True
        return out
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    vals = xs[idx].sum(1) / ws[idx].sum(1)
    out["lo"], out["hi"] = _interval(vals, np.ones(n_boot), level)
    return out


def _strata_index(strata, count: int) -> list[np.ndarray]:
    """Indices of the clusters in each stratum (one stratum of all when ``strata`` is None), in order of
    first appearance."""
    if strata is None:
        return [np.arange(count)]
    strata = list(strata)
    if len(strata) != count:
        raise ValueError(f"{count} clusters but {len(strata)} strata labels")
    return [np.array([i for i, s in enumerate(strata) if s == g]) for g in dict.fromkeys(strata)]


def _cluster_stats(
    clusters: Sequence[tuple[np.ndarray, np.ndarray]], rng, n_boot: int, groups: list[np.ndarray] | None = None
) -> np.ndarray:
    """Monte-Carlo hierarchical resamples: within each stratum (``groups``: cluster indices), as many
    clusters as it has, with replacement, then units within each drawn cluster."""
    groups = groups or [np.arange(len(clusters))]
    out = np.empty(n_boot)
    for b in range(n_boot):
        sx = sw = 0.0
        for g in groups:
            for c in g[rng.integers(0, len(g), size=len(g))]:
                x, w = clusters[c]
                i = rng.integers(0, len(x), size=len(x))
                sx += x[i].sum()
                sw += w[i].sum()
        out[b] = sx / sw if sw > 0 else math.nan
    return out


def _cluster_exact(
    clusters: Sequence[tuple[np.ndarray, np.ndarray]], groups: list[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact distribution (values, probabilities) of the (stratified) hierarchical resample statistic,
    or None if too big: per stratum the joint law of (Σx, Σw) over its draws, then the strata summed."""
    groups = groups or [np.arange(len(clusters))]
    tx, tw, tp = np.zeros(1), np.zeros(1), np.ones(1)
    for g in groups:
        C = len(g)
        draws_x, draws_w, draws_p = [], [], []
        for c in g:  # one draw: a cluster of the stratum (prob 1/C), then one of its n^n unit resamples
            x, w = clusters[c]
            n = len(x)
            if n**n > 5000:
                return None
            sx, sw = _draw_table(x, w)
            draws_x.append(sx), draws_w.append(sw), draws_p.append(np.full(len(sx), 1.0 / (C * len(sx))))
        dx, dw, dp = map(np.concatenate, (draws_x, draws_w, draws_p))
        if len(tx) * len(dx) ** C > 200000:
            return None
        for _ in range(C):
            tx = (tx[:, None] + dx[None]).ravel()
            tw = (tw[:, None] + dw[None]).ravel()
            tp = (tp[:, None] * dp[None]).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        v = tx / tw
    keep = np.isfinite(v)
    return v[keep], tp[keep]


def cluster_bootstrap_ci(
    clusters: Sequence, level: float = 0.95, n_boot: int = 2000, seed: int = 0, strata: Sequence | None = None
) -> dict:
    """Hierarchical percentile bootstrap of Σx/Σw: resample clusters (seeds) with replacement, then the
    units (utterances) within each drawn cluster; the statistic pools the drawn units.

    ``strata`` (one label per cluster, e.g. the fold of each run): clusters are resampled within their
    stratum, each stratum keeping its number of clusters, so every stratum is in every draw.
    Exact enumeration for tiny inputs. Returns ``{"stat", "lo", "hi", "n", "clusters", "exact"}``.
    Example (exact): clusters A = (0, 1), B = (1, 1): one draw's sum T is 0, 1, 2 with P 1/8, 1/4, 5/8;
    the statistic (T1 + T2)/4 takes 0, 1/4, 1/2, 3/4, 1 with P (1, 4, 14, 20, 25)/64, so the 50 %
    interval is (1/2, 1) and the 90 % interval (1/4, 1). With A and B in strata of their own each is
    drawn once: T_A is 0, 1, 2 w.p. 1/4, 1/2, 1/4 and T_B = 2, so (T_A + 2)/4 is 1/2, 3/4, 1 w.p.
    1/4, 1/2, 1/4 and the 50 % interval is (1/2, 3/4)."""
    if strata is not None and len(strata) != len(clusters):
        raise ValueError(f"{len(clusters)} clusters but {len(strata)} strata labels")
    pairs = [(_as_cluster(c), g) for c, g in zip(clusters, strata if strata is not None else [0] * len(clusters))]
    pairs = [(c, g) for c, g in pairs if len(c[0])]
    cl = [c for c, _ in pairs]
    groups = _strata_index([g for _, g in pairs], len(cl)) if strata is not None else None
    n = int(sum(len(x) for x, _ in cl))
    out = {
        "stat": _ratio(np.concatenate([x for x, _ in cl]), np.concatenate([w for _, w in cl])) if cl else math.nan,
        "lo": math.nan,
        "hi": math.nan,
        "n": n,
        "clusters": len(cl),
        "exact": False,
    }
    if not cl:
        return out
    ex = _cluster_exact(cl, groups)
    if ex is not None:
        out["lo"], out["hi"] = _interval(ex[0], ex[1], level)
        out["exact"] = True
        return out
    vals = _cluster_stats(cl, np.random.default_rng(seed), n_boot, groups)
    vals = vals[np.isfinite(vals)]
    out["lo"], out["hi"] = _interval(vals, np.ones(len(vals)), level)
    return out


def _pair_clusters(
    a: Sequence, b: Sequence, strata: Sequence | None = None, keep_strata: list | None = None
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Aligned (xa, wa, xb, wb) per cluster; a unit is kept only where both systems have it (a cluster
    with none is dropped; ``keep_strata`` then receives the strata labels of the clusters kept)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples need the same clusters: {len(a)} vs {len(b)}")
    out = []
    labels = list(strata) if strata is not None else [0] * len(a)
    if len(labels) != len(a):
        raise ValueError(f"{len(a)} clusters but {len(labels)} strata labels")
    for ca, cb, lab in zip(a, b, labels):
        (xa, wa), (xb, wb) = [
            (np.asarray(c[0], np.float64), None if c[1] is None else np.asarray(c[1], np.float64))
            if isinstance(c, tuple)
            else (np.asarray(c, np.float64), None)
            for c in (ca, cb)
        ]
        wa = np.ones_like(xa) if wa is None else wa
        wb = np.ones_like(xb) if wb is None else wb
        if xa.shape != xb.shape:
            raise ValueError(f"paired clusters differ in length: {len(xa)} vs {len(xb)}")
        keep = np.isfinite(xa) & np.isfinite(wa) & np.isfinite(xb) & np.isfinite(wb)
        if keep.any():
            out.append((xa[keep], wa[keep], xb[keep], wb[keep]))
            if keep_strata is not None:
                keep_strata.append(lab)
    return out


def _diff(p) -> float:
    xa = np.concatenate([c[0] for c in p])
    wa = np.concatenate([c[1] for c in p])
    xb = np.concatenate([c[2] for c in p])
    wb = np.concatenate([c[3] for c in p])
    return _ratio(xb, wb) - _ratio(xa, wa)


def paired_permutation_p(a: Sequence, b: Sequence, level: str = "unit", n_perm: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value of stat(b) − stat(a) under exchangeability of the two systems within pairs.

    ``level="unit"``: each utterance pair (same prompt, same seed) is swapped independently;
    ``level="cluster"``: each cluster (seed) swaps as a whole. p = P(|T*| ≥ |T_obs|), enumerated
    exactly when there are at most 2^16 swap patterns, else (1 + #)/(1 + n_perm) by Monte Carlo.
    Example (unit, exact): a = (0, 0, 0), b = (1, 1, 0): T = 2/3; of the 8 sign patterns 4 give
    |T*| = 2/3, so p = 0.5; a = (0, 0, 0, 0), b = (1, 1, 1, 1) gives p = 2/16 = 0.125."""
    p = _pair_clusters(a, b)
    if not p:
        return math.nan
    t_obs = abs(_diff(p))
    if level == "unit":
        units = [(ci, j) for ci, c in enumerate(p) for j in range(len(c[0]))]
    elif level == "cluster":
        units = list(range(len(p)))
    else:
        raise ValueError(f"level must be 'unit' or 'cluster', got {level!r}")
    m = len(units)

    def stat(swap: np.ndarray) -> float:
        if level == "cluster":
            q = [(c[2], c[3], c[0], c[1]) if s else c for c, s in zip(p, swap)]
            return _diff(q)
        q, k = [], 0
        for xa, wa, xb, wb in p:
            s = swap[k : k + len(xa)].astype(bool)
            k += len(xa)
            q.append((np.where(s, xb, xa), np.where(s, wb, wa), np.where(s, xa, xb), np.where(s, wa, wb)))
        return _diff(q)

    tol = 1e-12 * max(1.0, t_obs)
    if m <= 16:
        pats = np.array(list(itertools.product((0, 1), repeat=m)), dtype=int)
        hits = sum(abs(stat(s)) >= t_obs - tol for s in pats)
        return float(hits / len(pats))
    rng = np.random.default_rng(seed)
    hits = sum(abs(stat(rng.integers(0, 2, size=m))) >= t_obs - tol for _ in range(n_perm))
    return float((1 + hits) / (1 + n_perm))


def paired_difference(
    a: Sequence,
    b: Sequence,
    level: float = 0.95,
    n_boot: int = 2000,
    n_perm: int = 5000,
    seed: int = 0,
    strata: Sequence | None = None,
) -> dict:
    """stat(b) − stat(a) of two systems judged on the same prompts (clusters and units aligned), with a
    hierarchical bootstrap interval (clusters, then units; the same draw for both systems; with
    ``strata`` the clusters are resampled within their stratum, as in :func:`cluster_bootstrap_ci`),
    the unit-level and the cluster-level paired permutation p-values.

    Returns ``{"diff", "lo", "hi", "p_perm", "p_perm_cluster", "n", "clusters"}``."""
    kept: list = []
    p = _pair_clusters(a, b, strata, kept)
    groups = _strata_index(kept, len(p))
    out = {
        "diff": math.nan,
        "lo": math.nan,
        "hi": math.nan,
        "p_perm": math.nan,
        "p_perm_cluster": math.nan,
        "n": int(sum(len(c[0]) for c in p)),
        "clusters": len(p),
    }
    if not p:
        return out
    out["diff"] = _diff(p)
    rng = np.random.default_rng(seed)
    vals = np.empty(n_boot)
    for i in range(n_boot):
        draw = []
        for g in groups:
            for c in g[rng.integers(0, len(g), size=len(g))]:
                xa, wa, xb, wb = p[c]
                j = rng.integers(0, len(xa), size=len(xa))
                draw.append((xa[j], wa[j], xb[j], wb[j]))
        vals[i] = _diff(draw)
    vals = vals[np.isfinite(vals)]
    if len(vals):
        out["lo"], out["hi"] = _interval(vals, np.ones(len(vals)), level)
    out["p_perm"] = paired_permutation_p(a, b, "unit", n_perm, seed)
    out["p_perm_cluster"] = paired_permutation_p(a, b, "cluster", n_perm, seed)
    return out


def variance_components(cells: dict) -> dict:
    """Nested random-effects ANOVA: reward-model seeds (A), optimiser seeds within them (B), utterances
    within a run (E); with 3-part keys also folds (F, held-out speakers) above the reward-model seeds.

    ``cells`` maps ``(rm_seed, opt_seed)`` (or ``(fold, rm_seed, opt_seed)``) to the per-utterance values
    of that run. With a RM seeds, b optimiser seeds each and n utterances per run (unequal counts use
    their means, an approximation): MS_A = b·n·Σ(ȳ_i − ȳ)²/(a−1), MS_B = n·ΣΣ(ȳ_ij − ȳ_i)²/(a(b−1)),
    MS_E = ΣΣΣ(y − ȳ_ij)²/(ab(n−1)); σ²_E = MS_E, σ²_B = (MS_B − MS_E)/n, σ²_A = (MS_A − MS_B)/(b·n),
    negatives reported as 0 (``raw`` keeps them); a component without replication (a = 1 or b = 1) is
    NaN, and the level above it is estimated against the next replicated one (it then holds both).
    With f folds: MS_F = a·b·n·Σ(ȳ_f − ȳ)²/(f−1) and σ²_F = (MS_F − MS_A)/(a·b·n), the lower levels
    pooled within folds (means of means at every level).
    Example: runs (0,0): (1, 3), (0,1): (3, 5), (1,0): (5, 7), (1,1): (7, 9): MS_A 32, MS_B 4, MS_E 2,
    so σ²_A = 7, σ²_B = 1, σ²_E = 2."""
    names = ["rm", "opt"]
    tree: dict = {}
    for key, v in cells.items():
        key = tuple(key)
        if len(key) == 3 and "fold" not in names:
            names = ["fold", "rm", "opt"]
        x = np.asarray(v, dtype=np.float64)
        x = x[np.isfinite(x)]
        if len(x):
            tree[key] = x
    depth = len(names)
    if any(len(k) != depth for k in tree):
        raise ValueError("cells keys must all be (rm, opt) or all (fold, rm, opt)")
    nan = math.nan
    if not tree:
        out = {"a": 0, "b": 0, "n": 0, "sigma2": {k: nan for k in [*names, "utt"]}}
        return out
    # node means bottom-up: a node's mean is the mean of its children's means
    means: list[dict] = [dict() for _ in range(depth + 1)]  # means[l][prefix of length l]
    for k, x in tree.items():
        means[depth][k] = float(x.mean())
    children: list[dict] = [dict() for _ in range(depth)]  # children[l][prefix l] = child prefixes (l+1)
    for l in range(depth, 0, -1):
        for k in means[l]:
            children[l - 1].setdefault(k[: l - 1], []).append(k)
        for k, ch in children[l - 1].items():
            means[l - 1][k] = float(np.mean([means[l][c] for c in ch]))
    # average branching below each level and utterances per leaf
    n = float(np.mean([len(x) for x in tree.values()]))
    branch = [float(np.mean([len(ch) for ch in children[l].values()])) for l in range(depth)]
    units_below = [0.0] * (depth + 1)  # units under a node at depth l
    units_below[depth] = n
    for l in range(depth - 1, -1, -1):
        units_below[l] = branch[l] * units_below[l + 1]
    ms, df, raw = {}, {}, {}
    df_e = sum(len(x) - 1 for x in tree.values())
    ss_e = sum(float(((x - x.mean()) ** 2).sum()) for x in tree.values())
    ms["utt"] = ss_e / df_e if df_e > 0 else nan
    df["utt"] = df_e
    for l in range(depth):  # the level of nodes at depth l + 1 (names[l])
        d = sum(len(ch) - 1 for ch in children[l].values())
        ss = units_below[l + 1] * sum((means[l + 1][c] - means[l][k]) ** 2 for k, ch in children[l].items() for c in ch)
        ms[names[l]] = ss / d if d > 0 else nan
        df[names[l]] = d
    below = "utt"
    for l in range(depth - 1, -1, -1):
        name = names[l]
        raw[name] = (ms[name] - ms[below]) / units_below[l + 1] if df[name] > 0 else nan
        if df[name] > 0:
            below = name
    raw["utt"] = ms["utt"]
    sig = {k: (max(v, 0.0) if not math.isnan(v) else v) for k, v in raw.items()}
    out = {
        "a": len(means[names.index("rm") + 1]) / max(1, len(means[names.index("rm")])),
        "b": branch[names.index("opt")],
        "n": n,
        "ms": {k: ms[k] for k in [*names, "utt"]},
        "df": {k: df[k] for k in [*names, "utt"]},
        "sigma2": {k: sig[k] for k in [*names, "utt"]},
        "raw": {k: raw[k] for k in [*names, "utt"]},
        "grand_mean": means[0][()],
    }
    if "fold" in names:
        out["f"] = len(means[1])
    return out


def design_half_width(sigma2: dict, n_rm: int, n_opt: int, n_utt: int, z: float = 1.96, n_fold: int = 1) -> float:
    """Normal-approximation 95 % half-width of a system's grand mean for a design of ``n_fold`` fixed
    folds × ``n_rm`` reward-model seeds × ``n_opt`` optimiser seeds × ``n_utt`` utterances per run:
    z·sqrt((σ²_A/a + σ²_B/(ab) + σ²_E/(abn))/f). The folds are the design's fixed held-out speakers, so
    σ²_fold is not in it. NaN components count as 0 (say so where it is used). Example: σ² = (7, 1, 2),
    design (2, 2, 2): variance 7/2 + 1/4 + 2/8 = 4, half-width 1.96·2 = 3.92; with 4 folds: 1.96·1."""
    s = {k: (0.0 if v is None or math.isnan(v) else v) for k, v in sigma2.items()}
    var = s["rm"] / n_rm + s["opt"] / (n_rm * n_opt) + s["utt"] / (n_rm * n_opt * n_utt)
    return float(z * math.sqrt(var / n_fold))


def unweighted_accuracy_ci(
    labels: Sequence, predictions: Sequence, level: float = 0.95, n_boot: int = 10000, seed: int = 0
) -> dict:
    """Stratified percentile bootstrap of unweighted accuracy (the mean of per-class recalls).

    Utterances are resampled with replacement within each true class (class sizes fixed), so the
    number correct in class k is Binomial(n_k, c_k/n_k) and UA* = mean_k of those counts over n_k. Exact
    (the distribution enumerated) when Π(n_k + 1) ≤ 200,000, else ``n_boot`` seeded draws.
    Example (exact): class a with (right, wrong), class b with (right): recall_a* is 0, 1/2, 1 w.p. 1/4,
    1/2, 1/4 and recall_b* = 1, so UA* is 1/2, 3/4, 1 w.p. 1/4, 1/2, 1/4; the 50 % interval is (1/2, 3/4)."""
    from math import comb

    y = list(labels)
    p = list(predictions)
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels but {len(p)} predictions")
    classes = sorted(set(y))
    out = {"ua": math.nan, "lo": math.nan, "hi": math.nan, "exact": False}
    if not classes:
        return out
    n = [sum(1 for t in y if t == k) for k in classes]
    c = [sum(1 for t, q in zip(y, p) if t == k and q == k) for k in classes]
    K = len(classes)
    out["ua"] = sum(ci / ni for ci, ni in zip(c, n)) / K
    if math.prod(m + 1 for m in n) <= 200000:
        vals, probs = np.zeros(1), np.ones(1)
        for ni, ci in zip(n, c):
            q = ci / ni
            pk = np.array([comb(ni, j) * q**j * (1 - q) ** (ni - j) for j in range(ni + 1)])
            vk = np.arange(ni + 1) / ni / K
            vals = (vals[:, None] + vk[None]).ravel()
            probs = (probs[:, None] * pk[None]).ravel()
        keep = probs > 0
        out["lo"], out["hi"] = _interval(np.round(vals[keep], 12), probs[keep], level)
        out["exact"] = True
        return out
    rng = np.random.default_rng(seed)
    draws = sum(rng.binomial(ni, ci / ni, size=n_boot) / ni for ni, ci in zip(n, c)) / K
    out["lo"], out["hi"] = _interval(draws, np.ones(n_boot), level)
    return out


def t_interval(d: list[float], level: float = 0.95) -> tuple[float, float]:
    """Student's t interval of the mean of ``d`` (n − 1 degrees of freedom); NaN for fewer than 2."""
    from scipy.stats import t

    x = np.asarray(d, dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    half = float(t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return float(x.mean()) - half, float(x.mean()) + half
