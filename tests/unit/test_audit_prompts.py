"""The audit's prompt set: texts x target emotions x samples per prompt."""

from __future__ import annotations

import pytest

from rrpo.audit.scorer import AuditPrompts, _prompt_set
from rrpo.config import load_config
from rrpo.data.manifest import Utterance, read_manifest, write_manifest
from rrpo.errors import ConfigError


def test_samples_repeat_every_prompt_worked_by_hand(tmp_path):
    """2 texts (max_texts 2 of 3) x 2 emotions x 3 samples = 12 rows; the first sample keeps the old
    id (t0_sad), the others add _k1, _k2; each row keeps its reference recording (or None)."""
    recs = [
        Utterance(f"u{i}_{e}", f"u{i}_{e}.wav", 16000, 1.0, f"text {i}", "spk", "en", e, "test")
        for i in range(3)
        for e in ("sad", "angry")
        if not (i == 1 and e == "angry")
    ]
    write_manifest(tmp_path / "m.jsonl", recs)
    man = read_manifest(tmp_path / "m.jsonl")
    rows = _prompt_set(AuditPrompts(max_texts=2, samples=3), man, ["sad", "angry"])
    assert [r["id"] for r in rows] == [
        "t0_sad",
        "t0_sad_k1",
        "t0_sad_k2",
        "t0_angry",
        "t0_angry_k1",
        "t0_angry_k2",
        "t1_sad",
        "t1_sad_k1",
        "t1_sad_k2",
        "t1_angry",
        "t1_angry_k1",
        "t1_angry_k2",
    ]
    assert [r["ref_id"] for r in rows[6:]] == ["u1_sad"] * 3 + [None] * 3
    assert [r["id"] for r in _prompt_set(AuditPrompts(max_texts=9), man, ["sad"])] == ["t0_sad", "t1_sad", "t2_sad"]
    with pytest.raises(ConfigError, match="prompts.samples"):
        load_config(AuditPrompts, None, ["samples=0"])
