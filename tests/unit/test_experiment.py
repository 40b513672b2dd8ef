"""``rrpo experiment``: its config file, the data split, the stage list, the aggregation (worked by
hand) and the goal verdicts."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from rrpo.cli import build_parser, main
from rrpo.config import load_config
from rrpo.data.manifest import read_manifest
from rrpo.errors import RrpoError
from rrpo.experiment import (
    DEFAULT_SYSTEMS,
    ExperimentConfig,
    build_stages,
    point_metrics,
    prepare_data,
    verdicts,
    write_results,
)
from rrpo.stats import mean_std

from tests.unit.test_corpora import casia_tree, esd_tree

REPO = Path(__file__).resolve().parents[2]
#: The two systems the verdicts compare (the fake runs below have only these).
TWO = {k: DEFAULT_SYSTEMS[k] for k in ("diffro", "rrpo")}
#: One fold (the layout and stage names before folds).
ONE = ["ZhaoZuoxiang"]


def test_config_file_spells_out_the_defaults():
    assert load_config(ExperimentConfig, REPO / "configs" / "paper_comparison.yaml", []) == ExperimentConfig()


def test_mean_std_by_hand():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sample std: sqrt((1 + 0 + 1) / 2)
    assert mean_std([0.2, 0.4]) == pytest.approx((0.3, math.sqrt(0.02)))
    assert mean_std([5.0]) == (5.0, 0.0)
    assert mean_std([None, 4.0, 6.0]) == (5.0, math.sqrt(2.0))  # None (a missing figure) is left out
    assert mean_std([1.0, float("nan"), 3.0]) == (2.0, math.sqrt(2.0))
    m, s = mean_std([float("nan")])
    assert math.isnan(m) and math.isnan(s)


def point(
    proxy=0.3,
    acc=0.4,
    p=0.35,
    clicks=0.1,
    bursts=0.05,
    mcd=10.0,
    f0=300.0,
    vo=0.2,
    fr=50.0,
    rep=0.01,
    kl=0.0,
    step=0,
    flag=False,
) -> dict:
    det = {"clicks": clicks, "bursts": bursts, "clipping": 0.0, "silence": 0.0, "repetition": 0.0}
    return {
        "proxy_prob": proxy,
        "judge": {"accuracy": acc, "target_prob": p},
        "artifacts": {k: {"events_per_s": v, "frame_fraction": 0.0, "utterances_with": 0} for k, v in det.items()},
        "distances": {"mcd_db": mcd, "f0_rmse_cents": f0, "voicing_error": vo, "frechet_egemaps": fr},
        "token_repetition": rep,
        "sqrt_kl": kl,
        "mean_len_s": 2.0,
        "step": step,
        "hacking_flag": flag,
    }


def test_point_metrics_sums_artifact_rates():
    m = point_metrics(point(clicks=0.25, bursts=0.5))
    assert m["artifacts"] == pytest.approx(0.75)
    assert (m["proxy"], m["judge_acc"], m["judge_p"], m["mcd_db"], m["hacking_flag"]) == (0.3, 0.4, 0.35, 10.0, 0.0)


def _means(**over):
    sft = {
        "proxy": 0.3,
        "proxy_vanilla": 0.3,
        "judge_acc": 0.4,
        "artifacts": 0.1,
        "mcd_db": 10.0,
        "f0_rmse_cents": 300.0,
        "voicing_error": 0.2,
        "frechet_egemaps": 50.0,
    }
    dif = {
        **sft,
        "proxy": 0.6,
        "judge_acc": 0.45,
        "artifacts": 0.2,
        "mcd_db": 12.0,
        "f0_rmse_cents": 400.0,
        "voicing_error": 0.25,
        "frechet_egemaps": 80.0,
    }
    rr = {
        **sft,
        "proxy": 0.5,
        "judge_acc": 0.5,
        "artifacts": 0.105,
        "mcd_db": 10.9,
        "f0_rmse_cents": 320.0,
        "voicing_error": 0.21,
        "frechet_egemaps": 54.0,
    }
    means = {"sft": sft, "diffro": dif, "rrpo": rr}
    for k, v in over.items():
        m, key = k.split("__")
        means[m][key] = v
    return means


def test_verdicts_both_goals_met():
    v = verdicts(_means(), 0.10)
    h, g = v["diffro_hacks"], v["rrpo_goal"]
    assert h["met"] and h["proxy_up"]
    assert h["quality_ratios_vs_sft"]["mcd_db"] == pytest.approx(1.2)  # 12 / 10
    assert h["quality_ratios_vs_sft"]["artifacts"] == pytest.approx(2.0)
    assert g["met"] and g["judge_above_sft"] and g["judge_at_least_diffro"]
    assert g["quality_ratios_vs_sft"]["mcd_db"] == pytest.approx(1.09)  # 10.9 / 10: inside 10 %


@pytest.mark.parametrize(
    "over, goal",
    [
        ({"rrpo__mcd_db": 11.1}, "rrpo_goal"),  # 1.11x SFT: outside 10 %
        ({"rrpo__judge_acc": 0.44}, "rrpo_goal"),  # below DiffRO's 0.45
        ({"rrpo__judge_acc": 0.4}, "rrpo_goal"),  # not above SFT's 0.4
        ({"diffro__proxy": 0.3}, "diffro_hacks"),  # proxy did not rise
        ({"diffro__voicing_error": 0.21}, "diffro_hacks"),  # 1.05x: not clearly worse
    ],
)
def test_verdicts_fail_where_worked_by_hand(over, goal):
    assert not verdicts(_means(**over), 0.10)[goal]["met"]


def test_zero_sft_artifact_rate():
    v = verdicts(_means(sft__artifacts=0.0, rrpo__artifacts=0.0, diffro__artifacts=0.1), 0.10)
    assert v["rrpo_goal"]["quality_ratios_vs_sft"]["artifacts"] == 1.0  # none before, none after
    assert v["diffro_hacks"]["quality_ratios_vs_sft"]["artifacts"] == math.inf  # any rise from zero counts
    assert not verdicts(_means(sft__artifacts=0.0, rrpo__artifacts=0.01), 0.10)["rrpo_goal"]["met"]


def _ceiling(right: int, n: int = 5, typicality: float | None = None) -> dict:
    """An audit's ceiling: ``n`` sad references, the first ``right`` judged correctly."""
    return {
        "judge": {"per_emotion": {"sad": {"n": n, "accuracy": right / n}}},
        "utterances": [
            {"id": f"r{i}", "emotion": "sad", "judge_correct": i < right, "judge_target_prob": 0.5}
            | ({"typicality": typicality, "atypical": 0.0} if typicality is not None else {})
            for i in range(n)
        ],
    }


