"""run.json: how a run describes itself to the verbs that read it (audit, report), and the fallback
for optimisation runs written before run.json (their config.yaml read as plain YAML)."""

from __future__ import annotations

import json

import pytest

from rrpo.config import dump_config, load_config
from rrpo.errors import RrpoError
from rrpo.optimize.trainer import OptimizeConfig
from rrpo.runs import RUN_INFO, OptimizeRunInfo


def test_round_trip_and_layout(tmp_path):
    info = OptimizeRunInfo("grpo", "runs/sft", [{"name": "emo", "path": "runs/rm", "weight": 0.5}], "m.jsonl")
    info.write(tmp_path)
    assert json.loads((tmp_path / RUN_INFO).read_text()) == {
        "format": 1,
        "verb": "optimize",
        "algo": "grpo",
        "policy": "runs/sft",
        "rewards": [{"name": "emo", "path": "runs/rm", "weight": 0.5}],
        "manifest": "m.jsonl",
    }
    assert OptimizeRunInfo.read(tmp_path) == info


def test_old_run_without_run_json_is_read_from_its_config(tmp_path):
    cfg = load_config(
        OptimizeConfig,
        None,
        [
            "algo=reinforce",
            "policy=runs/sft",
            "prompts.manifest=m.jsonl",
            "rewards=[{name: a, path: rm1}, {name: b, path: rm2, weight: 2}]",
        ],
    )
    dump_config(cfg, tmp_path / "config.yaml")
    assert OptimizeRunInfo.read(tmp_path) == OptimizeRunInfo(
        "reinforce",
        "runs/sft",
        [{"name": "a", "path": "rm1", "weight": 1.0}, {"name": "b", "path": "rm2", "weight": 2.0}],
        "m.jsonl",
    )


def test_run_json_wins_over_a_config_the_reader_could_not_parse(tmp_path):
    """A renamed or removed OptimizeConfig key in config.yaml does not matter once run.json exists."""
    (tmp_path / "config.yaml").write_text("renamed_key: 1\n")
    OptimizeRunInfo("diffro", "p", [], "m").write(tmp_path)
    assert OptimizeRunInfo.read(tmp_path).policy == "p"


@pytest.mark.parametrize(
    "files, message",
    [
        ({}, "not an optimisation run folder \\(no run.json\\)"),
        ({RUN_INFO: '{"format": 1, "verb": "rm train"}'}, "a run of `rrpo rm train`, not of `rrpo optimize`"),
        ({RUN_INFO: '{"format": 9, "verb": "optimize", "algo": "diffro", "policy": "p"}'}, "format 9 is newer"),
        ({RUN_INFO: '{"format": 1, "verb": "optimize", "algo": "diffro"}'}, "lacks or mangles 'policy'"),
        ({"config.yaml": "out: x\n"}, "no 'policy' key"),
    ],
)
def test_unreadable_descriptions_are_one_line_errors(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(RrpoError, match=message) as e:
        OptimizeRunInfo.read(tmp_path)
    assert "\n" not in e.value.format()


def test_an_ensemble_term_keeps_its_members(tmp_path):
    """The audit rebuilds an ensemble term from run.json: members, aggregate and k survive; a plain
    term keeps name, path and weight only (what the optimiser wrote, to_dict with paths=[])."""
    from rrpo.runs import reward_folders

    cfg = load_config(
        OptimizeConfig,
        None,
        [
            "policy=p",
            "rewards=[{name: e, paths: [rm/s0, rm/s1], aggregate: mean_minus_std, std_weight: 0.5}, "
            "{name: f, path: rm/v}]",
        ],
    )
    from rrpo.config import to_dict

    OptimizeRunInfo("diffro", "p", [to_dict(r) for r in cfg.rewards], "m").write(tmp_path)
    ens, plain = OptimizeRunInfo.read(tmp_path).rewards
    assert ens == {
        "name": "e",
        "path": "rm/s0",
        "weight": 1.0,
        "paths": ["rm/s0", "rm/s1"],
        "aggregate": "mean_minus_std",
        "std_weight": 0.5,
    }
    assert plain == {"name": "f", "path": "rm/v", "weight": 1.0}
    assert reward_folders(ens) == ["rm/s0", "rm/s1"] and reward_folders(plain) == ["rm/v"]
