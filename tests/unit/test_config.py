"""Configs: YAML into nested dataclasses, ``a.b=c`` overrides, and errors that name the key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from rrpo.config import check, describe, dump_config, load_config, option, parse_override, read_yaml, section, to_dict
from rrpo.errors import ConfigError


@dataclass
class Optim:
    lr: float = option(3e-4, "peak learning rate")
    betas: tuple[float, float] = option((0.9, 0.98), "AdamW betas")
    schedule: Literal["constant", "cosine"] = option("cosine", "decay")

    def __post_init__(self):
        check(self.lr > 0, "optim.lr", "must be > 0")


@dataclass
class Model:
    dims: list[int] = option([64, 64], "layer widths")
    dropout: float | None = option(None, "dropout (none = off)")
    name: str = option("tiny", "model name")


@dataclass
class Exp:
    optim: Optim = section(Optim, "optimiser")
    model: Model = section(Model, "model")
    steps: int = option(100, "optimiser steps")
    bf16: bool = option(True, "bf16 autocast")
    classes: tuple[str, ...] = option(("neutral", "happy"), "class set")
    weights: dict[str, float] = option({}, "per-class weights")
    out: Path = option(Path("runs/x"), "output folder")


def yaml_file(tmp_path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_and_independent_mutables():
    a, b = load_config(Exp), load_config(Exp)
    assert a == Exp() and a.optim.lr == 3e-4 and a.model.dims == [64, 64]
    a.model.dims.append(1)
    assert b.model.dims == [64, 64]


def test_nested_file_and_overrides(tmp_path):
    p = yaml_file(tmp_path, "steps: 5\noptim:\n  lr: 1e-3\n  betas: [0.8, 0.9]\nmodel:\n  dims: [8, 16, 32]\n")
    cfg = load_config(Exp, p, ["optim.lr=2e-4", "model.dropout=0.1", "bf16=false", "optim.schedule=constant"])
    assert cfg.steps == 5
    assert cfg.optim.lr == 2e-4 and isinstance(cfg.optim.lr, float)  # override wins over the file
    assert cfg.optim.betas == (0.8, 0.9) and isinstance(cfg.optim.betas, tuple)
    assert cfg.optim.schedule == "constant"
    assert cfg.model.dims == [8, 16, 32] and cfg.model.dropout == 0.1 and cfg.model.name == "tiny"
    assert cfg.bf16 is False


@pytest.mark.parametrize("text,value", [("1e-4", 1e-4), ("3", 3.0), ("0.5", 0.5), ("1.5e+2", 150.0), ("2E-3", 2e-3)])
def test_floats_in_every_spelling(tmp_path, text, value):
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; a float field still accepts it."""
    assert load_config(Optim, None, [f"lr={text}"]).lr == value
    assert load_config(Optim, yaml_file(tmp_path, f"lr: {text}\n")).lr == value


def test_tuples_lists_dicts_paths(tmp_path):
    cfg = load_config(
        Exp, None, ["optim.betas=[0.5, 1]", "classes=[sad, angry, happy]", "weights={sad: 2}", "out=elsewhere/run"]
    )
    assert cfg.optim.betas == (0.5, 1.0) and all(isinstance(b, float) for b in cfg.optim.betas)
    assert cfg.classes == ("sad", "angry", "happy")
    assert cfg.weights == {"sad": 2.0}
    assert cfg.out == Path("elsewhere/run") and isinstance(cfg.out, Path)
    with pytest.raises(ConfigError, match=r"config key 'optim.betas': expected 2 items, got 3"):
        load_config(Exp, None, ["optim.betas=[0.1, 0.2, 0.3]"])
    with pytest.raises(ConfigError, match=r"config key 'model.dims\[1\]': expected an integer, got 'x'"):
        load_config(Exp, None, ["model.dims=[1, x]"])
    with pytest.raises(ConfigError, match=r"config key 'optim.betas': expected a list, got 0.9"):
        load_config(Exp, None, ["optim.betas=0.9"])


def test_literal():
    with pytest.raises(ConfigError, match=r"config key 'optim.schedule': 'linear' is not one of 'constant', 'cosine'"):
        load_config(Exp, None, ["optim.schedule=linear"])


def test_optional():
    assert load_config(Exp, None, ["model.dropout=null"]).model.dropout is None
    with pytest.raises(ConfigError, match=r"config key 'model.dropout': expected"):
        load_config(Exp, None, ["model.dropout=high"])


