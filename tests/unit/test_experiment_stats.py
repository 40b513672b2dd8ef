"""The experiment's intervals, paired differences and variance components from per-utterance audit rows,
worked by hand on two seeds × two utterances."""

from __future__ import annotations

import json
import math

import pytest

from rrpo.experiment import DEFAULT_SYSTEMS, ExperimentConfig, write_results
from rrpo.experiment_stats import comparison_stats, utterance_values

from tests.unit.test_experiment import _fake_run

DET = ("clicks", "bursts", "clipping", "silence", "repetition")


def rows(correct, clicks=(0, 0), dur=(1.0, 1.0), mcd=(10.0, 12.0)):
    return [
        {
            "id": f"t{i}_sad",
            "judge_correct": bool(c),
            "judge_target_prob": 0.5 * c + 0.1,
            **{f"{k}_events": (clicks[i] if k == "clicks" else 0) for k in DET},
            "duration_s": dur[i],
            "mcd_db": mcd[i],
        }
        for i, c in enumerate(correct)
    ]


def points():
    """seed 0: SFT (0, 0), DiffRO (0, 0), RRPO (1, 1); seed 1: SFT (0, 1), DiffRO (0, 0), RRPO (1, 1)."""
    sft = {0: (0, 0), 1: (0, 1)}
    return {
        "sft": [(s, {"utterances": rows(sft[s])}) for s in (0, 1)],
        "diffro": [(s, {"utterances": rows((0, 0), clicks=(1, 1), dur=(1.0, 3.0))}) for s in (0, 1)],
        "rrpo": [(s, {"utterances": rows((1, 1))}) for s in (0, 1)],
    }


def test_utterance_values_artifacts_are_events_over_seconds():
    v = utterance_values({"utterances": rows((0, 1), clicks=(2, 0), dur=(4.0, 2.0))}, "artifacts")
    assert v == {"t0_sad": (2.0, 4.0), "t1_sad": (0.0, 2.0)}
    assert utterance_values({"utterances": rows((0, 1))}, "judge_acc") == {"t0_sad": (0.0, 1.0), "t1_sad": (1.0, 1.0)}
    assert utterance_values({}, "judge_acc") == {}


def test_comparison_stats_by_hand():
    """SFT judge accuracy: clusters A = (0, 0), B = (0, 1), pooled 1/4. One hierarchical draw's sum T is 0 w.p.
    1/2 + 1/8 = 5/8, 1 w.p. 1/4, 2 w.p. 1/8; (T1 + T2)/4 is 0, 1/4, 1/2, 3/4, 1 w.p. (25, 20, 14, 4, 1)/64,
    CDF at 3/4 = 63/64 ≥ .975 → 95 % interval [0, 3/4].
    RRPO − DiffRO: every pair differs by 1 → diff 1, interval [1, 1]; unit-level p = 2/2^4 = 0.125, seed-level
    2/2^2 = 0.5. DiffRO − SFT: one pair differs (by 1) → diff −1/4, every swap pattern gives |T*| = 1/4 → p = 1.
    DiffRO artifacts: 2 events per seed in 4 s → 0.5 /s.
    SFT variance (one RM seed; optimiser seeds (0, 0) and (0, 1)): MS_E = (0 + 0.5)/2 = 0.25, MS_B =
    2·((0 − .25)² + (.5 − .25)²)/1 = 0.25 → σ²_opt = 0, σ²_utt = 0.25, σ²_rm n/a."""
    st = comparison_stats(points(), n_boot=300, n_perm=100)
    a = st["intervals"]["sft"]["judge_acc"]
    assert (a["stat"], a["lo"], a["hi"], a["n"], a["clusters"]) == (0.25, 0.0, 0.75, 4, 2)
    r = st["intervals"]["rrpo"]["judge_acc"]
    assert (r["stat"], r["lo"], r["hi"], r["lo_utt"], r["hi_utt"]) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert st["intervals"]["diffro"]["artifacts"]["stat"] == 0.5
    d = st["paired"]["rrpo-diffro"]["judge_acc"]
    assert (d["diff"], d["lo"], d["hi"]) == (1.0, 1.0, 1.0)
    assert d["p_perm"] == pytest.approx(0.125) and d["p_perm_cluster"] == pytest.approx(0.5)
    d = st["paired"]["diffro-sft"]["judge_acc"]
    assert d["diff"] == -0.25 and d["p_perm"] == 1.0
    v = st["variance"]["sft"]["judge_acc"]
    assert v["sigma2"]["opt"] == 0.0 and v["sigma2"]["utt"] == pytest.approx(0.25)
    assert math.isnan(v["sigma2"]["rm"]) and not v["rm_estimated"]
    assert v["half_width"]["2x3x1x200"] == pytest.approx(1.96 * math.sqrt(0.25 / 600 / 2))
    # B - A predicted as independent systems, sqrt(hw_A^2 + hw_B^2). DiffRO and RRPO are all 0 and all
    # 1 (every variance component 0, half-width 0), so DiffRO - SFT is SFT's own half-width,
    # 1.96 * sqrt(0.25 / (3 * 200) / 2) = 1.96 * 0.0144338 = 0.0282902, and RRPO - DiffRO is 0
    hw = st["paired"]["diffro-sft"]["judge_acc"]["half_width_design"]
    assert hw["2x3x1x200"] == pytest.approx(0.0282902, abs=1e-7)
    assert st["paired"]["rrpo-diffro"]["judge_acc"]["half_width_design"]["2x3x1x200"] == 0.0
    assert math.isnan(v["sigma2"]["fold"])  # one fold: not replicated