def _fake_run(o: Path, seeds=(0, 1), real_right: int = 3):
    """Audit files of a finished experiment, figures chosen so the means are easy to check. Every
    audit judged the ceilings: ``real_right`` of 5 real references right, 2 of 5 through the codec."""
    ceilings = {"real": _ceiling(real_right), "codec": _ceiling(2, typicality=1.5)}
    for s in seeds:
        for m in ("diffro", "rrpo"):
            start = point(proxy=0.3 if m == "diffro" else 0.25, acc=0.4 + 0.1 * s)
            final = point(
                proxy=0.6 + 0.2 * s,
                acc=(0.4 if m == "diffro" else 0.6) + 0.1 * s,
                mcd=(14.0 if m == "diffro" else 10.5) + 2 * s,
                kl=0.5,
                step=8,
            )
            d = o / "runs" / f"{m}_s{s}" / "audit"
            d.mkdir(parents=True)
            (d / "audit.json").write_text(
                json.dumps(
                    {
                        "start": start,
                        "final": final,
                        "points": [start, final],
                        "flagged_steps": [8] * s,
                        "ceilings": ceilings,
                    }
                )
            )
    (o / "judge" / "eval").mkdir(parents=True)
    (o / "judge" / "eval" / "casia_heldout.json").write_text(json.dumps({"n": 250, "wa": 0.592, "ua": 0.59}))
    (o / "rm" / "eval").mkdir(parents=True)
    for name in ("vanilla", "robust"):
        for ev, ua in (("casia_heldout", 0.4), ("esd", 0.3)):
            (o / "rm" / "eval" / f"{name}_{ev}.json").write_text(json.dumps({"ua": ua, "wa": ua + 0.01}))


