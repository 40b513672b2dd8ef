"""``rrpo audit --run DIR`` and ``rrpo report --runs A B ... --out DIR``."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.audit.overopt import AuditConfig
    from rrpo.args import add_config_args

    a = sub.add_parser("audit", help="proxy vs judge, artifacts and distances for every checkpoint of an optimisation run")
    a.add_argument("--run", required=True, help="optimisation run folder")
    a.add_argument("--codec", required=True, help="codec folder that decodes the policy's tokens")
    a.add_argument("--judge", required=True, help="judge folder (rrpo judge train)")
    add_config_args(a, AuditConfig)
    a.set_defaults(func=cmd_audit)

    r = sub.add_parser("report", help="one offline HTML page comparing audited runs")
    r.add_argument("--runs", nargs="+", required=True, help="audited optimisation run folders")
    r.add_argument("--names", nargs="*", default=None, help="display names, one per run")
    r.add_argument("--out", required=True, help="report folder (index.html + assets)")
    r.set_defaults(func=cmd_report)


def cmd_audit(args) -> int:
    from rrpo.audit.overopt import AuditConfig, run_audit
    from rrpo.args import config_from_args

    cfg = config_from_args(AuditConfig, args, [f"run={args.run}", f"codec={args.codec}", f"judge={args.judge}"])
    res = run_audit(cfg)
    fin, st = res["final"], res["start"]
    print(json.dumps({"run": res["run"], "points": len(res["points"]), "flagged_steps": res["flagged_steps"],
                      "start": {"judge": st["judge"]["target_prob"], "proxy": st["proxy_prob"]},
                      "final": {"judge": fin["judge"]["target_prob"], "proxy": fin["proxy_prob"],
                                "sqrt_kl": fin["sqrt_kl"], "hacking_gap": fin["hacking_gap"]}}, default=float))
    return 0


def cmd_report(args) -> int:
    from rrpo.report.build import build_comparison

    page = build_comparison(args.runs, args.out, args.names)
    print(json.dumps({"report": str(page)}))
    return 0
