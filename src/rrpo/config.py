"""Configs: YAML files loaded into nested dataclasses, with ``section.key=value`` overrides.

Every config is a dataclass whose fields are declared with :func:`option`, which carries a one-line
help text. A class attribute ``RENAMED = {"old": "new"}`` turns an earlier spelling of a key into an
error naming the new one. Loading checks every key against the dataclass: an unknown key or a value of the wrong
type raises :class:`~rrpo.errors.ConfigError` naming the dotted key, and ``__post_init__`` checks
ranges. The resolved config is written back with :func:`dump_config` into each run directory.

Example::

    @dataclass
    class Optim:
        lr: float = option(1e-4, "peak learning rate")

    @dataclass
    class Train:
        optim: Optim = section(Optim, "optimiser settings")
        steps: int = option(100, "optimiser steps")

    cfg = load_config(Train, "train.yaml", ["optim.lr=3e-4"])
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from rrpo.errors import ConfigError, RrpoError

T = TypeVar("T")


def option(default: Any, help: str, **kwargs) -> Any:
    """A config field with a default and a one-line help text."""
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def section(cls: type, help: str) -> Any:
    """A nested config section (a dataclass) built from its defaults."""
    return dataclasses.field(default_factory=cls, metadata={"help": help})


def check(cond: bool, key: str, reason: str) -> None:
    """Raise a ConfigError for ``key`` unless ``cond`` holds (use in ``__post_init__``)."""
    if not cond:
        raise ConfigError(f"config key '{key}': {reason}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted where lossless."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(f"config key '{key}': {value!r} is not one of {choices}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a section (mapping), got {value!r}")
        return _build(tp, value, key + ".")
    if origin in (list, tuple):
        if value is None:
            raise ConfigError(f"config key '{key}': expected a list, got null (write [] for an empty list)")
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"config key '{key}': expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    if isinstance(tp, type) and issubclass(tp, os.PathLike) and isinstance(value, (str, os.PathLike)):
        return tp(value)  # a path field; to_dict writes paths as strings, so they must read back
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls: type[T], data: dict, prefix: str = "", also_known: tuple[str, ...] = ()) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    renamed = getattr(cls, "RENAMED", {})
    for k in data:
        if k not in fields and k in renamed:
            raise ConfigError(f"config key '{prefix}{k}' is now '{prefix}{renamed[k]}'")
        if k not in fields:
            known = ", ".join(sorted([*fields, *also_known]))
            raise ConfigError(f"unknown config key '{prefix}{k}' (known at this level: {known})")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config section '{prefix.rstrip('.') or cls.__name__}': {e}") from None


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"config override '{dotted}': '{p}' is not a section")
        cur = nxt
    cur[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``a.b=value``; the value is read as YAML (``3``, ``1e-4``, ``true``, ``[1, 2]``)."""
    if "=" not in text:
        raise ConfigError(f"config override '{text}' is not of the form section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"config override '{text}' has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


#: The configs shipped inside the package; ``configs/`` at the repository root links here, so a
#: checkout and an installed wheel read the same files.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def shipped_configs() -> dict[str, Path]:
    """Name (``demo_tiny.yaml``) -> path of every config shipped with rrpo."""
    return {p.name: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


def find_config(path: str | os.PathLike) -> Path:
    """``path`` itself when it exists; else, for a bare name (``demo_tiny``, ``demo_tiny.yaml``) or
    ``configs/NAME.yaml``, the shipped config of that name (so the README's commands work from an
    installed wheel, outside a checkout). Anything else is returned unchanged."""
    p = Path(path)
    if p.exists() or p.parent not in (Path("."), Path("configs")):
        return p
    shipped = shipped_configs()
    return shipped.get(p.name if p.suffix else p.name + ".yaml", p)


def read_yaml(path: str | os.PathLike) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        names = ", ".join(n.removesuffix(".yaml") for n in shipped_configs())
        raise ConfigError(f"config file not found (shipped configs, usable by name: {names})", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config ({e})", path) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise ConfigError("not valid YAML", path, None if line is None else line + 1) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("a config file must hold a mapping at the top level", path)
    return data


def load_config(
    cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] | tuple = (), io: type | None = None
) -> Any:
    """Build ``cls`` from a YAML file (optional) and ``key=value`` overrides applied on top.

    With ``io`` (a dataclass of a verb's inputs and outputs, e.g. ``out``), the top-level keys that
    are fields of ``io`` build an ``io`` instance and the rest build ``cls``: one key space on the
    command line and in the file, two objects; returns ``(cfg, io)``."""
    path = find_config(path) if path else None
    data = read_yaml(path) if path else {}
    override_keys = []
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
        override_keys.append(key)
    try:
        if io is None:
            return _build(cls, data)
        io_keys = tuple(f.name for f in dataclasses.fields(io) if f.init)
        io_data = {k: data.pop(k) for k in list(data) if k in io_keys}
        cfg = _build(cls, data, also_known=io_keys)
        return cfg, _build(io, io_data)
    except ConfigError as e:
        if path is not None and e.path is None:
            if _from_override(e.reason, override_keys):
                raise ConfigError(f"{e.reason} (from the command line)") from None
            raise ConfigError(e.reason, path) from None
        raise


def _from_override(reason: str, override_keys: list[str]) -> bool:
    """Whether the key an error names was set on the command line (so the file is not to blame)."""
    m = re.search(r"key '([^']+)'", reason)
    if not m:
        return False
    key = m.group(1)
    return any(key == k or key.startswith((k + ".", k + "[")) or k.startswith(key + ".") for k in override_keys)


def to_dict(cfg: Any) -> Any:
    """Plain-data view of a config (dataclasses to dicts, tuples to lists)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def dump_config(cfg: Any, path: str | os.PathLike) -> None:
    from rrpo.io import atomic_open

    with atomic_open(path) as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False, allow_unicode=True)


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every field, for ``--help-config``."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        help_ = f.metadata.get("help", "")
        if dataclasses.is_dataclass(tp):
            rows.append((prefix + f.name, "", help_))
            rows.extend(describe(tp, prefix + f.name + "."))
        else:
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else (f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
            )
            rows.append((prefix + f.name, repr(default), help_))
    return rows


__all__ = [
    "option",
    "section",
    "check",
    "load_config",
    "find_config",
    "shipped_configs",
    "CONFIG_DIR",
    "dump_config",
    "to_dict",
    "describe",
    "parse_override",
    "read_yaml",
    "ConfigError",
    "RrpoError",
]
