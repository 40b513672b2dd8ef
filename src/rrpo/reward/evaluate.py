"""``rrpo rm eval``: metrics, calibration and robustness of a reward model on one labelled set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rrpo.config import option, section
from rrpo.errors import RrpoError
from rrpo.reward.attacks import AttackConfig, h_attack_accuracy, token_attack
from rrpo.reward.metrics import classification_metrics, predict


@dataclass
class EvalConfig:
    batch_size: int = option(32, "utterances per scoring batch")
    ece_bins: int = option(10, "confidence bins of the ECE")
    robustness: bool = option(True, "run the FGM/PGD and token attacks")
    attack: AttackConfig = section(AttackConfig, "attack settings")


def eval_columns(
    model_classes: Sequence[str], classes: Sequence[str] | None, present: set[str]
) -> tuple[list[str], list[int]]:
    """The evaluated classes and their logit columns: ``classes`` if given, else the model's classes
    that occur in the data (in the model's order)."""
    if classes:
        bad = [c for c in classes if c not in model_classes]
        if bad:
            raise RrpoError(f"class(es) {bad} are not classes of the reward model {list(model_classes)}")
        chosen = list(classes)
    else:
        chosen = [c for c in model_classes if c in present]
    if len(chosen) < 2:
        raise RrpoError(f"fewer than two evaluable classes ({chosen}); the model has {list(model_classes)}")
    return chosen, [list(model_classes).index(c) for c in chosen]


def evaluate_items(
    model, items, model_classes: Sequence[str], cfg: EvalConfig, classes: Sequence[str] | None = None, dropped: int = 0
) -> dict:
    """One JSON-able dict: metrics on the (possibly restricted) logits, robustness, and what was restricted.

    ``items`` carry labels as indices into ``model_classes``; items of classes outside the evaluated
    set are dropped (counted in ``dropped``)."""
    present = {model_classes[it.label] for it in items}
    chosen, cols = eval_columns(model_classes, classes, present)
    keep = [it for it in items if it.label in cols]
    dropped += len(items) - len(keep)
    if not keep:
        raise RrpoError("no utterance of the evaluated classes")
    restricted = len(cols) < len(model_classes)
    columns = cols if restricted else None
    probs, labels = predict(model, keep, columns, cfg.batch_size)
    out = {
        "n": len(keep),
        "classes": chosen,
        "restricted_logits": restricted,
        "note": (
            f"logits restricted to {len(cols)} of the model's {len(model_classes)} classes"
            if restricted
            else "all model classes"
        ),
        "dropped_other_emotions": dropped,
    }
    out.update(classification_metrics(probs, labels, cfg.ece_bins))
    cm = out["confusion"]
    out["recall"] = {c: (cm[k][k] / sum(cm[k]) if sum(cm[k]) else None) for k, c in enumerate(chosen)}
    out["predicted_share"] = {c: sum(row[k] for row in cm) / len(keep) for k, c in enumerate(chosen)}
    if cfg.robustness:
        torch.manual_seed(cfg.attack.seed)
        if hasattr(model, "encode"):  # one model; an ensemble has no single h' to perturb
            h = h_attack_accuracy(model, keep, cfg.attack, columns)
            out["fgm_acc"] = h["fgm"]
            out["pgd_acc"] = h["pgd"]
            out["h_attack_n"] = h["n"]
            out["h_attack_clean_acc"] = h["clean"]
            out["eps_mode"] = cfg.attack.eps_mode
        t = token_attack(model, keep, cfg.attack, columns)
        out["token_attack"] = t
    return out
