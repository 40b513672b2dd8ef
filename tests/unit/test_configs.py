"""Every shipped config parses into its verb's config class, and every pipeline override list
(``rrpo demo`` / ``rrpo experiment`` stages, the ablation's variants) is checked against the config
class of the verb it is given to when the pipeline's config is loaded."""

import dataclasses
import typing
from pathlib import Path

import pytest

from rrpo.config import CONFIG_DIR, find_config, load_config, shipped_configs
from rrpo.errors import ConfigError

from tests.conftest import REPO

#: shipped config -> "module:Class" of the verb that reads it (test_install.py reuses this)
SHIPPED = {
    "demo_tiny.yaml": "rrpo.demo:DemoConfig",
    "judge_mel.yaml": "rrpo.audit.mel_judge:MelJudgeConfig",
    "overoptimisation.yaml": "rrpo.experiment:ExperimentConfig",
    "paper_comparison.yaml": "rrpo.experiment:ExperimentConfig",
    "policy_sft_casia.yaml": "rrpo.policy.sft:SFTConfig",
    "rm_ablation.yaml": "rrpo.reward.ablation:AblationConfig",
    "rm_train.yaml": "rrpo.reward.train:RMTrainConfig",
}


def _cls(target):
    import importlib

    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def test_configs_at_the_root_are_the_shipped_ones():
    assert (REPO / "configs").resolve() == CONFIG_DIR
    assert sorted(p.name for p in (REPO / "configs").glob("*.yaml")) == sorted(shipped_configs())


def test_every_shipped_config_is_mapped_to_a_class():
    assert sorted(shipped_configs()) == sorted(SHIPPED), "add a new config to SHIPPED"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_config_loads(name):
    cfg = load_config(_cls(SHIPPED[name]), REPO / "configs" / name)
    assert dataclasses.is_dataclass(cfg)


def _list_fields(cls):
    hints = typing.get_type_hints(cls)
    return {f.name for f in dataclasses.fields(cls) if hints[f.name] == list[str]}


@pytest.mark.parametrize(
    "cls_path,extra", [("rrpo.demo:DemoConfig", set()), ("rrpo.experiment:ExperimentConfig", set())]
)
def test_every_stage_list_has_a_target(cls_path, extra):
    """A new stage override list must say which verb config it is checked against."""
    from rrpo.demo import OVERRIDE_TARGETS

    cls = _cls(cls_path)
    from rrpo.experiment import CORPUS_LISTS, EXPERIMENT_OVERRIDE_TARGETS

    is_exp = cls.__name__ == "ExperimentConfig"
    extra = set(EXPERIMENT_OVERRIDE_TARGETS) if is_exp else set()
    targets = set(OVERRIDE_TARGETS) | extra
    assert _list_fields(cls) - (set(CORPUS_LISTS) if is_exp else set()) == targets


@pytest.mark.parametrize("cls_path", ["rrpo.demo:DemoConfig", "rrpo.experiment:ExperimentConfig"])
def test_a_bad_key_in_any_stage_list_fails_at_load_naming_the_list(cls_path):
    from rrpo.experiment import CORPUS_LISTS

    cls = _cls(cls_path)
    for field in sorted(_list_fields(cls) - set(CORPUS_LISTS)):
        with pytest.raises(ConfigError) as e:
            load_config(cls, None, [f"{field}=[no_such_key=1]"])
        msg = e.value.format()
        assert f"config key '{field}'" in msg and "no_such_key" in msg and "\n" not in msg


def test_a_wrong_type_in_a_stage_list_fails_at_load():
    from rrpo.demo import DemoConfig

    with pytest.raises(ConfigError, match=r"'optimize'.*train.steps.*expected an integer"):
        load_config(DemoConfig, None, ["optimize=[train.steps=many]"])
    with pytest.raises(ConfigError, match=r"'sft'.*train.lr.*must be > 0"):  # __post_init__ ranges count too
        load_config(DemoConfig, None, ["sft=[train.lr=-1]"])


def test_a_bad_ablation_variant_fails_at_load():
    from rrpo.reward.ablation import AblationConfig

    with pytest.raises(ConfigError, match=r"variants.broken.*reg.label_smoothin"):
        load_config(AblationConfig, "rm_ablation", ["variants={broken: [reg.label_smoothin=0.1]}"])


def test_shipped_configs_are_found_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert find_config("demo_tiny") == CONFIG_DIR / "demo_tiny.yaml"
    assert find_config("demo_tiny.yaml") == CONFIG_DIR / "demo_tiny.yaml"
    assert find_config("configs/demo_tiny.yaml") == CONFIG_DIR / "demo_tiny.yaml"
    # another folder is never swapped for a shipped file
    assert find_config("elsewhere/demo_tiny.yaml") == Path("elsewhere/demo_tiny.yaml")
    (tmp_path / "demo_tiny.yaml").write_text("synth: []\n")
    assert find_config("demo_tiny.yaml").resolve() == tmp_path / "demo_tiny.yaml"  # a local file wins
    with pytest.raises(ConfigError, match=r"config file not found \(shipped configs, usable by name: demo_tiny"):
        from rrpo.demo import DemoConfig

        load_config(DemoConfig, "no_such_config")