def test_write_results_means_table_and_plot(tmp_path):
    _fake_run(tmp_path)
    cfg = ExperimentConfig(seeds=[0, 1], systems=TWO, heldout_speakers=ONE)
    res = write_results(tmp_path, cfg)
    s = res["summary"]
    assert s["diffro"]["proxy"] == pytest.approx((0.7, math.sqrt(0.02)))  # 0.6 and 0.8
    assert s["rrpo"]["judge_acc"] == pytest.approx((0.65, math.sqrt(0.005)))  # 0.6 and 0.7
    assert s["sft"]["proxy_robust"] == pytest.approx((0.25, 0.0))
    assert s["sft"]["mcd_db"][0] == pytest.approx(10.0) and s["diffro"]["mcd_db"][0] == pytest.approx(15.0)
    assert res["per_seed"]["diffro"][1]["flagged_steps"] == [8]
    tr = res["trajectories"]["rrpo"]
    assert tr["step"] == [0, 8] and tr["judge_acc"][0] == pytest.approx((0.45, math.sqrt(0.005)))
    assert tr["proxy"][1] == pytest.approx((0.7, math.sqrt(0.02)))
    # DiffRO: proxy up but only the MCD worsened (artifacts equal): not "clearly worse" on every figure
    assert not res["verdicts"]["diffro_hacks"]["met"]
    # RRPO: judge 0.65 > SFT 0.45 and > DiffRO 0.45; MCD 11.5 / 10 = 1.15 > 1.10: goal not met
    g = res["verdicts"]["rrpo_goal"]
    assert g["judge_above_sft"] and g["judge_at_least_diffro"] and not g["quality_within_tol"] and not g["met"]
    table = (tmp_path / "results" / "table.md").read_text()
    assert "| RRPO (robust RM) | 0.700 ± 0.141 | 65.0 ± 7.1 |" in table
    # the ceilings: 3 of 5 real references, 2 of 5 through the codec (typicality 1.5), each once per fold
    # (every seed's audit judges the same references with the same anchor)
    c = res["ceilings"]
    assert c["ceiling_real"]["judge_acc"]["stat"] == pytest.approx(0.6) and c["ceiling_real"]["judge_acc"]["n"] == 5
    assert c["ceiling_codec"]["judge_acc"]["stat"] == pytest.approx(0.4)
    assert c["ceiling_codec"]["typicality"]["stat"] == pytest.approx(1.5) and c["ceiling_real"]["recall"] == {
        "sad": 0.6
    }
    assert "| ceiling: real held-out speech | 60.0 [" in table
    assert "| ceiling: real held-out speech through the codec | 40.0 [" in table and "| 1.500 [1.500, 1.500] |" in table
    assert "| vanilla | ZhaoZuoxiang | 40.0 | 41.0 | 30.0 |" in table
    assert (
        "| DiffRO (vanilla RM) | ZhaoZuoxiang | 0 | never | never | 0.50 |" in table
    )  # the fake points carry no flags
    assert res["folds"] == ONE
    assert "| RRPO (robust RM) | judge accuracy % | 45.0 | 65.0 |" in table
    assert "**RRPO goal**" in table and "not met" in table
    assert "| PER" not in table and "PER" not in res["verdicts"]["rrpo_goal"]["quality_ratios_vs_sft"]  # no judge
    assert (tmp_path / "results" / "results.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "results" / "results.json").read_text())["summary"]["rrpo"]["proxy"][0] == 0.7


def _prepare_tiny(tmp_path):
    """prepare_data on a tiny CASIA/ESD tree, holding out speaker wangzhe and sentence 202."""
    data = tmp_path / "data"
    casia_tree(data / "casia")
    esd_tree(data / "esd")
    cfg = ExperimentConfig(
        heldout_speakers=["wangzhe"],
        heldout_sentences=[202],
        rm_pretrain_corpora=[],
        policy_pretrain_corpora=[],
        judge_corpora=["casia"],
    )
    prepare_data(data, tmp_path / "out", cfg)


def test_prepare_data_marks_heldout_sentences(tmp_path):
    _prepare_tiny(tmp_path)
    casia = read_manifest(tmp_path / "out" / "casia.jsonl")
    assert {u.split for u in casia if u.extra["sentence"] == 202} == {"test"}
    assert {u.split for u in casia if u.extra["sentence"] == 201} == {"train"}
    assert all(Path(u.audio).is_absolute() for u in casia)
    codec = read_manifest(tmp_path / "out" / "casia_codec.jsonl")
    assert {u.speaker for u in codec} == {"liuchanhg"} and len(codec) == 4
    assert len(read_manifest(tmp_path / "out" / "esd.jsonl")) == 6


@pytest.mark.parametrize(
    "over, message",
    [
        ({"heldout_speakers": ["wangzhe", "nobody"]}, "held-out speaker 'nobody' is not in CASIA"),
        ({"heldout_speakers": ["wangzhe", "liuchanhg"]}, "every CASIA speaker is held out"),
        (
            {"heldout_speakers": ["wangzhe"], "heldout_sentences": [299]},
            "held-out sentence id(s) [299] are not in CASIA",
        ),
    ],
)
def test_prepare_data_errors(tmp_path, over, message):
    data = tmp_path / "data"
    casia_tree(data / "casia")
    esd_tree(data / "esd")
    with pytest.raises(RrpoError, match=re.escape(message)):
        prepare_data(
            data,
            tmp_path / "out",
            dataclasses.replace(
                ExperimentConfig(rm_pretrain_corpora=[], policy_pretrain_corpora=[], judge_corpora=["casia"]), **over
            ),
        )


def test_missing_corpus_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "casia").mkdir()
    assert main(["experiment", f"data={tmp_path}", f"out={tmp_path / 'o'}", "seeds=[0]", "content=spectral"]) == 2
    err = capsys.readouterr().err
    assert "no esd/ folder here" in err and "Traceback" not in err


def test_stages_parse_and_interleave_seeds(tmp_path):
    stages = build_stages(
        ExperimentConfig(content="spectral", seeds=[3, 4], systems=TWO, heldout_speakers=ONE),
        tmp_path,
        tmp_path / "o",
        main,
    )
    names = [s.name for s in stages]
    assert names[-7:] == ["diffro_s4", "audit_diffro_s4", "rrpo_s4", "audit_rrpo_s4", "judges", "report", "results"]
    assert names.index("judge_eval") < names.index("judge2") < names.index("judge2_eval") < names.index("sft")
    assert "judges" not in [
        s.name
        for s in build_stages(
            ExperimentConfig(content="spectral", seeds=[3], second_judge="none", heldout_speakers=ONE),
            tmp_path,
            tmp_path / "o",
            main,
        )
    ]
    assert names.index("diffro_s3") < names.index("rrpo_s3") < names.index("diffro_s4")
    assert names[-2:] == ["report", "results"] and names[0] == "data"
    parser = build_parser()
    for st in stages:
        if not callable(st.action):
            parser.parse_args(list(st.action))  # every command line is one the CLI accepts
    opt = {s.name: s.action for s in stages}
    assert "train.seed=4" in opt["rrpo_s4"] and any("rm/robust" in a for a in opt["rrpo_s4"])
    assert any("rm/vanilla" in a for a in opt["diffro_s4"])
    assert "seed=1238" in opt["audit_rrpo_s4"] and "prompts.speakers=[ZhaoZuoxiang]" in opt["audit_rrpo_s4"]
    assert "features=logmel-stats" in opt["judge2"]
    cnn = {
        s.name: s.action
        for s in build_stages(
            ExperimentConfig(content="spectral", seeds=[3], second_judge="logmel-cnn"), tmp_path, tmp_path / "o", main
        )
    }
    j2 = cnn["judge2@liuchanhg"]  # the default: two folds, stages named <stage>@<speaker>
    assert j2[:2] == ["judge", "train-mel"] and "train.steps=800" in j2 and "exclude_speakers=[liuchanhg]" in j2
    parser.parse_args(list(j2))
    with pytest.raises(RrpoError, match="seeds is empty"):
        build_stages(ExperimentConfig(seeds=[]), tmp_path, tmp_path / "o", main)


