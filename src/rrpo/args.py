"""The command-line grammar every verb shares: ``--config FILE`` plus trailing ``key=value`` overrides
of the verb's config dataclass, and ``--help-config`` listing every key.

Verbs import these from here (not from :mod:`rrpo.cli`, which imports the verbs).
"""

from __future__ import annotations

import argparse
from typing import TypeVar

from rrpo.config import describe, load_config

T = TypeVar("T")


def add_config_args(parser: argparse.ArgumentParser, cls: type, default: str | None = None) -> None:
    """``--config FILE`` plus trailing ``section.key=value`` overrides, and ``--help-config``."""
    parser.add_argument("--config", default=default, help="YAML config file (defaults apply without one)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.lr=3e-4")
    parser.add_argument("--help-config", action=_HelpConfig, cls=cls, help="list every config key and exit")


class _HelpConfig(argparse.Action):
    def __init__(self, option_strings, dest, cls=None, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)
        self.cls = cls

    def __call__(self, parser, namespace, values, option_string=None):
        for key, default, help_ in describe(self.cls):
            print(f"{key:<36} {default:<18} {help_}")
        parser.exit()


def config_from_args(cls: type[T], args: argparse.Namespace, extra: list[str] | None = None) -> T:
    """Build the verb's config from ``--config`` and overrides (``extra`` first, then the user's)."""
    return load_config(cls, args.config, list(extra or []) + list(args.overrides or []))