@pytest.mark.parametrize(
    "override,message",
    [
        ("steps=abc", "config key 'steps': expected an integer, got 'abc'"),
        ("steps=2.5", "config key 'steps': expected an integer, got 2.5"),
        ("steps=true", "config key 'steps': expected an integer, got True"),
        ("bf16=1", "config key 'bf16': expected true or false, got 1"),
        ("optim.lr=fast", "config key 'optim.lr': expected a number, got 'fast'"),
        ("optim.lr=true", "config key 'optim.lr': expected a number, got True"),
        ("model.name=[a]", "config key 'model.name': expected a string, got ['a']"),
        ("optim=3", "config key 'optim': expected a section (mapping), got 3"),
    ],
)
def test_wrong_type_names_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(Exp, None, [override])
    assert message in e.value.reason


def test_unknown_key_named_with_dotted_path(tmp_path):
    with pytest.raises(
        ConfigError, match=r"unknown config key 'optim.lr_max' \(known at this level: betas, lr, schedule\)"
    ):
        load_config(Exp, None, ["optim.lr_max=1"])
    p = yaml_file(tmp_path, "model:\n  dims: [4]\n  layers: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'model.layers'") as e:
        load_config(Exp, p)
    assert e.value.path == str(p)
    with pytest.raises(ConfigError, match=r"unknown config key 'stpes'"):
        load_config(Exp, yaml_file(tmp_path, "stpes: 3\n"))


def test_errors_blame_the_file_or_the_command_line(tmp_path):
    p = yaml_file(tmp_path, "steps: many\n")
    with pytest.raises(ConfigError) as e:
        load_config(Exp, p)
    assert e.value.path == str(p) and e.value.format().startswith(f"{p}: config key 'steps'")
    with pytest.raises(ConfigError) as e:
        load_config(Exp, yaml_file(tmp_path, "steps: 3\n"), ["optim.lr=fast"])
    assert e.value.path is None and e.value.reason.endswith("(from the command line)")
    with pytest.raises(ConfigError) as e:
        load_config(Exp, yaml_file(tmp_path, "steps: 3\n"), ["no_such.key=1"])
    assert e.value.path is None and "unknown config key 'no_such'" in e.value.reason


def test_post_init_check():
    with pytest.raises(ConfigError, match=r"config key 'optim.lr': must be > 0"):
        load_config(Exp, None, ["optim.lr=0"])


def test_bad_files_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Exp, tmp_path / "none.yaml")
    p = yaml_file(tmp_path, "steps: 3\noptim:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        read_yaml(p)
    assert e.value.path == str(p) and e.value.line is not None and e.value.line >= 3
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(Exp, yaml_file(tmp_path, "- 1\n- 2\n"))
    assert load_config(Exp, yaml_file(tmp_path, "")) == Exp()
    with pytest.raises(ConfigError, match="not of the form section.key=value"):
        load_config(Exp, None, ["steps"])
    with pytest.raises(ConfigError, match="'steps' is not a section"):
        load_config(Exp, yaml_file(tmp_path, "steps: 3\n"), ["steps.x=1"])


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override(" a = [1, 2]") == ("a", [1, 2])
    assert parse_override("a=x=y") == ("a", "x=y")
    assert parse_override("a=") == ("a", "")
    assert parse_override("a=[1, 2") == ("a", "[1, 2")


def test_dump_and_reload_round_trip(tmp_path):
    cfg = load_config(Exp, None, ["optim.lr=1e-4", "classes=[sad, happy]", "weights={sad: 0.5}", "out=/tmp/r"])
    dump_config(cfg, tmp_path / "config.yaml")
    assert load_config(Exp, tmp_path / "config.yaml") == cfg
    d = to_dict(cfg)
    assert d["optim"]["betas"] == [0.9, 0.98] and d["out"] == "/tmp/r"


def test_describe_lists_dotted_keys():
    rows = {k: (default, help_) for k, default, help_ in describe(Exp)}
    assert rows["optim.lr"] == ("0.0003", "peak learning rate")
    assert rows["model.dims"] == ("[64, 64]", "layer widths")
    assert rows["optim"] == ("", "optimiser")


def test_train_config(tmp_path):
    from rrpo.train.loop import TrainConfig

    p = yaml_file(tmp_path, "steps: 10\nlr: 1e-4\nbetas: [0.9, 0.95]\nschedule: linear\n")
    cfg = load_config(TrainConfig, p, ["grad_accum=2"])
    assert (cfg.steps, cfg.lr, cfg.betas, cfg.schedule, cfg.grad_accum) == (10, 1e-4, (0.9, 0.95), "linear", 2)
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'") as e:
        load_config(TrainConfig, yaml_file(tmp_path, "learning_rate: 1e-4\n"))
    assert e.value.path == str(tmp_path / "cfg.yaml")
    with pytest.raises(ConfigError, match="config key 'batch_size': expected an integer, got 'big'"):
        load_config(TrainConfig, yaml_file(tmp_path, "batch_size: big\n"))
    with pytest.raises(ConfigError, match="must be >= 1"):
        load_config(TrainConfig, None, ["grad_accum=0"])