def test_reward_models_pretrain_on_the_multilingual_corpora(tmp_path):
    stages = {
        s.name: s.action
        for s in build_stages(ExperimentConfig(content="spectral", seeds=[0]), tmp_path, tmp_path / "o", main)
    }
    assert {"tokens_ased", "tokens_nemo", "tokens_urdu"} <= set(stages)
    pre = " ".join(stages["rm_pretrain"])
    for c in ("ased", "nemo", "urdu"):
        assert f"data/{c}.jsonl" in pre and f"tokens/{c}" in pre
    assert "synth/manifest.jsonl" not in pre
    synth = {
        s.name: s.action
        for s in build_stages(
            ExperimentConfig(content="spectral", seeds=[0], rm_pretrain_synth=True), tmp_path, tmp_path / "o", main
        )
    }
    assert "synth/manifest.jsonl" in " ".join(synth["rm_pretrain"])
    with pytest.raises(RrpoError, match="no pre-training data"):
        build_stages(
            ExperimentConfig(seeds=[0], rm_pretrain_synth=False, rm_pretrain_corpora=[]), tmp_path, tmp_path / "o", main
        )


def test_missing_pretraining_corpus_is_an_error(tmp_path):
    data = tmp_path / "data"
    casia_tree(data / "casia")
    esd_tree(data / "esd")
    with pytest.raises(RrpoError, match="no ased/ folder here"):
        prepare_data(data, tmp_path / "out", ExperimentConfig(heldout_speakers=["wangzhe"], heldout_sentences=[202]))


def test_every_system_gets_its_algorithm_reward_and_the_same_budget(tmp_path):
    """The default systems: DiffRO / GRPO / the watch variant on the vanilla RM, RRPO on the robust RM,
    the ensemble on the robust RM and its rm_ensemble_seeds siblings (trained by their own stages);
    every run gets the common optimize overrides, GRPO its own after them (1 prompt x group 4 = 4
    samples per step, as DiffRO's 4 prompts); only the watch variant has a judge watch."""
    cfg = ExperimentConfig(content="spectral", seeds=[0], heldout_speakers=ONE)
    stages = build_stages(cfg, tmp_path, tmp_path / "o", main)
    opt = {s.name: s.action for s in stages}
    o = (tmp_path / "o").resolve()
    assert [s.name for s in stages if s.name.startswith("rm_robust")] == ["rm_robust", "rm_robust_s1", "rm_robust_s2"]
    assert "train.seed=2" in opt["rm_robust_s2"] and f"out={o / 'rm' / 'robust_s2'}" in opt["rm_robust_s2"]
    runs = [n for n in opt if n.endswith("_s0") and not n.startswith(("audit", "rm_"))]
    assert runs == ["diffro_s0", "rrpo_s0", "rrpo_ensemble_s0", "grpo_s0", "diffro_watch_s0"]
    for r in runs:
        assert "train.steps=120" in opt[r] and f"audit_{r}" in opt
    assert "algo=grpo" in opt["grpo_s0"] and opt["grpo_s0"][-2:] == ["train.batch_size=1", "group=4"]
    assert f"path: {o / 'rm' / 'vanilla'}" in " ".join(opt["diffro_watch_s0"])
    ens = " ".join(opt["rrpo_ensemble_s0"])
    assert "aggregate: mean_minus_std" in ens and all(
        str(o / "rm" / m) in ens for m in ("robust", "robust_s1", "robust_s2")
    )
    assert (
        "watch.stop_on_flag=true" in opt["diffro_watch_s0"] and f"watch.judge={o / 'judge'}" in opt["diffro_watch_s0"]
    )
    assert not any(a.startswith("watch.") for r in runs if r != "diffro_watch_s0" for a in opt[r])
    assert "prompts.samples=4" in opt["audit_grpo_s0"] and "every=3" in opt["audit_grpo_s0"]
    # every system's audit of seed 0 shares one scored start; fine-tunes, runs and audits may run in
    # parallel, each audit after its own run
    starts = {a for r in runs for a in opt[f"audit_{r}"] if a.startswith("start_cache=")}
    assert starts == {f"start_cache={o / 'audit_start' / 's0'}"}
    by_name = {s.name: s for s in stages}
    assert all(by_name[r].parallel and by_name[f"audit_{r}"].needs == (r,) for r in runs)
    assert by_name["rm_robust_s2"].parallel and not by_name["rm_eval"].parallel
    # one guidance scale for every sampling of the policy, from an SFT with emotion dropout
    for r in runs:
        assert "sampling.guidance=5" in opt[r] and "sampling.guidance=5" in opt[f"audit_{r}"]
    assert "data.drop_emotion=0.15" in opt["sft"]
    # the starting policy: pre-trained (a callable stage), then SFT from it
    names = [s.name for s in stages]
    assert names.index("policy_pretrain") == names.index("sft") - 1
    assert f"model.init={o / 'policy_pretrain' / 'run'}" in opt["sft"]
    # no pre-training, no ensemble system: neither stage
    plain = build_stages(
        ExperimentConfig(content="spectral", seeds=[0], policy_pretrain_corpora=[], systems=TWO, heldout_speakers=ONE),
        tmp_path,
        tmp_path / "o",
        main,
    )
    assert not {"policy_pretrain", "rm_robust_s1"} & {s.name for s in plain}
    assert not any(a.startswith("model.init") for a in {s.name: s.action for s in plain}["sft"])


@pytest.mark.parametrize(
    "over, message",
    [
        (["systems={diffro: {algo: diffro}}"], "needs 'rrpo'"),
        (["systems={diffro: {}, rrpo: {reward: best}}"], "systems.reward"),
        (["systems={diffro: {}, rrpo: {}, x: {colour: red}}"], "unknown key"),
        (["policy_pretrain_corpora=[ased]"], "corpora with transcripts"),
        (["sft=[train.steps=3]"], "data.drop_emotion > 0 in sft"),
        (["sft=[data.drop_emotion=0.0]", "guidance=2"], "data.drop_emotion > 0 in sft"),
        (["guidance=-1"], "guidance"),
    ],
)
def test_system_and_corpus_errors_name_the_key(over, message):
    from rrpo.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(ExperimentConfig, None, over)


