"""``rrpo experiment``'s over-optimisation study: its config, the stages its settings multiply, the
one-line errors for bad settings, and ``results/overopt.json`` computed from hand-made audits (every
figure worked by hand in the docstrings)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rrpo.cli import build_parser, main
from rrpo.config import load_config
from rrpo.errors import ConfigError
from rrpo.experiment import DEFAULT_SYSTEMS, ExperimentConfig, build_stages, expand_force, write_overopt

REPO = Path(__file__).resolve().parents[2]
THREE = {k: DEFAULT_SYSTEMS[k] for k in ("diffro", "rrpo", "rrpo_ensemble")}
TWO = {k: DEFAULT_SYSTEMS[k] for k in ("diffro", "rrpo")}
FOLDS = ["ZhaoZuoxiang", "liuchanhg"]


def _study(**kw) -> ExperimentConfig:
    base = dict(content="spectral", study="overoptimisation", second_judge="none", systems=THREE)
    return ExperimentConfig(**{**base, **kw})


# ------------------------------------------------------------------------------------------ config
def test_the_study_config_sets_its_own_keys_and_inherits_the_rest():
    """configs/overoptimisation.yaml: the study, three systems, β ∈ {0.1, 0}, 2 seeds × 2 folds, pushed
    further than the comparison (learning rate × steps); every key it does not set is the comparison's default (content: spectral among them)."""
    import dataclasses

    import yaml

    path = REPO / "configs" / "overoptimisation.yaml"
    cfg = load_config(ExperimentConfig, path)
    assert cfg.study == "overoptimisation" and list(cfg.systems) == ["diffro", "rrpo", "rrpo_ensemble"]
    assert cfg.settings == {"beta0.1": ["beta=0.1"], "beta0": ["beta=0"]}
    assert len(cfg.seeds) >= 2 and len(cfg.heldout_speakers) >= 2 and cfg.second_judge == "none"

    def last(overrides, key):
        return [float(o.split("=")[1]) for o in overrides if o.startswith(key + "=")][-1]

    push = last(cfg.optimize, "train.steps") * last(cfg.optimize, "train.lr")
    comparison = ExperimentConfig().optimize
    assert push >= 2.5 * last(comparison, "train.steps") * last(comparison, "train.lr")  # well past its budget
    set_here = set(yaml.safe_load(path.read_text()))
    default = ExperimentConfig()
    for f in dataclasses.fields(ExperimentConfig):
        if f.name not in set_here:
            assert getattr(cfg, f.name) == getattr(default, f.name), f.name
    assert cfg.content == "spectral" and cfg.transcribed == {}


