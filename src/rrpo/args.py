"""The command-line grammar every verb shares: ``--config FILE`` plus trailing ``key=value``
overrides, for everything a verb takes, its inputs and outputs included (``out=DIR``), and
``--help-config`` listing every key. Lists are YAML lists: ``speakers=[a, b]``.

A verb's keys are its config dataclass and, where the config is also a library's (a model's or a
trainer's settings), a second small dataclass of the verb's inputs and outputs (``io``); both read
from the same key space. Flags of earlier releases (``--out DIR``, ``--speakers a b``) are refused
with a one-line hint giving the key to write instead.

Verbs import these from here (not from :mod:`rrpo.cli`, which imports the verbs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, Literal, TypeVar

from rrpo.config import ConfigError, describe, load_config

T = TypeVar("T")

#: How an earlier flag maps to a key: a scalar value, a list, or a switch that means true / false.
Kind = Literal["value", "list", "true", "false"]


def add_config_args(
    parser: argparse.ArgumentParser,
    cls: type,
    default: str | None = None,
    *,
    io: type | None = None,
    old: dict[str, tuple[str, Kind]] | None = None,
    bare: str | None = None,
) -> None:
    """``--config FILE``, trailing ``key=value`` overrides and ``--help-config`` for ``cls`` (and
    ``io``). ``old`` maps a retired flag to ``(key, kind)``: using it exits with a one-line hint.
    ``bare`` names the key a bare word (no ``=``) was meant for, for the same kind of hint."""
    if io is not None:
        clash = {f.name for f in dataclasses.fields(io)} & {f.name for f in dataclasses.fields(cls)}
        assert not clash, f"{io.__name__} and {cls.__name__} both declare {sorted(clash)}"
    parser.add_argument("--config", default=default, help="YAML config file (defaults apply without one)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config keys, e.g. out=runs/x train.lr=3e-4 'speakers=[a, b]'"
    )
    parser.add_argument("--help-config", action=_HelpConfig, classes=(io, cls), help="list every config key and exit")
    for flag, (key, kind) in (old or {}).items():
        parser.add_argument(flag, action=_OldSpelling, key=key, kind=kind)
    parser.set_defaults(_bare_key=bare)


class _HelpConfig(argparse.Action):
    def __init__(self, option_strings, dest, classes=(), **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)
        self.classes = [c for c in classes if c is not None]

    def __call__(self, parser, namespace, values, option_string=None):
        for cls in self.classes:
            for key, default, help_ in describe(cls):
                print(f"{key:<36} {default:<18} {help_}")
        parser.exit()


def yaml_list(values) -> str:
    """A list value for a ``key=value`` override that survives any path or name: ``["a b", "c:d"]``."""
    return json.dumps([str(v) for v in values], ensure_ascii=False)


def old_spelling_hint(flag: str, key: str, kind: Kind, values: list[str]) -> str:
    """The one line printed for a retired flag, e.g. ``--out runs/x`` -> ``... write out=runs/x``."""
    vals = [v for v in values if "=" not in v]  # a greedy flag also swallows the key=value words after it
    if kind == "true":
        example = f"{key}=true"
    elif kind == "false":
        example = f"{key}=false"
    elif kind == "list":
        items = [x.strip() for v in vals for x in v.split(",") if x.strip()] or ["..."]
        example = f"'{key}=[{', '.join(items)}]'"
    else:
        example = f"{key}={vals[0] if vals else 'VALUE'}"
    return f"{flag} is no longer a flag: every input and output is a config key; write {example}"


class _OldSpelling(argparse.Action):
    def __init__(self, option_strings, dest, key: str = "", kind: Kind = "value", **kw):
        nargs = 0 if kind in ("true", "false") else "*"
        super().__init__(option_strings, dest, nargs=nargs, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)
        self.key, self.kind = key, kind

    def __call__(self, parser, namespace, values, option_string=None):
        # kept on the namespace (the first one): rrpo.cli.main prints it as its one error line
        if not getattr(namespace, "old_spelling", None):
            namespace.old_spelling = old_spelling_hint(option_string, self.key, self.kind, list(values or []))


def config_from_args(
    cls: type[T], args: argparse.Namespace, extra: list[str] | None = None, io: type | None = None
) -> Any:
    """Build the verb's config from ``--config`` and overrides (``extra`` first, then the user's);
    with ``io``, return ``(config, io)`` read from the same keys (see :func:`rrpo.config.load_config`)."""
    overrides = list(args.overrides or [])
    bare = getattr(args, "_bare_key", None)
    for word in overrides:
        if "=" not in word:
            hint = f"write {bare}={word}" if bare else "write key=value"
            raise ConfigError(f"'{word}' is not key=value: every input and output is a config key; {hint}")
    return load_config(cls, args.config, list(extra or []) + overrides, io=io)
