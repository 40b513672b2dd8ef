"""Verbs over codecs: ``rrpo codec train|encode|decode`` and ``rrpo tokenize``.

    rrpo codec train 'manifests=[corpus/manifest.jsonl]' out=codec/ [BuiltinCodecConfig keys]
    rrpo codec encode codec=codec/ audio=a.wav out=a.npy
    rrpo codec decode codec=codec/ tokens=a.npy out=a.wav  (tokens=SHARDS id=UTT for one utterance of shards)
    rrpo tokenize codec=codec/ manifest=corpus/manifest.jsonl out=tokens/
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rrpo.config import check, option
from rrpo.errors import RrpoError

log = logging.getLogger(__name__)


@dataclass
class CodecTrainArgs:
    manifests: list[str] = option([], "manifests whose audio (labels unused) trains the codec")
    out: str = option("", "codec directory to write (codec.json + arrays)")

    def __post_init__(self):
        check(bool(self.manifests), "manifests", "is required, e.g. 'manifests=[corpus/manifest.jsonl]'")
        check(bool(self.out), "out", "is required (the codec directory to write)")


@dataclass
class EncodeArgs:
    codec: str = option("", "codec directory (or CosyVoice2 speech_tokenizer_v2.onnx)")
    audio: str = option("", "audio file")
    out: str = option("", "token file: .npy (int64) or .txt (space-separated ids)")

    def __post_init__(self):
        for key in ("codec", "audio", "out"):
            check(bool(getattr(self, key)), key, "is required")


@dataclass
class DecodeArgs:
    codec: str = option("", "codec directory")
    tokens: str = option("", "token file (.npy / .txt) or a token-shard folder")
    id: str = option("", "utterance id, when tokens is a shard folder")
    out: str = option("", "WAV file to write")
    f0_hz: float = option(0.0, "speaker's median F0 for the built-in codec (0 = the codec's default)")

    def __post_init__(self):
        for key in ("codec", "tokens", "out"):
            check(bool(getattr(self, key)), key, "is required")
        check(self.f0_hz >= 0, "f0_hz", "must be >= 0")


@dataclass
class TokenizeArgs:
    codec: str = option("", "codec directory (or CosyVoice2 speech_tokenizer_v2.onnx)")
    manifest: str = option("", "manifest to tokenize")
    out: str = option("", "shard folder; an interrupted run resumes where it stopped")
    shard_size: int = option(500, "utterances per shard file")

    def __post_init__(self):
        for key in ("codec", "manifest", "out"):
            check(bool(getattr(self, key)), key, "is required")
        check(self.shard_size >= 1, "shard_size", "must be >= 1")


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.args import add_config_args
    from rrpo.codec.builtin import BuiltinCodecConfig

    c = sub.add_parser("codec", help="train the built-in speech codec, encode audio, decode tokens")
    csub = c.add_subparsers(dest="codec_verb", metavar="ACTION", required=True)

    t = csub.add_parser("train", help="learn the built-in codec from the audio of one or more manifests")
    add_config_args(t, BuiltinCodecConfig, io=CodecTrainArgs,
                    old={"--manifest": ("manifests", "list"), "--out": ("out", "value")})
    t.set_defaults(func=cmd_train)

    e = csub.add_parser("encode", help="encode one audio file to a token file (.npy or .txt)")
    add_config_args(e, EncodeArgs, old={f"--{k}": (k, "value") for k in ("codec", "audio", "out")})
    e.set_defaults(func=cmd_encode)

    d = csub.add_parser("decode", help="decode tokens (a token file, or one utterance of token shards) to WAV")
    add_config_args(d, DecodeArgs, old={**{f"--{k}": (k, "value") for k in ("codec", "tokens", "id", "out")},
                                        "--f0-hz": ("f0_hz", "value")})
    d.set_defaults(func=cmd_decode)

    k = sub.add_parser("tokenize", help="tokens and per-token energies of a whole manifest, into token shards")
    add_config_args(k, TokenizeArgs, old={**{f"--{k}": (k, "value") for k in ("codec", "manifest", "out")},
                                          "--shard-size": ("shard_size", "value")})
    k.set_defaults(func=cmd_tokenize)


def cmd_train(args) -> int:
    from tqdm import tqdm

    from rrpo.args import config_from_args
    from rrpo.codec.builtin import BuiltinCodecConfig, train_builtin
    from rrpo.data.audio import load_audio
    from rrpo.data.manifest import read_manifest
    from rrpo.runs import RunDir

    cfg, io = config_from_args(BuiltinCodecConfig, args, io=CodecTrainArgs)
    manifests = [read_manifest(m) for m in io.manifests]
    items = [(man, u) for man in manifests for u in man]
    out = Path(io.out)
    run = RunDir.create(out, cfg)
    bar = tqdm(total=len(items), desc="codec analysis", unit="utt")

    def audios():
        for man, u in items:
            yield load_audio(man.audio_path(u), cfg.sampling_rate)

    codec, arrays = train_builtin(cfg, audios(), progress=bar.update)
    bar.close()
    codec.save(out, arrays)
    run.log({f"codec/{k}": v for k, v in codec.stats.items() if isinstance(v, (int, float))})
    print(json.dumps({"codec": str(out), "vocab_size": codec.vocab_size, "frame_rate": codec.frame_rate,
                      **codec.stats}))
    return 0


def _write_tokens(path: Path, tokens: np.ndarray) -> None:
    from rrpo.io import atomic_open, atomic_path

    if path.suffix == ".npy":
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, tokens.astype(np.int64))
    elif path.suffix == ".txt":
        with atomic_open(path) as f:
            f.write(" ".join(str(int(t)) for t in tokens) + "\n")
    else:
        raise RrpoError("token file must end in .npy or .txt", path)


def read_tokens(path: str | Path, uid: str | None = None) -> np.ndarray:
    """Tokens from a .npy / .txt token file, or utterance ``uid`` of a token-shard folder."""
    path = Path(path)
    if path.is_dir():
        from rrpo.codec.shards import TokenShards

        if uid is None:
            raise RrpoError("tokens is a shard folder: give the utterance with id=UTTERANCE", path)
        return TokenShards(path).get(uid)[0]
    if not path.exists():
        raise RrpoError("token file not found", path)
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:
            raise RrpoError(f"not a readable .npy token file ({str(e)[:100]})", path) from None
    else:
        try:
            text = path.read_text(encoding="utf-8")
            arr = np.array([int(v) for v in text.replace(",", " ").split()], dtype=np.int64)
        except (UnicodeDecodeError, ValueError):
            raise RrpoError("a .txt token file must hold whitespace-separated integer ids", path) from None
    arr = np.asarray(arr)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise RrpoError(f"token file must hold a 1-D integer array, got {arr.dtype} {arr.shape}", path)
    return arr.astype(np.int64)


def cmd_encode(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.codec import load_codec
    from rrpo.data.audio import load_audio

    args = config_from_args(EncodeArgs, args)
    codec = load_codec(args.codec)
    audio, sr = load_audio(args.audio)
    try:
        tokens = codec.encode(audio, sr)
    except RrpoError as e:
        raise RrpoError(e.reason, args.audio) from None
    _write_tokens(Path(args.out), tokens)
    print(json.dumps({"tokens": str(args.out), "count": int(len(tokens)), "seconds": round(len(audio) / sr, 3)}))
    return 0


def cmd_decode(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.codec import load_codec
    from rrpo.data.audio import save_audio

    args = config_from_args(DecodeArgs, args)
    codec = load_codec(args.codec)
    tokens = read_tokens(args.tokens, args.id or None)
    kwargs = {"f0_hz": args.f0_hz} if args.f0_hz else {}
    try:
        audio = codec.decode(tokens, **kwargs)
    except RrpoError as e:
        raise RrpoError(e.reason, e.path or args.tokens) from None
    save_audio(args.out, audio, codec.sampling_rate)
    print(json.dumps({"wav": str(args.out), "tokens": int(len(tokens)),
                      "seconds": round(len(audio) / codec.sampling_rate, 3)}))
    return 0


def cmd_tokenize(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.codec.tokenize import tokenize_manifest

    args = config_from_args(TokenizeArgs, args)
    print(json.dumps(tokenize_manifest(args.codec, args.manifest, args.out, args.shard_size)))
    return 0