def test_results_carry_intervals_and_paired_differences(tmp_path):
    """The fake run of test_experiment with per-utterance rows added: results.json has 'stats' and table.md
    the interval and paired-difference tables."""
    _fake_run(tmp_path)
    pts = points()
    for s in (0, 1):
        for m in ("diffro", "rrpo"):
            f = tmp_path / "runs" / f"{m}_s{s}" / "audit" / "audit.json"
            aud = json.loads(f.read_text())
            aud["start"]["utterances"] = pts["sft"][s][1]["utterances"]
            aud["final"]["utterances"] = pts[m][s][1]["utterances"]
            f.write_text(json.dumps(aud))
    res = write_results(
        tmp_path,
        ExperimentConfig(
            seeds=[0, 1],
            n_boot=200,
            n_perm=100,
            systems={k: DEFAULT_SYSTEMS[k] for k in ("diffro", "rrpo")},
            heldout_speakers=["ZhaoZuoxiang"],
        ),
    )
    assert res["stats"]["paired"]["rrpo-diffro"]["judge_acc"]["diff"] == 1.0
    table = (tmp_path / "results" / "table.md").read_text()
    assert "| SFT (start) | 4 | 25.0 [0.0, 75.0]" in table
    assert "| RRPO (robust RM) − DiffRO (vanilla RM) | 100.0 [100.0, 100.0] p 0.125 / 0.5 |" in table
    assert "σ² optimiser seed" in table
    saved = json.loads((tmp_path / "results" / "results.json").read_text())
    assert saved["stats"]["intervals"]["sft"]["judge_acc"]["hi"] == 0.75


class LoudnessJudge:
    """A stand-in second judge: peak amplitude ≥ 0.3 → angry, else neutral (never sad)."""

    classes = ("neutral", "angry", "sad")
    calibrated: list = []  # (peak, group) of every item the judge's statistics were taken from

    def group_stats(self, items, groups=None):
        import numpy as np

        LoudnessJudge.calibrated += [(round(float(np.abs(a).max()), 3), g) for (a, _), g in zip(items, groups)]
        return {"*": (0.0, 1.0)}

    def predict_proba(self, items, groups=None, stats=None):
        import numpy as np

        return np.array([[0.1, 0.9, 0.0] if np.abs(a).max() >= 0.3 else [0.9, 0.1, 0.0] for a, _ in items])


