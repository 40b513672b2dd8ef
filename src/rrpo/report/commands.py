"""``rrpo report 'runs=[A, B]' ['names=[x, y]'] out=DIR``: one offline HTML page comparing audited runs."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from rrpo.config import check, option


@dataclass
class ReportArgs:
    runs: list[str] = option([], "audited optimisation run folders (rrpo audit)")
    names: list[str] = option([], "display names, one per run ([] = the folder names)")
    out: str = option("", "report folder (index.html + assets)")
    notes: list[str] = option([], "paragraphs added at the top of the page, after the standard ones")

    def __post_init__(self):
        check(bool(self.runs), "runs", "is required, e.g. 'runs=[runs/diffro, runs/rrpo]'")
        check(bool(self.out), "out", "is required (the report folder to write)")


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.args import add_config_args

    r = sub.add_parser("report", help="one offline HTML page comparing audited runs")
    add_config_args(
        r, ReportArgs, old={"--runs": ("runs", "list"), "--names": ("names", "list"), "--out": ("out", "value")}
    )
    r.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.report.build import build_comparison

    a = config_from_args(ReportArgs, args)
    page = build_comparison(a.runs, a.out, a.names or None, extra_notes=a.notes)
    print(json.dumps({"report": str(page)}))
    return 0
