"""Classification metrics of a judge: weighted/unweighted accuracy, per-class recall, calibration.

* ``wa`` (weighted accuracy): the fraction of utterances classified correctly.
* ``ua`` (unweighted accuracy): the mean over classes of per-class recall, so every class counts
  equally whatever its size (classes absent from the labels are left out of the mean).
* ``ece`` (expected calibration error, Guo et al. 2017): utterances are put in ``bins`` equal-width
  bins of their top-class confidence ``max_k p_k``; ECE = Σ_b (n_b / N) · |acc_b − conf_b|, where
  acc_b is the fraction correct and conf_b the mean confidence in bin b. Bin edges are
  ``(i/bins, (i+1)/bins]``, the first bin also taking 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE of (N, K) probabilities against (N,) integer labels."""
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y)
    if len(y) == 0:
        return float("nan")
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    idx = np.clip(np.ceil(conf * bins - 1e-9).astype(int) - 1, 0, bins - 1)  # bin (i/bins, (i+1)/bins]
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.sum() / len(y) * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def classification_metrics(labels: Sequence[str], proba: np.ndarray, classes: Sequence[str], bins: int = 15) -> dict:
    """n, wa, ua, per-class recall, ECE, confusion matrix (rows true, columns predicted, in ``classes`` order).

    ``labels`` outside ``classes`` are an error: filter them before (the judge cannot predict them).
    """
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    bad = sorted({l for l in labels if l not in index})
    if bad:
        raise ValueError(f"labels {bad} are not among the judge's classes {classes}")
    y = np.array([index[l] for l in labels], dtype=int)
    proba = np.asarray(proba, dtype=np.float64)
    pred = proba.argmax(axis=1) if len(y) else np.zeros(0, dtype=int)
    conf = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(conf, (y, pred), 1)
    recall = {c: (float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None) for i, c in enumerate(classes)}
    present = [r for r in recall.values() if r is not None]
    return {
        "n": int(len(y)),
        "wa": float((pred == y).mean()) if len(y) else float("nan"),
        "ua": float(np.mean(present)) if present else float("nan"),
        "recall": recall,
        "ece": expected_calibration_error(proba, y, bins),
        "classes": classes,
        "confusion": conf.tolist(),
    }
