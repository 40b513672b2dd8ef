"""``rrpo demo``: the whole pipeline on built-in defaults, no data or checkpoints needed.

Each stage writes into its own folder under ``--out`` and is skipped when its outputs exist.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on the built-in synthetic corpus")
    p.add_argument("--out", default="demo_out", help="folder for every stage's outputs")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from rrpo.data.synth import SynthConfig, synthesize

    out = Path(args.out)
    t0 = time.perf_counter()
    stages = {}
    man_path = out / "corpus" / "manifest.jsonl"
    if man_path.exists():
        log.info("corpus exists, skipping synthesis: %s", man_path)
    else:
        synthesize(SynthConfig(), out / "corpus")
    stages["corpus"] = str(man_path)
    print(json.dumps({"demo": str(out), "stages": stages, "seconds": round(time.perf_counter() - t0, 1)}))
    return 0