def test_pretrain_key_follows_settings_and_inputs(tmp_path):
    """Same settings and inputs -> same key (whatever the run folder); a changed pre-training setting,
    codec file or manifest byte -> another key; the codec's descriptive files and the training times
    in its codec.json do not count (a codec trained again gives the same key), its settings do."""
    from rrpo.experiment import pretrain_key

    def make(root, weights=b"w", man=b"m", seconds=30.9, clusters=128):
        (root / "codec").mkdir(parents=True)
        (root / "codec" / "codec.safetensors").write_bytes(weights)
        (root / "codec" / "command.txt").write_text(f"rrpo codec train out={root}")
        info = {"config": {"spectral_clusters": clusters}, "stats": {"frames": 9, "train_seconds": seconds}}
        (root / "codec" / "codec.json").write_text(json.dumps(info))
        (root / "esd.jsonl").write_bytes(man)
        return root / "codec", {"esd": root / "esd.jsonl"}

    cfg = ExperimentConfig()
    a = pretrain_key(cfg, *make(tmp_path / "a"))[0]
    assert pretrain_key(cfg, *make(tmp_path / "b"))[0] == a
    assert pretrain_key(cfg, *make(tmp_path / "c", weights=b"x"))[0] != a
    assert pretrain_key(cfg, *make(tmp_path / "d", man=b"n"))[0] != a
    assert pretrain_key(cfg, *make(tmp_path / "f", seconds=31.2))[0] == a
    assert pretrain_key(cfg, *make(tmp_path / "g", clusters=64))[0] != a
    other = dataclasses.replace(cfg, policy_pretrain=[*cfg.policy_pretrain, "train.lr=5e-4"])
    assert pretrain_key(other, *make(tmp_path / "e"))[0] != a
    assert len(a) == 20 and re.fullmatch("[0-9a-f]+", a)


def test_policy_pretrain_is_cached_across_run_folders(tmp_path):
    """The first run folder trains (synth, tokenize, policy sft into the cache); a second run folder with
    the same settings and inputs reuses it: no command runs, its `run` link points at the same cached
    policy and pretrain.json says reused, with the time it took to make."""
    from rrpo.experiment import policy_pretrain
    from rrpo.io import read_json

    calls = []

    def fake_verb(argv):
        calls.append(argv[:2])
        out = Path(next(a for a in argv if a.startswith("out="))[4:])
        out.mkdir(parents=True, exist_ok=True)
        return 0

    cfg = ExperimentConfig(cache=str(tmp_path / "cache"), policy_pretrain_corpora=["synth", "esd", "casia"])

    def run_folder(name):
        o = tmp_path / name
        (o / "codec").mkdir(parents=True)
        (o / "codec" / "codec.safetensors").write_bytes(b"weights")
        (o / "data").mkdir()
        for c in ("esd", "casia"):
            (o / "data" / f"{c}.jsonl").write_text(f"{c} records\n")
        return o, {c: o / "tokens" / c for c in ("esd", "casia")}

    o1, tok1 = run_folder("one")
    policy_pretrain(cfg, o1, tok1, fake_verb)
    assert calls == [
        [
            "synth",
            f"out={tmp_path / 'cache' / 'policy_pretrain' / read_json(o1 / 'policy_pretrain' / 'pretrain.json')['key'] / 'synth'}",
        ],
        ["tokenize", calls[1][1]],
        ["policy", "sft"],
    ]
    first = read_json(o1 / "policy_pretrain" / "pretrain.json")
    assert first["reused"] is False and first["corpora"] == ["synth", "esd", "casia"]
    assert "data.heldout=[test]" in first["command"] and str(tok1["esd"]) in " ".join(first["command"])
    o2, tok2 = run_folder("two")
    policy_pretrain(cfg, o2, tok2, fake_verb)
    assert len(calls) == 3
    second = read_json(o2 / "policy_pretrain" / "pretrain.json")
    assert second["reused"] is True and second["key"] == first["key"]
    assert second["seconds_to_make"] == first["seconds_to_make"]
    assert (o2 / "policy_pretrain" / "run").resolve() == (o1 / "policy_pretrain" / "run").resolve()
    # another codec: another key, trained afresh
    (o2 / "codec" / "codec.safetensors").write_bytes(b"other weights")
    policy_pretrain(cfg, o2, tok2, fake_verb)
    assert len(calls) == 6 and read_json(o2 / "policy_pretrain" / "pretrain.json")["key"] != first["key"]