@pytest.mark.parametrize(
    "over, message",
    [
        (["settings={'bad name': [beta=0]}"], r"config key 'settings': 'bad name' is not a plain name"),
        (["settings={b: [beta=-1]}"], r"config key 'settings.b' \(overrides for OptimizeConfig\).*beta"),
        (["settings={b: [no_such_key=1]}"], r"settings.b.*no_such_key"),
        (["settings={b: [train.seed=3]}"], r"settings.b.*'train.seed' is set by the experiment"),
        (["settings={b: ['rewards=[]']}"], r"settings.b.*'rewards' is set by the experiment"),
        (["settings={b: []}"], r"settings.b.*is empty"),
        (["settings={b: [beta]}"], r"settings.b.*'beta' is not of the form"),
        (["study=comparison", "settings={b: [beta=0]}"], r"settings need study=overoptimisation"),
        (["second_judge=logmel-stats"], r"second_judge.*set second_judge=none"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(over, message, capsys):
    with pytest.raises(ConfigError, match=message):
        load_config(ExperimentConfig, "overoptimisation", over)
    assert main(["experiment", "--config", "overoptimisation", "data=nowhere", *over]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rrpo: error: ") and err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------------------ stages
def test_settings_multiply_the_runs_with_unique_names_and_their_overrides(tmp_path):
    """2 settings × 3 systems × 2 seeds × 2 folds = 24 runs, each with its audit: stage names
    <system>_s<seed>+<setting>@<fold>, all unique; folders runs/<setting>/<system>_s<seed>; the
    setting's overrides after the common ones (so beta=0 wins over beta=0.1) and before the system's;
    one scored start per fold and seed for every setting; the study's own report and results stages."""
    from rrpo.args import config_from_args
    from rrpo.optimize.trainer import OptimizeConfig

    cfg = _study(seeds=[0, 1], settings={"b01": ["beta=0.1"], "b0": ["beta=0", "train.lr=1e-4"]})
    stages = build_stages(cfg, tmp_path, tmp_path / "o", main)
    o = (tmp_path / "o").resolve()
    names = [s.name for s in stages]
    assert len(names) == len(set(names))
    by = {s.name: s for s in stages}
    runs = [n for n in names if "+" in n and not n.startswith("audit_")]
    assert len(runs) == 24 and len([n for n in names if n.startswith("audit_")]) == 24
    assert runs[:6] == [f"{m}_s0+b01@{h}" for h in FOLDS for m in THREE]  # seed, setting, fold, system
    parser = build_parser()
    for n in runs:
        run, setting = n.split("@")[0].split("+")
        h = n.split("@")[1]
        st = by[n]
        assert st.folder == o / "folds" / h / "runs" / setting / run and st.parallel
        assert by[f"audit_{n}"].needs == (n,) and f"run={st.folder}" in by[f"audit_{n}"].action
        a = list(st.action)
        i, block = a.index(cfg.optimize[0]), [*cfg.optimize, *cfg.settings[setting]]
        assert a[i : i + len(block)] == block  # the common overrides, then the setting's
        args = parser.parse_args(a)
        oc = config_from_args(OptimizeConfig, args)
        assert oc.beta == (0.0 if setting == "b0" else 0.1)
        assert oc.train.lr == (1e-4 if setting == "b0" else 3e-4) and oc.train.seed == int(run[-1])
        assert oc.train.steps == 120
        starts = [x for x in by[f"audit_{n}"].action if x.startswith("start_cache=")]
        assert starts == [f"start_cache={o / 'folds' / h / 'audit_start' / f's{run[-1]}'}"]
        parser.parse_args(list(by[f"audit_{n}"].action))
    assert names[-2:] == ["report_overopt", "overopt"] and "results" not in names and "report" not in names
    assert not any(n.startswith(("judges", "judge2")) for n in names)
    assert by["overopt"].folder == o / "results" / "overopt"
    report = " ".join(by["report_overopt"].action)
    assert (
        "RRPO (robust RM) seed 1, liuchanhg, b0" in report and str(o / "folds" / "liuchanhg" / "runs" / "b0") in report
    )
    # force= widens a run's plain name to every setting and fold, a run in one setting to every fold
    assert expand_force(["rrpo_s0"], names) == {f"rrpo_s0+{k}@{h}" for k in ("b01", "b0") for h in FOLDS}
    assert expand_force(["audit_rrpo_s1+b0"], names) == {f"audit_rrpo_s1+b0@{h}" for h in FOLDS}
    assert expand_force(["rrpo_s0+b0@liuchanhg", "sft"], names) == {"rrpo_s0+b0@liuchanhg", "sft"}


def test_the_study_shares_every_other_stage_with_the_comparison(tmp_path):
    """Built over the same run folder, every stage both studies have is the same command, and none of
    the study's runs, audits, report or results is named like one of the comparison's: the study may
    reuse the comparison's folder (data, codec, reward models, judges, starting policy) without
    overwriting any of it."""
    comp = build_stages(ExperimentConfig(content="spectral", seeds=[0, 1]), tmp_path, tmp_path / "o", main)
    study = build_stages(_study(seeds=[0, 1], settings={"b0": ["beta=0"]}), tmp_path, tmp_path / "o", main)
    c = {s.name: s for s in comp}
    shared = [s for s in study if s.name in c]
    assert {"data", "codec", "rm_pretrain", "rm_vanilla_s1@liuchanhg", "judge@ZhaoZuoxiang", "sft"} <= {
        s.name for s in shared
    }
    for s in shared:
        assert s.folder == c[s.name].folder
        if not callable(s.action):
            assert list(s.action) == list(c[s.name].action), s.name
    own = [s for s in study if s.name not in c]
    assert all("+b0" in s.name or s.name in ("report_overopt", "overopt") for s in own)
    comp_folders = {s.folder for s in comp}
    assert not any(s.folder in comp_folders for s in own)


# ---------------------------------------------------------------------------------------- results
def _point(step, kl, judge, proxy, emo=False, nat=False, utts=None, per=None):
    p = {
        "step": step,
        "sqrt_kl": kl,
        "proxy_prob": proxy,
        "judge": {"accuracy": judge, "target_prob": judge / 2},
        "artifacts": {"clicks": {"events_per_s": 0.1}, "bursts": {"events_per_s": 0.05}},
        "typicality": {"distance": 1.5, "atypical": 0.1},
        "flags": {
            "emotion": {"flag": emo},
            "naturalness": {"flag": nat, "signals": {"token_repetition": {"flag": nat}, "per": {"flag": False}}},
        },
    }
    if utts is not None:
        p["utterances"] = [{"id": i, "judge_correct": c} for i, c in utts]
    if per is not None:
        p["per"] = {"n": 2, "per": {"stat": per, "lo": per, "hi": per}}
    return p


def _write(o: Path, setting: str, system: str, seed: int, fold: str, points: list[dict]) -> None:
    d = o / "folds" / fold / "runs" / setting / f"{system}_s{seed}" / "audit"
    d.mkdir(parents=True)
    (d / "audit.json").write_text(json.dumps({"points": points, "start": points[0], "final": points[-1]}))


#: judge accuracy at steps 0, 60, 120 per (system, fold, seed); √KL and flags per run below
JUDGE = {
    ("diffro", "A", 0): (0.4, 0.6, 0.3),
    ("diffro", "A", 1): (0.4, 0.7, 0.2),
    ("diffro", "B", 0): (0.4, 0.5, 0.3),
    ("diffro", "B", 1): (0.4, 0.6, 0.4),
    ("rrpo", "A", 0): (0.4, 0.6, 0.7),
    ("rrpo", "A", 1): (0.4, 0.5, 0.7),
    ("rrpo", "B", 0): (0.4, 0.6, 0.5),
    ("rrpo", "B", 1): (0.4, 0.7, 0.6),
}
KL = {("diffro", "A", 0): 2.0, ("diffro", "A", 1): 3.0, ("diffro", "B", 0): 2.0, ("diffro", "B", 1): 2.0}


def _hand_made_study(o: Path) -> ExperimentConfig:
    """Two folds (A, B) × two seeds, DiffRO and RRPO, audits without per-utterance rows (each run counts
    as one unit), in setting b0; setting b1 holds the same runs with every judge 0.1 lower.

    DiffRO: √KL 0, 1.0 (fold A) or 1.5 (fold B), then 2 / 3 / 2 / 2 (A0, A1, B0, B1); proxy 0.3, 0.6,
    0.9; the emotion flag fires at step 120 in every run, the naturalness flag in run A0 only, from step
    60. RRPO: √KL 0, 0.5, 1.0, proxy 0.3, 0.5, 0.6, no flags."""
    for setting, shift in (("b0", 0.0), ("b1", -0.1)):
        for (m, h, s), js in JUDGE.items():
            js = [round(j + shift, 10) for j in js]
            if m == "diffro":
                kls = (0.0, 1.0 if h == "A" else 1.5, KL[(m, h, s)])
                nat = (False, h == "A" and s == 0, h == "A" and s == 0)
                pts = [
                    _point(t, k, j, p, emo=t == 120, nat=n)
                    for t, k, j, p, n in zip((0, 60, 120), kls, js, (0.3, 0.6, 0.9), nat)
                ]
            else:
                pts = [_point(t, k, j, p) for t, k, j, p in zip((0, 60, 120), (0.0, 0.5, 1.0), js, (0.3, 0.5, 0.6))]
            _write(o, setting, m, s, h, pts)
    return _study(
        seeds=[0, 1], systems=TWO, heldout_speakers=["A", "B"], settings={"b0": ["beta=0"], "b1": ["beta=0.01"]}
    )


def test_overopt_json_worked_by_hand(tmp_path):
    """DiffRO in b0: the pooled judge 0.4, 0.6, 0.3 (means of four runs) peaks at step 60 (√KL 1.25),
    then drops 0.3; the runs' drops are 0.3, 0.5 (fold A) and 0.2, 0.2 (fold B), so a draw resampling
    runs within folds gives (A's two draws + 0.4) / 4 = 0.25, 0.30, 0.35 w.p. 1/4, 1/2, 1/4: the 95 %
    interval is [0.25, 0.35]. Its emotion flag first fires at √KL 2, 3, 2, 2 → mean 2.25, interval
    [2.0, 2.5] (the same reasoning), 4 of 4 runs; naturalness at √KL 1.0 in run A0 only, the others
    reaching 3, 2, 2 unflagged → mean 2.0 [1.5, 2.5], a lower bound. RRPO peaks at the last step (its
    pooled judge 0.4, 0.6, 0.625): no drop; no flag, so its breaks are the √KL it reached (1.0).
    Paired over seed × fold, RRPO − DiffRO: peak judge (0.7, 0.7, 0.6, 0.7) − (0.6, 0.7, 0.5, 0.6) =
    (+0.1, 0, +0.1, +0.1): mean +0.075, interval [0.05, 0.1] (A: 0.2, 0.1, 0 summed; B: 0.2), permutation
    p = 4/16 (the three 0.1s all of one sign), and Student's t interval: sd 0.05, se 0.025, t(0.975, 3) =
    3.18245, so 0.075 ± 0.07956 = [−0.00456, 0.15456]; drop (0, 0, 0.1, 0.1) − (0.3, 0.5, 0.2, 0.2):
    mean −0.25, interval [−0.3, −0.2], p = 2/16, t: the differences (−0.3, −0.5, −0.1, −0.1) have sd
    √(0.11 / 3) = 0.19149, se 0.09574, so −0.25 ± 0.30470 = [−0.55470, 0.05470].
    At matched √KL: RRPO reached 1.0 at most, DiffRO more, so each pair meets at √KL 1.0: DiffRO's step
    60 (√KL 1.0 in fold A, 1.5 in B), RRPO's step 120. Judge there (0.7, 0.7, 0.5, 0.6) − (0.6, 0.7, 0.5,
    0.6) = (+0.1, 0, 0, 0): mean +0.025, bootstrap [0, 0.05] (fold A's draws sum to 0.2, 0.1 or 0, fold
    B's to 0), t: sd 0.05, 0.025 ± 0.07956, p = 1 (only one pair's sign matters); artifacts and
    typicality equal in every run: 0 with a zero-width interval; no repetition, MCD or PER in these
    audits, so none is compared."""
    cfg = _hand_made_study(tmp_path)
    res = write_overopt(tmp_path, cfg)
    assert list(res["settings"]) == ["b0", "b1"] and res["settings"]["b0"]["overrides"] == ["beta=0"]
    b0 = res["settings"]["b0"]
    d = b0["systems"]["diffro"]
    assert [e["step"] for e in d["path"]] == [0, 60, 120]
    assert [e["judge"] for e in d["path"]] == pytest.approx([0.4, 0.6, 0.3])
    assert [e["sqrt_kl"] for e in d["path"]] == pytest.approx([0.0, 1.25, 2.25])
    e = d["path"][1]
    assert e["proxy"] == pytest.approx(0.6) and e["proxy_ci"] == pytest.approx([0.6, 0.6]) and e["runs"] == 4
    assert e["artifacts"] == pytest.approx(0.15) and e["typicality"] == pytest.approx(1.5) and "per" not in e
    assert e["judge_p"] == pytest.approx(0.3)
    # judge at step 60: runs A (0.6, 0.7), B (0.5, 0.6): each fold's two draws sum to its low, middle or
    # high total w.p. 1/4, 1/2, 1/4, so the pooled judge is 0.55, 0.575, ..., 0.65 w.p. (1, 4, 6, 4, 1) / 16
    assert e["judge_ci"] == pytest.approx([0.55, 0.65])
    assert d["peak"]["judge_ci"] == pytest.approx([0.55, 0.65])
    assert (d["peak"]["step"], d["peak"]["sqrt_kl"], d["peak"]["judge"]) == pytest.approx((60, 1.25, 0.6))
    dr = d["drop_after_peak"]
    assert (dr["drop"], dr["lo"], dr["hi"]) == pytest.approx((0.3, 0.25, 0.35))
    assert (dr["from_step"], dr["to_step"], dr["runs"]) == (60, 120, 4)
    br = d["breaks"]
    assert (br["emotion"]["sqrt_kl"], br["emotion"]["lo"], br["emotion"]["hi"]) == pytest.approx((2.25, 2.0, 2.5))
    assert br["emotion"]["flagged_runs"] == 4 and not br["emotion"]["lower_bound"]
    assert br["emotion"]["steps"] == [120, 120, 120, 120]
    nat = br["naturalness"]
    assert (nat["sqrt_kl"], nat["lo"], nat["hi"]) == pytest.approx((2.0, 1.5, 2.5))
    assert nat["flagged_runs"] == 1 and nat["lower_bound"] and nat["steps"] == [60, None, None, None]
    assert d["flagged_steps"] == [
        {"step": 60, "sqrt_kl": pytest.approx(1.25), "emotion": 0, "naturalness": 1, "runs": 4},
        {"step": 120, "sqrt_kl": pytest.approx(2.25), "emotion": 4, "naturalness": 1, "runs": 4},
    ]
    run = d["runs"][0]  # seed 0, fold A
    assert (run["fold"], run["seed"], run["peak"]["step"], run["final"]["step"]) == ("A", 0, 60, 120)
    assert run["drop"] == pytest.approx(0.3) and run["flagged"] == {"emotion": [120], "naturalness": [60, 120]}
    assert run["breaks"]["naturalness"]["signals"] == ["token_repetition"]
    # Gao's RL form through the judge's change (0, +0.2, −0.1) at √KL (0, 1.25, 2.25): two points, exact
    fit = d["fits"]["judge"]["rl"]
    assert fit["r2"] == pytest.approx(1.0)
    assert 1.25 * (fit["alpha"] - fit["beta"] * math.log(1.25)) == pytest.approx(0.2)
    r = b0["systems"]["rrpo"]
    assert [x["judge"] for x in r["path"]] == pytest.approx([0.4, 0.6, 0.625])
    assert r["peak"]["step"] == 120 and r["drop_after_peak"]["drop"] == pytest.approx(0.0)
    assert r["drop_after_peak"]["lo"] == pytest.approx(0.0) and r["drop_after_peak"]["hi"] == pytest.approx(0.0)
    assert r["flagged_steps"] == [] and r["breaks"]["emotion"]["flagged_runs"] == 0
    assert r["breaks"]["emotion"]["sqrt_kl"] == pytest.approx(1.0) and r["breaks"]["emotion"]["lower_bound"]
    pk = b0["paired"]["rrpo-diffro"]["peak_judge"]
    assert (pk["diff"], pk["lo"], pk["hi"], pk["p_perm"]) == pytest.approx((0.075, 0.05, 0.1, 0.25))
    assert pk["pairs"] == 4 and (pk["mean_a"], pk["mean_b"]) == pytest.approx((0.6, 0.675))
    assert (pk["t_lo"], pk["t_hi"]) == pytest.approx((-0.0045611, 0.1545611), abs=1e-6)
    dp = b0["paired"]["rrpo-diffro"]["drop_after_peak"]
    assert (dp["diff"], dp["lo"], dp["hi"], dp["p_perm"]) == pytest.approx((-0.25, -0.3, -0.2, 0.125))
    assert (dp["t_lo"], dp["t_hi"]) == pytest.approx((-0.554697, 0.054697), abs=1e-6)
    mk = b0["paired"]["rrpo-diffro"]["at_matched_kl"]
    assert mk["sqrt_kl"] == pytest.approx(1.0) and set(mk["signals"]) == {"judge", "artifacts", "typicality"}
    assert [(q["fold"], q["seed"], q["step_a"], q["step_b"]) for q in mk["pairs"]] == [
        ("A", 0, 60, 120),
        ("B", 0, 60, 120),
        ("A", 1, 60, 120),
        ("B", 1, 60, 120),
    ]
    assert [q["sqrt_kl_a"] for q in mk["pairs"]] == pytest.approx([1.0, 1.5, 1.0, 1.5])
    mj = mk["signals"]["judge"]
    assert (mj["diff"], mj["lo"], mj["hi"], mj["p_perm"]) == pytest.approx((0.025, 0.0, 0.05, 1.0), abs=1e-9)
    assert (mj["t_lo"], mj["t_hi"]) == pytest.approx((-0.0545611, 0.1045611), abs=1e-6)
    ma = mk["signals"]["artifacts"]
    assert (ma["diff"], ma["lo"], ma["hi"], ma["t_lo"], ma["t_hi"]) == pytest.approx((0, 0, 0, 0, 0), abs=1e-12)
    # setting b1 is read from its own folders: every judge 0.1 lower
    assert res["settings"]["b1"]["systems"]["diffro"]["peak"]["judge"] == pytest.approx(0.5)
    # the files: strict JSON (no NaN), the summary's rows, the figure
    out = tmp_path / "results"
    saved = json.loads((out / "overopt.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert saved["settings"]["b0"]["systems"]["diffro"]["peak"]["step"] == 60
    assert saved["settings"]["b0"]["systems"]["diffro"]["fits"]["proxy"]["rl"]["n"] == 3
    md = (out / "overopt.md").read_text()
    assert "## Setting `b0` (beta=0)" in md
    assert "| DiffRO (vanilla RM) | 60 | 1.25 | 60.0 [55.0, 65.0] | 30.0 [25.0, 35.0] | 120 | 2.25 | " in md
    assert "2.25 [2.00, 2.50] (4/4 runs) | ≥ 2.00 [1.50, 2.50] (1/4 runs) |" in md
    assert (
        "| RRPO (robust RM) − DiffRO (vanilla RM) | +7.5 [+5.0, +10.0]; t [-0.5, +15.5] (p 0.25) | "
        "-25.0 [-30.0, -20.0]; t [-55.5, +5.5] (p 0.125) |" in md
    )
    assert "| systems | matched √KL | judge (points) | artifacts /s | typicality |" in md
    assert "| RRPO (robust RM) − DiffRO (vanilla RM) | 1.00 | +2.5 [+0.0, +5.0]; t [-5.5, +10.5] (p 1) | " in md
    assert (out / "overopt.png").stat().st_size > 10_000


def test_utterances_are_pooled_and_paired_by_id(tmp_path):
    """With per-utterance rows the judge pools utterances and the drop pairs each utterance with itself:
    one fold, two runs of two utterances, right (1, 0) at step 0, (1, 1) at 60, (0, 0) at 120 (listed in
    another order). Judge 0.5, 1.0, 0.0; every utterance loses 1 after the peak: drop 1.0 [1.0, 1.0]. At
    step 0 each run's two utterances resample to 0, 1 or 2 right w.p. 1/4, 1/2, 1/4, so the pooled
    count over both runs is Binomial(4, 1/2): P(0 of 4) = 1/16 > 2.5 % and P(≤ 3) = 15/16 < 97.5 %, so
    the interval is [0, 1]. The PER of the points (0.2) joins the path."""
    for s in (0, 1):
        for m in ("diffro", "rrpo"):
            pts = [
                _point(0, 0.0, 0.5, 0.3, utts=[("u0", 1), ("u1", 0)], per=0.2),
                _point(60, 1.0, 1.0, 0.5, utts=[("u0", 1), ("u1", 1)], per=0.2),
                _point(120, 2.0, 0.0, 0.7, utts=[("u1", 0), ("u0", 0)], per=0.2),
            ]
            _write(tmp_path, "b", m, s, "A", pts)
    cfg = _study(seeds=[0, 1], systems=TWO, heldout_speakers=["A"], settings={"b": ["beta=0"]})
    # one fold: the run folder is the fold's
    for p in list((tmp_path / "folds" / "A").iterdir()):
        p.rename(tmp_path / p.name)
    res = write_overopt(tmp_path, cfg)["settings"]["b"]["systems"]["diffro"]
    assert [e["judge"] for e in res["path"]] == pytest.approx([0.5, 1.0, 0.0])
    assert res["path"][0]["judge_ci"] == pytest.approx([0.0, 1.0])
    assert res["path"][0]["per"] == pytest.approx(0.2)
    dr = res["drop_after_peak"]
    assert (dr["drop"], dr["lo"], dr["hi"]) == pytest.approx((1.0, 1.0, 1.0))


def test_a_missing_audit_names_the_file(tmp_path):
    from rrpo.errors import RrpoError

    cfg = _hand_made_study(tmp_path)
    (tmp_path / "folds" / "B" / "runs" / "b1" / "rrpo_s1" / "audit" / "audit.json").unlink()
    with pytest.raises(RrpoError, match=r"b1/rrpo_s1/audit/audit.json: no audit of this run"):
        write_overopt(tmp_path, cfg)
