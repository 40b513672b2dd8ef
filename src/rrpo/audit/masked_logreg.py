"""Multinomial logistic regression with a per-example mask of the classes it may be assigned.

A judge trained on several corpora meets corpora that lack a class (Urdu and ASED have no
``surprise``). With a plain softmax every Urdu utterance would push ``surprise`` down, so the judge
would learn "this corpus's acoustics are not surprise", a corpus quirk. Here the softmax of example
``i`` runs only over ``mask[i]`` (the classes its corpus has), so an example never teaches anything
about a class its corpus could not have shown:

    p_ik = exp(z_ik) / Σ_{j ∈ mask_i} exp(z_ij)     for k ∈ mask_i,   z_i = W x_i + b
    L(W, b) = Σ_i w_i · (−log p_i,y_i) + ‖W‖² / (2C)

(``w_i`` the sample weight; the intercept is not penalised, as in scikit-learn, whose optimum this
equals when every mask is full). Minimised with L-BFGS on the exact gradient
``∂L/∂z_ik = w_i (p_ik − [k = y_i])`` (zero for masked-out k).
"""

from __future__ import annotations

import numpy as np

from rrpo.errors import RrpoError


def masked_softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, K) probabilities over each row's allowed classes (0 elsewhere)."""
    z = np.where(mask, logits, -np.inf)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def masked_loss_grad(
    params: np.ndarray, x: np.ndarray, y: np.ndarray, mask: np.ndarray, weight: np.ndarray, c: float
) -> tuple[float, np.ndarray]:
    """Loss and gradient of the module's objective; ``params`` = W (K, D) flattened, then b (K,)."""
    n, d = x.shape
    k = mask.shape[1]
    w = params[: k * d].reshape(k, d)
    b = params[k * d :]
    p = masked_softmax(x @ w.T + b, mask)
    nll = -np.log(np.maximum(p[np.arange(n), y], 1e-300))
    loss = float((weight * nll).sum() + (w * w).sum() / (2 * c))
    dz = p.copy()
    dz[np.arange(n), y] -= 1.0
    dz *= weight[:, None]
    gw = dz.T @ x + w / c
    gb = dz.sum(0)
    return loss, np.concatenate([gw.ravel(), gb])


def fit_masked_logreg(
    x: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    c: float,
    sample_weight: np.ndarray | None = None,
    max_iter: int = 5000,
) -> tuple[np.ndarray, np.ndarray]:
    """(coef (K, D), intercept (K,)) minimising the module's objective. Every label must be allowed by its mask."""
    from scipy.optimize import minimize

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    mask = np.asarray(mask, dtype=bool)
    n, d = x.shape
    k = mask.shape[1]
    if mask.shape[0] != n or len(y) != n:
        raise RrpoError(f"masked logistic regression: {n} examples, {len(y)} labels, mask {mask.shape}")
    if not mask[np.arange(n), y].all():
        raise RrpoError("masked logistic regression: an example's label is outside its allowed classes")
    weight = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    res = minimize(
        masked_loss_grad,
        np.zeros(k * d + k),
        args=(x, y, mask, weight, float(c)),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": int(max_iter), "gtol": 1e-6},
    )
    return res.x[: k * d].reshape(k, d), res.x[k * d :]


def balanced_weights(y: np.ndarray, k: int) -> np.ndarray:
    """scikit-learn's ``class_weight='balanced'`` per example: n / (K_present · count(y_i))."""
    y = np.asarray(y, dtype=int)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    present = int((counts > 0).sum())
    return len(y) / (present * counts[y])
