"""The ``rrpo`` command. Each verb lives beside the code it drives, in a module with a
``register(subparsers)`` function; the verb itself is a small function over a config dataclass.

A user-caused error (:class:`~rrpo.errors.RrpoError`) prints one line ``rrpo: error: FILE:LINE:
reason`` and exits with status 2; nothing is half-written because every writer is atomic.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any, Callable, TypeVar

from rrpo.config import describe, load_config
from rrpo.errors import RrpoError

T = TypeVar("T")

#: Modules that contribute verbs, in the order ``rrpo --help`` lists them.
VERB_MODULES: tuple[str, ...] = (
    "rrpo.data.commands",
    "rrpo.codec.commands",
    "rrpo.reward.commands",
    "rrpo.policy.commands",
    "rrpo.optimize.commands",
    "rrpo.audit.commands",
    "rrpo.report.commands",
    "rrpo.demo",
    "rrpo.experiment",
)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rrpo",
        description="Robust reward policy optimisation for emotional LLM-based TTS.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--traceback", action="store_true", help="show tracebacks for input errors")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in VERB_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import warnings

    # pyworld imports pkg_resources, whose deprecation notice says nothing to a user of rrpo
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    func: Callable[[Any], int | None] = args.func
    try:
        return int(func(args) or 0)
    except RrpoError as e:
        if args.traceback:
            raise
        print(f"rrpo: error: {e.format()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rrpo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
