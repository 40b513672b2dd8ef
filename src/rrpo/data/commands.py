"""Verbs over data: ``rrpo prepare``, ``rrpo synth``, ``rrpo manifest``.

rrpo prepare corpus=casia root=/data/casia out=casia.jsonl
rrpo synth out=corpus/ [SynthConfig keys]
rrpo manifest manifest=casia.jsonl [check_audio=true]
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from rrpo.config import check, option

log = logging.getLogger(__name__)


@dataclass
class PrepareArgs:
    """``rrpo prepare``: a corpus in its own layout -> a manifest."""

    corpus: str = option(
        "", "corpus layout: a name in rrpo.data.corpora.PREPARERS (casia, esd, csv, ...; a wrong one lists them)"
    )
    root: str = option("", "the corpus' root folder (or file, for csv/jsonl)")
    out: str = option("", "manifest to write (JSONL)")
    language: str = option("", "language code for csv/jsonl rows that lack one")
    check_audio: bool = option(False, "open every audio file and reject empty, truncated, NaN or silent ones")

    def __post_init__(self):
        check(bool(self.corpus), "corpus", "is required, e.g. corpus=casia")
        check(bool(self.root), "root", "is required (the corpus' root folder)")
        check(bool(self.out), "out", "is required (the manifest to write)")


@dataclass
class SynthArgs:
    out: str = option("", "output folder (audio + manifest.jsonl)")

    def __post_init__(self):
        check(bool(self.out), "out", "is required (the corpus folder to write)")


@dataclass
class ManifestArgs:
    """``rrpo manifest``: validate a manifest and print its statistics."""

    manifest: str = option("", "manifest (JSONL) to check")
    check_audio: bool = option(False, "also open and check every audio file")

    def __post_init__(self):
        check(bool(self.manifest), "manifest", "is required")


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.args import add_config_args
    from rrpo.data.synth import SynthConfig

    p = sub.add_parser("prepare", help="write a manifest for a corpus in its own on-disk layout")
    add_config_args(
        p,
        PrepareArgs,
        bare="corpus",
        old={
            "--root": ("root", "value"),
            "--out": ("out", "value"),
            "--language": ("language", "value"),
            "--check-audio": ("check_audio", "true"),
        },
    )
    p.set_defaults(func=cmd_prepare)

    s = sub.add_parser("synth", help="synthesise the built-in emotional corpus (espeak-ng, zh + en)")
    add_config_args(s, SynthConfig, io=SynthArgs, old={"--out": ("out", "value")})
    s.set_defaults(func=cmd_synth)

    m = sub.add_parser("manifest", help="validate a manifest and print its statistics as JSON")
    add_config_args(m, ManifestArgs, bare="manifest", old={"--check-audio": ("check_audio", "true")})
    m.set_defaults(func=cmd_manifest)


def cmd_prepare(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.data.corpora import prepare_corpus

    a = config_from_args(PrepareArgs, args)
    man = prepare_corpus(a.corpus, a.root, a.out, language=a.language or None, check_audio=a.check_audio)
    print(json.dumps({"manifest": str(a.out), **manifest_stats(man)}, ensure_ascii=False))
    return 0


def cmd_synth(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.data.synth import SynthConfig, synthesize

    cfg, io = config_from_args(SynthConfig, args, io=SynthArgs)
    man = synthesize(cfg, Path(io.out))
    print(json.dumps({"manifest": str(man.path), **manifest_stats(man)}, ensure_ascii=False))
    return 0


def cmd_manifest(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.data.audio import load_audio
    from rrpo.data.manifest import read_manifest

    a = config_from_args(ManifestArgs, args)
    man = read_manifest(a.manifest)
    if a.check_audio:
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
