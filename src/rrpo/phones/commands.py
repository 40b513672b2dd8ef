"""Verbs of phone recognition: ``rrpo phones train``, ``rrpo phones eval``.

rrpo phones train out=DIR 'manifests=[M, ...]' ['val_manifests=[V]'] [PhoneTrainConfig keys]
rrpo phones eval model=DIR manifest=M ['speakers=[a]' 'splits=[test]' max_utterances=200 out=R.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from rrpo.config import check, option
from rrpo.data.manifest import Selection


@dataclass
class PhoneTrainArgs:
    out: str = option("", "run folder, also the model folder (resumed if it holds checkpoints)")
    resume: bool = option(True, "resume from the run folder's last checkpoint (false: start over)")

    def __post_init__(self):
        check(bool(self.out), "out", "is required (the run folder to write)")


@dataclass
class PhoneEvalArgs(Selection):
    model: str = option("", "phone model folder (from rrpo phones train)")
    manifest: str = option("", "transcribed manifest")
    max_utterances: int = option(200, "utterances at most, evenly spread over the selection")
    seed: int = option(0, "seed of the bootstrap interval")
    out: str = option("", "also write the JSON to this file")

    def __post_init__(self):
        check(bool(self.model), "model", "is required (a phone model folder)")
        check(bool(self.manifest), "manifest", "is required")
        check(self.max_utterances >= 1, "max_utterances", "must be at least 1")


@dataclass
class _NoConfig:
    pass


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.args import add_config_args
    from rrpo.phones.train import PhoneTrainConfig

    ph = sub.add_parser(
        "phones", help="train and evaluate CTC phone recognisers (the phone judge, the content encoder)"
    )
    psub = ph.add_subparsers(dest="phones_verb", metavar="ACTION", required=True)
    t = psub.add_parser("train", help="train a CTC phone recogniser on transcribed manifests")
    add_config_args(t, PhoneTrainConfig, io=PhoneTrainArgs)
    t.set_defaults(func=cmd_train)
    e = psub.add_parser("eval", help="phone error rate of a model on a transcribed manifest; prints one JSON object")
    add_config_args(e, _NoConfig, io=PhoneEvalArgs)
    e.set_defaults(func=cmd_eval)


def cmd_train(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.phones.train import PhoneTrainConfig, train_phones

    cfg, io = config_from_args(PhoneTrainConfig, args, io=PhoneTrainArgs)
    res = train_phones(cfg, io.out, resume=io.resume, argv=sys.argv)
    print(json.dumps(res, ensure_ascii=False, default=str))
    return 0


def cmd_eval(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.data.audio import load_audio
    from rrpo.data.manifest import read_manifest
    from rrpo.errors import RrpoError
    from rrpo.phones.judge import PhoneJudge

    _, io = config_from_args(_NoConfig, args, io=PhoneEvalArgs)
    judge = PhoneJudge.load(io.model)
    man = read_manifest(io.manifest)
    sel = [u for u in io.apply(man) if (u.text or "").strip()]
    if not sel:
        raise RrpoError("no transcribed utterance in the selection", io.manifest)
    step = max(1, len(sel) // io.max_utterances)
    sel = sel[::step][: io.max_utterances]
    rows = []
    for u in sel:
        audio, sr = load_audio(man.audio_path(u))
        rows.append(judge.score(audio, sr, u.text, u.language, id=u.id, speaker=u.speaker))
    out = {"model": str(io.model), "manifest": str(io.manifest), **judge.summarise(rows, seed=io.seed)}
    if io.out:
        from rrpo.io import write_json

        write_json(io.out, {**out, "utterances": rows})
    print(json.dumps(out, ensure_ascii=False))
    return 0
