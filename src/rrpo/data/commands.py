"""Verbs over data: ``rrpo prepare``, ``rrpo synth``, ``rrpo manifest``."""

from __future__ import annotations

import argparse
import collections
import json
import logging
from pathlib import Path

from rrpo.errors import RrpoError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.args import add_config_args
    from rrpo.data.corpora import PREPARERS

    p = sub.add_parser("prepare", help="write a manifest for a corpus in its own on-disk layout")
    p.add_argument("corpus", choices=sorted(PREPARERS), help="corpus layout")
    p.add_argument("--root", required=True, help="the corpus' root folder (or file, for csv/jsonl)")
    p.add_argument("--out", required=True, help="manifest to write (JSONL)")
    p.add_argument("--language", default=None, help="language code for csv/jsonl rows that lack one")
    p.add_argument("--check-audio", action="store_true",
                   help="open every audio file and reject empty, truncated, NaN or silent ones")
    p.set_defaults(func=cmd_prepare)

    from rrpo.data.synth import SynthConfig

    s = sub.add_parser("synth", help="synthesise the built-in emotional corpus (espeak-ng, zh + en)")
    s.add_argument("--out", required=True, help="output folder (audio + manifest.jsonl)")
    add_config_args(s, SynthConfig)
    s.set_defaults(func=cmd_synth)

    m = sub.add_parser("manifest", help="validate a manifest and print its statistics as JSON")
    m.add_argument("manifest")
    m.add_argument("--check-audio", action="store_true", help="also open and check every audio file")
    m.set_defaults(func=cmd_manifest)


def cmd_prepare(args) -> int:
    from rrpo.data.corpora import prepare_corpus

    man = prepare_corpus(args.corpus, args.root, args.out, language=args.language, check_audio=args.check_audio)
    print(json.dumps({"manifest": str(args.out), **manifest_stats(man)}, ensure_ascii=False))
    return 0


def cmd_synth(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.data.synth import SynthConfig, synthesize

    cfg = config_from_args(SynthConfig, args)
    man = synthesize(cfg, Path(args.out))
    print(json.dumps({"manifest": str(man.path), **manifest_stats(man)}, ensure_ascii=False))
    return 0


def cmd_manifest(args) -> int:
    from rrpo.data.audio import load_audio
    from rrpo.data.manifest import read_manifest

    man = read_manifest(args.manifest)
    if args.check_audio:
        from tqdm import tqdm

        for u in tqdm(man, desc="checking audio", unit="file", disable=None):  # no bar when not a terminal
            load_audio(man.audio_path(u))
    print(json.dumps(manifest_stats(man), ensure_ascii=False))
    return 0


def manifest_stats(man) -> dict:
    count = collections.Counter
    return {
        "utterances": len(man),
        "hours": round(sum(u.duration for u in man) / 3600, 4),
        "speakers": len({u.speaker for u in man}),
        "languages": dict(count(u.language for u in man)),
        "emotions": dict(count(u.emotion for u in man)),
        "splits": dict(count(u.split for u in man)),
    }