def test_two_folds_stages_hold_out_each_speaker_in_its_own_fold(tmp_path):
    """Two folds: shared data / codec / tokens / RM pre-training / policy; per fold (named <stage>@<speaker>,
    under folds/<speaker>/) the RMs and judges leave out that fold's speaker only, every system runs
    with that fold's RMs and is audited as that speaker; a plain stage name in force= widens to every
    fold."""
    from rrpo.experiment import expand_force

    cfg = ExperimentConfig(content="spectral", seeds=[0], systems=TWO, heldout_speakers=["ZhaoZuoxiang", "liuchanhg"])
    stages = build_stages(cfg, tmp_path, tmp_path / "o", main)
    o = (tmp_path / "o").resolve()
    names = [s.name for s in stages]
    by = {s.name: s for s in stages}
    for shared in ("data", "codec", "tokens_casia", "rm_pretrain", "policy_pretrain", "sft", "report", "results"):
        assert names.count(shared) == 1
    # the judge's extra corpora are prepared, and tokenised only where a reward model or the policy reads them
    assert {n for n in names if n.startswith("tokens_")} == {
        f"tokens_{c}" for c in ("casia", "esd", "synth", "ased", "nemo", "urdu")
    }
    assert "tokens_urdu" not in {
        s.name
        for s in build_stages(dataclasses.replace(cfg, rm_pretrain_corpora=["nemo"]), tmp_path, tmp_path / "o", main)
    }
    for h, other in (("ZhaoZuoxiang", "liuchanhg"), ("liuchanhg", "ZhaoZuoxiang")):
        f = o / "folds" / h
        for st in ("rm_vanilla", "rm_robust", "rm_eval", "judge", "judge_eval", "judge2", "judges"):
            assert f"{st}@{h}" in by and by[f"{st}@{h}"].folder.is_relative_to(f)
        assert f"data.exclude_speakers=[{h}]" in by[f"rm_vanilla@{h}"].action
        assert f"exclude_speakers=[{h}]" in by[f"judge@{h}"].action
        assert not any(other in a for a in by[f"judge@{h}"].action)  # the other fold's speaker is trained on
        judge = " ".join(by[f"judge@{h}"].action)  # every labelled corpus but ESD; speakers covering all 5 classes
        assert all(f"data/{c}.jsonl" in judge for c in ("casia", "ased", "nemo", "urdu")) and "esd" not in judge
        assert "min_group_classes=5" in judge
        run = by[f"rrpo_s0@{h}"].action
        assert f"prompts.exclude_speakers=[{h}]" in run and f"path: {f / 'rm' / 'robust'}" in " ".join(run)
        assert f"policy={o / 'sft'}" in run  # one starting policy for both folds
        audit = by[f"audit_rrpo_s0@{h}"].action
        assert f"prompts.speakers=[{h}]" in audit and f"judge={f / 'judge'}" in audit
    assert names.index("judge_eval@liuchanhg") < names.index("sft") < names.index("diffro_s0@ZhaoZuoxiang")
    report = by["report"].action
    assert "seed 0, liuchanhg" in " ".join(report) and str(o / "folds" / "liuchanhg" / "runs" / "rrpo_s0") in " ".join(
        report
    )
    assert expand_force(["rm_vanilla", "sft", "judge@liuchanhg"], names) == {
        "rm_vanilla@ZhaoZuoxiang",
        "rm_vanilla@liuchanhg",
        "sft",
        "judge@liuchanhg",
    }
    assert expand_force(["nonsense"], names) == {"nonsense"}  # refused by the stage runner


def test_prepare_data_codec_hears_no_heldout_speaker(tmp_path):
    _prepare_tiny(tmp_path)
    assert {u.speaker for u in read_manifest(tmp_path / "out" / "casia_codec.jsonl")} == {"liuchanhg"}


