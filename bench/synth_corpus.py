"""Time ``rrpo synth`` and measure the prosody of what it made.

    PYTHONPATH=src python bench/synth_corpus.py [--out DIR] [key=value ...]

Synthesises the corpus (default config unless overridden) into a fresh folder, then measures
every file (mean F0, F0 range, syllables/s, level) per language and emotion, and prints one JSON
object: seconds for synthesis, for a second (skipping) run, and the table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from rrpo.config import load_config
from rrpo.data.prosody import emotion_profile
from rrpo.data.synth import SynthConfig, synthesize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder to write (a fresh temporary one by default)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = load_config(SynthConfig, None, args.overrides)
    tmp = None
    out = Path(args.out) if args.out else Path(tmp := tempfile.mkdtemp(prefix="rrpo-synth-bench-"))
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: the timing needs a fresh folder")
    try:
        t0 = time.perf_counter()
        man = synthesize(cfg, out)
        t_synth = time.perf_counter() - t0
        t0 = time.perf_counter()
        synthesize(cfg, out)
        t_rerun = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = emotion_profile(man, progress=True)
        t_measure = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "utterances": len(man),
                    "audio_hours": round(sum(u.duration for u in man) / 3600, 4),
                    "synth_seconds": round(t_synth, 1),
                    "rerun_seconds": round(t_rerun, 1),
                    "measure_seconds": round(t_measure, 1),
                    "overrides": args.overrides,
                    "profile": table,
                },
                ensure_ascii=False,
            )
        )
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
