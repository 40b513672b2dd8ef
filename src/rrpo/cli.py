"""The ``rrpo`` command. Each verb lives beside the code it drives, in a module with a
``register(subparsers)`` function; the verb itself is a small function over a config dataclass.
The grammar every verb shares (``--config FILE`` plus ``key=value`` overrides) is in :mod:`rrpo.args`.

A user-caused error (:class:`~rrpo.errors.RrpoError`) prints one line ``rrpo: error: FILE:LINE:
reason`` and exits with status 2; nothing is half-written because every writer is atomic.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from rrpo.errors import RrpoError

#: Modules that contribute verbs, in the order ``rrpo --help`` lists them.
VERB_MODULES: tuple[str, ...] = (
    "rrpo.data.commands",
    "rrpo.codec.commands",
    "rrpo.phones.commands",
    "rrpo.reward.commands",
    "rrpo.policy.commands",
    "rrpo.optimize.commands",
    "rrpo.audit.commands",
    "rrpo.report.commands",
    "rrpo.demo",
    "rrpo.experiment",
)


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
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if getattr(args, "old_spelling", None):  # a retired flag (rrpo.args): one line, the key to write instead
        print(f"rrpo: error: {args.old_spelling}", file=sys.stderr)
        return 2
    func: Callable[[Any], int | None] = args.func
    args.dispatch = main  # verbs that run other verbs in-process (demo, experiment) call this
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