def test_heldout_speakers_errors_name_the_key():
    from rrpo.errors import ConfigError

    for over, message in (
        (["heldout_speakers=[]"], "at least one"),
        (["heldout_speakers=[a, a]"], "twice"),
        (["judge_corpora=[nemo]"], "must include casia"),
        (["judge_corpora=[casia, esd]"], "must not include esd"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(ExperimentConfig, None, over)


def test_two_folds_pool_into_the_results(tmp_path):
    """The fake audits of _fake_run in each of two folds (fold B's judge hears its speaker's real speech at
    0.8 instead of 0.592). Per-run rows name fold and seed; the means pool 2 folds × 2 seeds (identical
    folds: the same means as one fold); the real-speech ceiling pools the folds by utterances: 3 of 5 and
    4 of 5 right → 7 / 10 = 0.7; the table names both folds."""
    folds = ["ZhaoZuoxiang", "liuchanhg"]
    for h in folds:
        _fake_run(tmp_path / "folds" / h, real_right=4 if h == "liuchanhg" else 3)
        # the second judge's labels of each run (one utterance, right in fold B only) and its evaluation
        (tmp_path / "folds" / h / "judge2" / "eval").mkdir(parents=True)
        (tmp_path / "folds" / h / "judge2" / "eval" / "casia_heldout.json").write_text(
            json.dumps({"n": 250, "wa": 0.5})
        )
        right = h == "liuchanhg"
        row = {"id": "t0_sad", "emotion": "sad", "judge_pred_first": "sad", "judge_pred": "sad" if right else "angry"}
        row.update(judge_correct=right, judge_target_prob=0.5)
        for s in (0, 1):
            for m in ("diffro", "rrpo"):
                (tmp_path / "folds" / h / "judges").mkdir(exist_ok=True)
                (tmp_path / "folds" / h / "judges" / f"{m}_s{s}.json").write_text(
                    json.dumps({"start": {"step": 0, "utterances": [row]}, "final": {"step": 8, "utterances": [row]}})
                )
    (tmp_path / "folds" / "liuchanhg" / "judge" / "eval" / "casia_heldout.json").write_text(
        json.dumps({"n": 250, "wa": 0.8, "ua": 0.79})
    )
    cfg = ExperimentConfig(content="spectral", seeds=[0, 1], systems=TWO, heldout_speakers=folds)
    res = write_results(tmp_path, cfg)
    assert res["folds"] == folds
    rows = res["per_seed"]["rrpo"]
    assert [(r["fold"], r["seed"]) for r in rows] == [
        ("ZhaoZuoxiang", 0),
        ("liuchanhg", 0),
        ("ZhaoZuoxiang", 1),
        ("liuchanhg", 1),
    ]
    # 0.6, 0.6, 0.7, 0.7: mean 0.65, sample std sqrt(4 · 0.05² / 3)
    assert res["summary"]["rrpo"]["judge_acc"] == pytest.approx((0.65, math.sqrt(0.01 / 3)))
    real = res["ceilings"]["ceiling_real"]["judge_acc"]
    assert (
        real["stat"] == pytest.approx(0.7)
        and real["n"] == 10
        and real["folds"] == {"ZhaoZuoxiang": 0.6, "liuchanhg": 0.8}
    )
    assert set(res["reward_models"]) == set(folds) and res["judge"]["liuchanhg"]["casia_heldout"]["wa"] == 0.8
    table = (tmp_path / "results" / "table.md").read_text()
    assert "4 run(s): 2 seed(s) (0, 1) × 2 fold(s)" in table and "`liuchanhg`" in table
    assert "| ceiling: real held-out speech | 70.0 [" in table
    assert "| casia_heldout | liuchanhg | 250 | 80.0 | 79.0 |" in table
    # the second judge pools both folds' re-judged runs: 2 folds x 2 seeds x 1 utterance, right in fold B
    j2 = res["second_judge"]
    assert set(j2["eval"]) == set(folds) and j2["label_agreement"]["sft"]["n"] == 4
    assert j2["intervals"]["rrpo"]["judge_acc"]["stat"] == 0.5
    assert j2["intervals"]["rrpo"]["judge_acc"]["folds"] == {"ZhaoZuoxiang": 0.0, "liuchanhg": 1.0}


def test_each_seed_optimises_against_its_own_reward_models(tmp_path):
    """rm_seed_per_run (default): seed 1's DiffRO / GRPO / watch runs use rm/vanilla_s1, its RRPO run
    rm/robust_s1 (the stage the ensemble already needs, not a second one); seed 0 keeps rm/vanilla and
    rm/robust; the ensemble's members are the same for every seed. Off: one reward model per method."""
    from rrpo.experiment import rm_seed

    cfg = ExperimentConfig(content="spectral", seeds=[0, 1], heldout_speakers=ONE)
    stages = build_stages(cfg, tmp_path, tmp_path / "o", main)
    names = [s.name for s in stages]
    opt = {s.name: s.action for s in stages}
    o = (tmp_path / "o").resolve()
    assert names.count("rm_robust_s1") == 1 and names.count("rm_vanilla_s1") == 1 and "rm_vanilla_s2" not in names
    assert "train.seed=1" in opt["rm_vanilla_s1"] and not any(a.startswith("reg.") for a in opt["rm_vanilla_s1"])
    assert names.index("rm_vanilla_s1") < names.index("diffro_s1")
    for run, rm in (("diffro_s1", "vanilla_s1"), ("grpo_s1", "vanilla_s1"), ("diffro_watch_s1", "vanilla_s1"),
                    ("rrpo_s1", "robust_s1"), ("diffro_s0", "vanilla"), ("rrpo_s0", "robust")):  # fmt: skip
        assert f"path: {o / 'rm' / rm}}}" in " ".join(opt[run]), run
    for s in (0, 1):
        ens = " ".join(opt[f"rrpo_ensemble_s{s}"])
        assert all(str(o / "rm" / m) in ens for m in ("robust", "robust_s1", "robust_s2"))
    assert [rm_seed(cfg, cfg.systems[m], 1) for m in ("diffro", "rrpo", "rrpo_ensemble")] == [1, 1, 0]
    off = dataclasses.replace(cfg, rm_seed_per_run=False)
    opt_off = {s.name: s.action for s in build_stages(off, tmp_path, tmp_path / "o", main)}
    assert "rm_vanilla_s1" not in opt_off and f"path: {o / 'rm' / 'vanilla'}}}" in " ".join(opt_off["diffro_s1"])
    assert rm_seed(off, off.systems["diffro"], 1) == 0


def test_a_rise_from_zero_artifacts_is_shown_as_values(tmp_path):
    """SFT without artifacts (every start point 0 /s), DiffRO's last step 0.05 clicks + 0.02 bursts =
    0.07 /s: the verdict line reads 'artifacts 0 → 0.070', not an infinite ratio; RRPO's 0 stays 1.00×."""
    _fake_run(tmp_path)
    for f in tmp_path.glob("runs/*/audit/audit.json"):
        a = json.loads(f.read_text())
        for k in ("clicks", "bursts"):
            a["start"]["artifacts"][k]["events_per_s"] = 0.0
            a["final"]["artifacts"][k]["events_per_s"] = (
                {"clicks": 0.05, "bursts": 0.02}[k] if "diffro" in str(f) else 0.0
            )
        a["points"] = [a["start"], a["final"]]
        f.write_text(json.dumps(a))
    write_results(tmp_path, ExperimentConfig(seeds=[0, 1], systems=TWO, heldout_speakers=ONE))
    table = (tmp_path / "results" / "table.md").read_text()
    assert "artifacts 0 → 0.070 (SFT's is 0)" in table and "artifacts 1.00×" in table and "inf×" not in table


def test_first_flags_worked_by_hand():
    """Points at steps 0, 60, 120: the naturalness flag fires at 60 (token repetition) and again at 120,
    the emotion flag at 120 only → naturalness {60, √KL 2.5, [token_repetition]}, emotion {120, 3.0};
    a path without flags gives None for both."""
    from rrpo.experiment import first_flags

    def pt(step, kl, emo, nat):
        sig = {"token_repetition": {"flag": nat}, "typicality": {"flag": False}}
        return {
            "step": step,
            "sqrt_kl": kl,
            "flags": {"emotion": {"flag": emo}, "naturalness": {"flag": nat, "signals": sig}},
        }

    aud = {"points": [pt(0, 0.0, False, False), pt(60, 2.5, False, True), pt(120, 3.0, True, True)]}
    assert first_flags(aud) == {
        "emotion": {"step": 120, "sqrt_kl": 3.0},
        "naturalness": {"step": 60, "sqrt_kl": 2.5, "signals": ["token_repetition"]},
    }
    assert first_flags({"points": [pt(0, 0.0, False, False)]}) == {"emotion": None, "naturalness": None}


def _phone_rows(n: int, edits: int, phones: int, prefix: str = "u") -> list[dict]:
    return [{"id": f"{prefix}{i}", "phone_edits": edits, "phones": phones, "per": edits / phones} for i in range(n)]


def _per_summary(rate: float) -> dict:
    return {"n": 4, "per": {"stat": rate, "lo": rate, "hi": rate}, "sub": rate, "del": 0.0, "ins": 0.0}


def test_per_in_the_tables_the_ceilings_and_the_verdicts(tmp_path):
    """_fake_run's audits with a phone judge: 4 utterances of 10 phonemes per point; SFT 1 edit each
    (PER 0.1), DiffRO's last step 3 (0.3), RRPO's 1 (0.1); the real ceiling 1 edit of 20 (0.05), the codec
    ceiling 1 of 10 (0.1). Means: DiffRO 0.3, SFT 0.1 (every seed alike, std 0); the verdicts' PER ratios
    to SFT 3.00x (DiffRO) and 1.00x (RRPO); the pooled intervals 0.3 [0.3, 0.3], the ceilings' 0.05 and
    0.1; the paired RRPO − DiffRO difference 0.1 − 0.3 = −0.2."""
    _fake_run(tmp_path)
    for f in tmp_path.glob("runs/*/audit/audit.json"):
        a = json.loads(f.read_text())
        e = 3 if "diffro" in f.parent.parent.name else 1
        a["start"] |= {"utterances": _phone_rows(4, 1, 10), "per": _per_summary(0.1)}
        a["final"] |= {"utterances": _phone_rows(4, e, 10), "per": _per_summary(e / 10)}
        a["points"] = [a["start"], a["final"]]
        for name, (edits, phones) in (("real", (1, 20)), ("codec", (1, 10))):
            c = a["ceilings"][name]
            for u, ph in zip(c["utterances"], _phone_rows(5, edits, phones, "r")):
                u.update({k: v for k, v in ph.items() if k != "id"})
        f.write_text(json.dumps(a))
    res = write_results(tmp_path, ExperimentConfig(seeds=[0, 1], systems=TWO, heldout_speakers=ONE))
    s = res["summary"]
    assert s["diffro"]["per"] == pytest.approx((0.3, 0.0)) and s["sft"]["per"] == pytest.approx((0.1, 0.0))
    v = res["verdicts"]
    assert v["diffro_hacks"]["quality_ratios_vs_sft"]["per"] == pytest.approx(3.0)
    assert v["rrpo_goal"]["quality_ratios_vs_sft"]["per"] == pytest.approx(1.0)
    iv = res["stats"]["intervals"]
    assert (iv["diffro"]["per"]["stat"], iv["diffro"]["per"]["lo"], iv["diffro"]["per"]["hi"]) == pytest.approx(
        (0.3, 0.3, 0.3)
    )
    assert iv["ceiling_real"]["per"]["stat"] == pytest.approx(0.05) and iv["ceiling_real"]["per"]["n"] == 5
    assert res["ceilings"]["ceiling_codec"]["per"]["stat"] == pytest.approx(0.1)
    assert res["stats"]["paired"]["rrpo-diffro"]["per"]["diff"] == pytest.approx(-0.2)
    table = (tmp_path / "results" / "table.md").read_text()
    assert "| atypical share | PER | √KL to SFT |" in table  # the main table
    assert "| 0.300 ± 0.000 | 0.500 ± 0.000 |" in table  # DiffRO's PER, then its √KL
    assert "| token repetition | PER |" in table  # the interval table
    assert "| DiffRO (vanilla RM) | 8 |" in table and "0.300 [0.300, 0.300] (0.300, 0.300) |" in table
    assert "| typicality | atypical share | PER |" in table  # SFT beside the ceilings
    assert "| ceiling: real held-out speech | 60.0 [" in table and "| 0.050 [0.050, 0.050] |" in table
    assert "every artifact rate / distance / PER > 1.10× SFT's" in table and "per 3.00×" in table


def test_phone_judge_is_given_to_every_audit(tmp_path):
    """phone_judge=DIR: every audit stage gets phone_judge=<DIR resolved> (a line the CLI accepts); a
    folder that is no phone model is refused when the stages are built; the default gives no audit one."""
    (tmp_path / "pj").mkdir()
    cfg = ExperimentConfig(
        content="spectral", seeds=[0], systems=TWO, heldout_speakers=ONE, phone_judge=str(tmp_path / "pj")
    )
    with pytest.raises(RrpoError, match="not a phone model folder"):
        build_stages(cfg, tmp_path, tmp_path / "o", main)
    (tmp_path / "pj" / "phones.json").write_text("{}")
    opt = {s.name: s.action for s in build_stages(cfg, tmp_path, tmp_path / "o", main)}
    audits = [n for n in opt if n.startswith("audit_")]
    assert audits == ["audit_diffro_s0", "audit_rrpo_s0"]
    for n in audits:
        assert f"phone_judge={(tmp_path / 'pj').resolve()}" in opt[n]
        build_parser().parse_args(list(opt[n]))
    plain = {
        s.name: s.action for s in build_stages(dataclasses.replace(cfg, phone_judge=""), tmp_path, tmp_path / "o", main)
    }
    assert not any(a.startswith("phone_judge=") for n in audits for a in plain[n])
