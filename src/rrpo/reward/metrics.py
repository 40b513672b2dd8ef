"""Classification metrics of the reward model, computed from (N, K) probabilities and (N,) labels.

- ``wa`` (weighted accuracy): overall accuracy, correct / N (each utterance weighs the same).
- ``ua`` (unweighted accuracy): mean over classes present in the labels of per-class recall.
- ``macro_f1``: mean over classes present in the labels of 2·P·R/(P+R) (0 where P+R = 0).
- ``confusion``: K×K counts, rows = true class, columns = predicted class.
- ``ece``: expected calibration error, confidence = max probability, ``bins`` equal-width bins on
  [0, 1]: Σ_b (n_b/N)·|accuracy_b − mean confidence_b|.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rrpo.precision import bf16_autocast


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, K: int) -> torch.Tensor:
    """(K, K) int64 counts, rows true, columns predicted."""
    cm = torch.zeros(K, K, dtype=torch.long)
    cm.index_put_((labels.long(), pred.long()), torch.ones_like(labels, dtype=torch.long), accumulate=True)
    return cm


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, bins: int = 10) -> dict:
    """wa, ua, macro_f1, confusion, ece (see module doc) of (N, K) probabilities and (N,) labels."""
    K = probs.shape[1]
    pred = probs.argmax(-1)
    cm = confusion_matrix(pred, labels, K).double()
    support = cm.sum(1)  # (K,) true counts
    present = support > 0
    recall = cm.diag() / support.clamp_min(1)
    predicted = cm.sum(0)
    precision = cm.diag() / predicted.clamp_min(1)
    f1 = torch.where(
        precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12), torch.zeros_like(recall)
    )
    return {
        "wa": float(cm.diag().sum() / cm.sum()),
        "ua": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "confusion": cm.long().tolist(),
        "ece": expected_calibration_error(probs, labels, bins),
    }


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 10) -> float:
    """ECE with equal-width confidence bins (a confidence of exactly 1 falls in the last bin)."""
    conf, pred = probs.max(-1)
    correct = (pred == labels).double()
    idx = torch.clamp((conf * bins).long(), max=bins - 1)
    N = len(labels)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        if n:
            ece += n / N * abs(float(correct[m].mean()) - float(conf[m].double().mean()))
    return ece


@torch.no_grad()
def predict(
    model, items: Sequence, columns: Sequence[int] | None = None, batch_size: int = 32, bf16: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities (N, K') over ``columns`` of the logits (all classes when None) and labels (N,).

    Labels are the items' class indices mapped into ``columns`` positions."""
    from rrpo.reward.data import collate

    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for a in range(0, len(items), batch_size):
        b = collate(items[a : a + batch_size], 0, random_crop=False)
        with bf16_autocast(dev, bf16):
            logits = model(b["tokens"].to(dev), b["lens"].to(dev)).float()
        if columns is not None:
            logits = logits[:, list(columns)]
        out.append(torch.softmax(logits, -1).cpu())
    model.train(was)
    labels = torch.tensor([it.label for it in items])
    if columns is not None:
        pos = {c: i for i, c in enumerate(columns)}
        labels = torch.tensor([pos[int(l)] for l in labels])
    return torch.cat(out), labels
