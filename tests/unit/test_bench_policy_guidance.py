"""bench/policy_guidance.py's pooling of per-emotion judge accuracy, against values worked by hand."""

from __future__ import annotations

import pytest

from tests.unit.bench_loader import load_bench


def _bench():
    return load_bench("policy_guidance")


def test_recall_pools_per_emotion_accuracy_by_count():
    """Summary 1: angry 1 of 4 (0.25), happy 2 of 2 (1.0); summary 2: angry 3 of 6 (0.5).
    Pooled: angry (1 + 3) / 10 = 0.4, happy 1.0; emotions in the project's order (happy first)."""
    pts = [
        {"judge": {"per_emotion": {"angry": {"n": 4, "accuracy": 0.25}, "happy": {"n": 2, "accuracy": 1.0}}}},
        {"judge": {"per_emotion": {"angry": {"n": 6, "accuracy": 0.5}}}},
    ]
    r = _bench().recall(pts)
    assert list(r) == ["happy", "angry"]
    assert r["angry"] == pytest.approx(0.4) and r["happy"] == pytest.approx(1.0)