def test_second_judge_rejudges_wavs_and_flags_a_single_judge_claim(tmp_path):
    """Two seeds, utterances t0_neutral and t1_angry. First judge (audit rows): SFT and DiffRO label both 'sad'
    (wrong), RRPO labels both right → RRPO − DiffRO = 1 [1, 1]: 'up', supports 'RRPO beats DiffRO'.
    Second judge on the WAVs: SFT and DiffRO are quiet (0.1) → both 'neutral' → accuracy 1/2; RRPO says
    t1 loud (0.5) → both right → 1. RRPO − DiffRO per pair (0, 1) in both seeds: +1/2; a hierarchical draw is
    0 when both drawn seeds resample to (0, 0) (P 1/16 > 2.5 %), so its interval holds 0: 'unclear' → the claim
    is single-judge and flagged. Label agreement on RRPO: identical labels → 1, kappa 1; on SFT: (sad, sad)
    vs (neutral, neutral) → 0, and p_e = 0 → kappa 0."""
    import numpy as np

    from rrpo.audit.judge import register_judge_kind
    from rrpo.cli import main
    from rrpo.data.audio import save_audio
    from rrpo.experiment import build_stages

    register_judge_kind("loudness-test", lambda folder, meta: LoudnessJudge())
    _fake_run(tmp_path)
    (tmp_path / "judge2" / "eval").mkdir(parents=True)
    (tmp_path / "judge2" / "judge.json").write_text(
        json.dumps({"kind": "loudness-test", "classes": ["neutral", "angry", "sad"]})
    )
    (tmp_path / "judge2" / "eval" / "casia_heldout.json").write_text(json.dumps({"n": 250, "wa": 0.5, "ua": 0.5}))
    sr = 16000
    for s in (0, 1):
        for m in ("diffro", "rrpo"):
            d = tmp_path / "runs" / f"{m}_s{s}" / "audit"
            aud = json.loads((d / "audit.json").read_text())
            for key, step in (("start", 0), ("final", 8)):
                right = m == "rrpo" and key == "final"
                aud[key]["utterances"] = [
                    {
                        "id": f"t{i}_{e}",
                        "emotion": e,
                        "judge_pred": e if right else "sad",
                        "judge_correct": right,
                        "judge_target_prob": 0.5,
                    }
                    for i, e in enumerate(("neutral", "angry"))
                ]
                for i, e in enumerate(("neutral", "angry")):
                    amp = 0.5 if (right and e == "angry") else 0.1
                    save_audio(
                        d / "audio" / f"step_{step}" / f"t{i}_{e}.wav",
                        (amp * np.sin(np.arange(sr // 2) / 10)).astype(np.float32),
                        sr,
                    )
            # the anchor: the held-out speaker's real recordings through the codec (amplitude 0.2 here)
            anchor_dir = tmp_path / "anchor" / f"s{s}"
            for i in range(3):
                save_audio(anchor_dir / f"a{i}.wav", (0.2 * np.sin(np.arange(sr // 2) / 10)).astype(np.float32), sr)
            aud["anchor"] = {"audio": str(anchor_dir), "ids": ["a0", "a1", "a2"], "speakers": ["spk"] * 3}
            (d / "audit.json").write_text(json.dumps(aud))
    LoudnessJudge.calibrated.clear()
    cfg = ExperimentConfig(
        content="spectral",
        seeds=[0, 1],
        n_boot=300,
        n_perm=100,
        systems={k: v for k, v in DEFAULT_SYSTEMS.items() if k in ("diffro", "rrpo")},
        heldout_speakers=["ZhaoZuoxiang"],
    )
    stages = {st.name: st for st in build_stages(cfg, tmp_path, tmp_path, main)}
    stages["judges"].action()
    # the second judge was calibrated on the anchor's WAVs only (never on the policy's own samples)
    assert LoudnessJudge.calibrated and set(LoudnessJudge.calibrated) == {(0.2, "spk")}
    res = write_results(tmp_path, cfg)
    j2 = res["second_judge"]
    assert j2["intervals"]["sft"]["judge_acc"]["stat"] == 0.5 and j2["intervals"]["rrpo"]["judge_acc"]["stat"] == 1.0
    assert j2["paired"]["rrpo-diffro"]["judge_acc"]["diff"] == 0.5
    assert j2["paired"]["rrpo-diffro"]["judge_acc"]["lo"] == 0.0
    assert j2["label_agreement"]["rrpo"] == {"n": 4, "agreement": 1.0, "kappa": 1.0}
    assert j2["label_agreement"]["sft"]["agreement"] == 0.0 and j2["label_agreement"]["sft"]["kappa"] == 0.0
    c = j2["claims"]["rrpo_beats_diffro"]
    assert c["verdicts"] == {"egemaps": "supports", "logmel": "unclear"} and c["status"] == "single-judge"
    assert c["flagged"]
    table = (tmp_path / "results" / "table.md").read_text()
    assert (
        "| RRPO beats DiffRO | RRPO (robust RM) − DiffRO (vanilla RM) | supports | unclear | single-judge (**flagged**) |"
        in table
    )
    assert "| casia_heldout | ZhaoZuoxiang | 250 | 50.0 | 50.0 |" in table


def test_comparison_stats_two_folds_by_hand():
    """The points above, with the two runs as two folds (A, B) of seed 0 instead of two seeds of one fold.
    SFT judge accuracy: clusters A = (0, 0), B = (0, 1), each fold drawn once per resample: T_A = 0, T_B is
    0, 1, 2 w.p. 1/4, 1/2, 1/4, so the statistic T_B/4 is 0, 1/4, 1/2 w.p. 1/4, 1/2, 1/4: 95 % interval
    [0, 1/2] (one fold: [0, 3/4]); per fold 0 and 1/2. RRPO − DiffRO pairs within fold × seed only:
    diff 1, [1, 1], unit-level p = 2/2^4, run-level p = 2/2^2. Variance: fold means 0 and 1/2, MS_F =
    2·((0 − 1/4)² + (1/2 − 1/4)²)/1 = 1/4 = MS_E → σ²_fold = 0; RM and optimiser seeds not replicated."""
    one = points()
    pts = {m: [((f, 0), p) for f, (_, p) in zip("AB", runs)] for m, runs in one.items()}
    st = comparison_stats(pts, n_boot=300, n_perm=100)
    a = st["intervals"]["sft"]["judge_acc"]
    assert (a["stat"], a["lo"], a["hi"], a["n"], a["clusters"]) == (0.25, 0.0, 0.5, 4, 2)
    assert a["folds"] == {"A": 0.0, "B": 0.5}
    from rrpo.experiment_stats import stats_markdown

    assert "| SFT | 4 | 0.0 / 50.0 | 25.0 [0.0, 50.0] " in "\n".join(stats_markdown(st, {"sft": "SFT"}))
    d = st["paired"]["rrpo-diffro"]["judge_acc"]
    assert (d["diff"], d["lo"], d["hi"], d["clusters"]) == (1.0, 1.0, 1.0, 2)
    assert d["p_perm"] == pytest.approx(0.125) and d["p_perm_cluster"] == pytest.approx(0.5)
    v = st["variance"]["sft"]["judge_acc"]
    assert v["sigma2"]["fold"] == 0.0 and v["ms"]["fold"] == pytest.approx(0.25) and v["sigma2"]["utt"] == 0.25
    assert math.isnan(v["sigma2"]["rm"]) and math.isnan(v["sigma2"]["opt"])
    # a DiffRO run of fold A is never paired with fold B's SFT of the same seed
    lone = {"sft": [(("A", 0), one["sft"][0][1])], "diffro": [(("B", 0), one["diffro"][0][1])]}
    assert comparison_stats(lone, n_boot=50, n_perm=20)["paired"]["diffro-sft"] == {}
