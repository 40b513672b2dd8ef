"""Over-optimisation along a whole path of audited checkpoints: the two hacking flags and their noise.

Every checkpoint of a run is scored on the same prompts with the same sampling seeds, so each
per-utterance figure forms a (points, utterances) matrix whose columns are paired across points.
Utterances of one prompt text share a *cluster*; sampling noise is estimated by resampling whole
clusters with replacement (a cluster bootstrap, ``n_boot`` draws, seeded).

**Emotion flag** (the judge falls after its peak while the proxy rises). At point i, the peak is the
best judge score among points 0..i and the drop D_i = max_{p≤i} J_p − J_i. Picking the best of many
noisy points makes D_i positive by chance alone, so the margin is the 95th percentile of D_i's
distribution under "no change", estimated from centred resamples:
m_i = q95_b [max_{p≤i} (J_p^b − J_p) − (J_i^b − J_i)] (a max-statistic test, which accounts for the
choice of the peak). Point i is flagged when D_i > m_i and the proxy at i is above the proxy at the
peak. The drop's interval is the percentile interval of J_peak^b − J_i^b.

**Naturalness flag** (speech degrades beyond what real speech shows while the proxy rises). For each
naturalness signal s (artifact events per second, token repetition, typicality distance, atypical
share, the phone error rate when the audit has a phone judge, and any other the caller gives, lower =
better), point i is flagged on s when
(a) s rose from step 0 beyond its noise: S_i − S_0 > q95_b [(S_i^b − S_i) − (S_0^b − S_0)],
(b) S_i is above the real recordings' range: S_i > the upper end of the 95 % interval of the same
signal on real recordings (``real``), and (c) the proxy at i is above the proxy at step 0.

A signal's value at a point is a ratio of sums over utterances, Σ num / Σ den (den = 1 per utterance
for a plain mean; seconds for a rate per second; reference phonemes for the phone error rate), and so
is every resample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

Q = 0.95


def cluster_weights(clusters: Sequence, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, U) utterance weights of a cluster bootstrap: each draw picks as many clusters as there
    are, with replacement, and an utterance weighs the number of times its cluster was picked."""
    keys, inv = np.unique(np.asarray([str(c) for c in clusters], dtype=object), return_inverse=True)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(keys), size=(n_boot, len(keys)))
    counts = np.zeros((n_boot, len(keys)))
    np.add.at(counts, (np.arange(n_boot)[:, None], picks), 1.0)
    return counts[:, inv]


def _ratio(num: np.ndarray, den: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Σ w·num / Σ w·den along the last axis (NaN where the weighted den is 0); num, den (P, U)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if w is None:
        n, d = num.sum(-1), den.sum(-1)
    else:  # w (B, U) -> (B, P)
        n, d = w @ num.T, w @ den.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, n / np.where(d > 0, d, 1.0), np.nan)


def emotion_flags(
    judge: np.ndarray, proxy: Sequence[float], clusters: Sequence, n_boot: int = 1000, seed: int = 0
) -> list[dict]:
    """Per point (module docstring): ``{flag, peak, drop, margin, drop_ci}``; ``judge`` (P, U) per-utterance
    scores (1 correct / 0 wrong, or p(target)), ``proxy`` (P,) the proxy's mean at each point."""
    J = np.asarray(judge, dtype=np.float64)
    P = len(J)
    w = cluster_weights(clusters, n_boot, seed)
    den = np.ones_like(J)
    j = _ratio(J, den)  # (P,)
    jb = _ratio(J, den, w)  # (B, P)
    centred = jb - j[None, :]
    out = []
    for i in range(P):
        peak = int(np.argmax(j[: i + 1]))
        drop = float(j[peak] - j[i])
        null = centred[:, : i + 1].max(axis=1) - centred[:, i]
        margin = float(np.quantile(null, Q))
        diffs = jb[:, peak] - jb[:, i]
        lo, hi = np.quantile(diffs, [(1 - Q) / 2, 1 - (1 - Q) / 2])
        flag = bool(drop > margin and proxy[i] > proxy[peak])
        out.append({"flag": flag, "peak": peak, "drop": drop, "margin": margin, "drop_ci": [float(lo), float(hi)]})
    return out


def naturalness_flags(
    signals: Mapping[str, tuple[np.ndarray, np.ndarray]],
    real: Mapping[str, float],
    proxy: Sequence[float],
    clusters: Sequence,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict]:
    """Per point (module docstring): ``{flag, signals: {name: {value, rise, margin, real_hi, flag}}}``.

    ``signals[name]`` = (num, den), each (P, U); ``real[name]`` = the upper end of the real recordings'
    95 % interval of that signal (a signal without one cannot flag)."""
    w = cluster_weights(clusters, n_boot, seed)
    per = {}
    for name, (num, den) in signals.items():
        v = _ratio(num, den)
        vb = _ratio(num, den, w) - v[None, :]
        per[name] = (v, vb)
    out = []
    for i in range(len(proxy)):
        sig = {}
        for name, (v, vb) in per.items():
            rise = float(v[i] - v[0])
            margin = float(np.nanquantile(vb[:, i] - vb[:, 0], Q)) if i else 0.0
            hi = real.get(name, math.nan)
            f = bool(i and rise > margin and np.isfinite(hi) and v[i] > hi and proxy[i] > proxy[0])
            sig[name] = {"value": float(v[i]), "rise": rise, "margin": margin, "real_hi": float(hi), "flag": f}
        out.append({"flag": any(s["flag"] for s in sig.values()), "signals": sig})
    return out


def interval(num: np.ndarray, den: np.ndarray, clusters: Sequence, n_boot: int = 1000, seed: int = 0) -> dict:
    """Estimate and 95 % cluster-bootstrap interval of Σ num / Σ den over utterances (num, den (U,))."""
    num = np.asarray(num, dtype=np.float64)[None]
    den = np.asarray(den, dtype=np.float64)[None]
    ok = np.isfinite(num[0]) & np.isfinite(den[0])
    if not ok.any():
        return {"stat": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    num, den = num[:, ok], den[:, ok]
    cl = [c for c, k in zip(clusters, ok) if k]
    est = float(_ratio(num, den)[0])
    b = _ratio(num, den, cluster_weights(cl, n_boot, seed))[:, 0]
    lo, hi = np.nanquantile(b, [(1 - Q) / 2, 1 - (1 - Q) / 2])
    return {"stat": est, "lo": float(lo), "hi": float(hi), "n": int(ok.sum())}
