"""Two judges' verdicts on the comparison's claims and their per-utterance agreement, worked by hand."""

import math

import pytest

from rrpo.audit.agreement import claim_status, direction, judge_verdicts, label_agreement


def test_direction():
    assert direction(-0.3, -0.01) == "down" and direction(0.02, 0.4) == "up"
    assert direction(-0.1, 0.1) == "unclear" and direction(-0.1, 0.0) == "unclear"
    assert direction(math.nan, 0.2) == "unclear"


def test_claim_status_by_hand():
    assert claim_status({"a": "supports", "b": "unclear"}) == {
        "status": "single-judge",
        "flagged": True,
        "supported_by": ["a"],
    }
    assert claim_status({"a": "supports", "b": "contradicts"})["status"] == "contradicted"
    assert claim_status({"a": "supports", "b": "supports"}) == {
        "status": "agreed",
        "flagged": False,
        "supported_by": ["a", "b"],
    }
    assert claim_status({"a": "unclear", "b": "contradicts"})["status"] == "unsupported"
    assert claim_status({"a": "n/a", "b": "n/a"})["status"] == "n/a"


def test_judge_verdicts_flag_a_claim_only_one_judge_supports():
    """eGeMAPS: DiffRO − SFT in [−0.2, −0.05] (down: supports 'DiffRO hacks'); log-mel: [−0.1, 0.05] (unclear)
    → single-judge, flagged. RRPO − DiffRO: eGeMAPS [0.01, 0.2] up, log-mel [−0.3, −0.02] down → contradicted.
    RRPO − SFT: both [−0.1, 0.1] → unsupported. With RRPO's proxy not up, 'RRPO hacks' is n/a."""
    paired = {
        "egemaps": {
            "diffro-sft": {"lo": -0.2, "hi": -0.05},
            "rrpo-diffro": {"lo": 0.01, "hi": 0.2},
            "rrpo-sft": {"lo": -0.1, "hi": 0.1},
        },
        "logmel": {
            "diffro-sft": {"lo": -0.1, "hi": 0.05},
            "rrpo-diffro": {"lo": -0.3, "hi": -0.02},
            "rrpo-sft": {"lo": -0.1, "hi": 0.1},
        },
    }
    v = judge_verdicts(paired, {"diffro": True, "rrpo": True})
    assert v["diffro_hacks"]["verdicts"] == {"egemaps": "supports", "logmel": "unclear"}
    assert v["diffro_hacks"]["status"] == "single-judge" and v["diffro_hacks"]["flagged"]
    assert v["rrpo_beats_diffro"]["status"] == "contradicted" and v["rrpo_beats_diffro"]["flagged"]
    assert v["rrpo_hacks"]["status"] == "unsupported" and not v["rrpo_hacks"]["flagged"]
    v = judge_verdicts(paired, {"diffro": True, "rrpo": False})
    assert v["rrpo_hacks"]["status"] == "n/a"
    both = {"egemaps": paired["egemaps"], "logmel": {**paired["logmel"], "diffro-sft": {"lo": -0.3, "hi": -0.1}}}
    assert judge_verdicts(both, {"diffro": True})["diffro_hacks"]["status"] == "agreed"


def test_label_agreement_kappa_by_hand():
    """a = (x, x, y, y), b = (x, y, y, y): p_o = 3/4, p_e = 1/2, kappa = 1/2."""
    r = label_agreement(["x", "x", "y", "y"], ["x", "y", "y", "y"])
    assert r["agreement"] == 0.75 and r["kappa"] == pytest.approx(0.5) and r["n"] == 4
    assert math.isnan(label_agreement([], [])["kappa"])
