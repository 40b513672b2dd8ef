"""Verbs over codecs: ``rrpo codec train|encode|decode`` and ``rrpo tokenize``.

rrpo codec train 'manifests=[corpus/manifest.jsonl]' out=codec/ [BuiltinCodecConfig keys]
rrpo codec encode codec=codec/ audio=a.wav out=a.npy
rrpo codec decode codec=codec/ tokens=a.npy out=a.wav  (tokens=SHARDS id=UTT for one utterance of shards)
rrpo codec decode ... speaker=NAME | profile=P.json | 'reference=[a.wav, b.wav]'   (decode as a speaker)
rrpo codec profile codec=codec/ 'reference=[a.wav, b.wav]' speaker=NAME out=P.json
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


_SPEAKER_HELP = {
    "speaker": "speaker whose profile the codec (or, with a shard folder, its meta.json) holds; '' = the codec's pooled profile",
    "profile": "profile JSON (rrpo codec profile), or a profiles.json / shard meta.json with speaker=",
    "reference": "recordings of a speaker the codec does not know: its profile is computed from them",
}


@dataclass
class EncodeArgs:
    codec: str = option("", "codec directory (or CosyVoice2 speech_tokenizer_v2.onnx)")
    audio: str = option("", "audio file")
    out: str = option("", "token file: .npy (int64) or .txt (space-separated ids)")
    speaker: str = option("", _SPEAKER_HELP["speaker"])
    profile: str = option("", _SPEAKER_HELP["profile"])
    reference: list[str] = option([], _SPEAKER_HELP["reference"])

    def __post_init__(self):
        for key in ("codec", "audio", "out"):
            check(bool(getattr(self, key)), key, "is required")
        check(not (self.profile and self.reference), "reference", "give reference or profile, not both")


@dataclass
class DecodeArgs:
    codec: str = option("", "codec directory")
    tokens: str = option("", "token file (.npy / .txt) or a token-shard folder")
    id: str = option("", "utterance id, when tokens is a shard folder")
    out: str = option("", "WAV file to write")
    speaker: str = option("", _SPEAKER_HELP["speaker"])
    profile: str = option("", _SPEAKER_HELP["profile"])
    reference: list[str] = option([], _SPEAKER_HELP["reference"])

    def __post_init__(self):
        for key in ("codec", "tokens", "out"):
            check(bool(getattr(self, key)), key, "is required")
        check(not (self.profile and self.reference), "reference", "give reference or profile, not both")


@dataclass
class ProfileArgs:
    codec: str = option("", "codec directory")
    reference: list[str] = option([], "recordings of the speaker")
    speaker: str = option("", "the speaker's name, recorded in the profile")
    out: str = option("", "profile JSON to write")

    def __post_init__(self):
        for key in ("codec", "reference", "out"):
            check(bool(getattr(self, key)), key, "is required")


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
    add_config_args(
        t, BuiltinCodecConfig, io=CodecTrainArgs, old={"--manifest": ("manifests", "list"), "--out": ("out", "value")}
    )
    t.set_defaults(func=cmd_train)

    e = csub.add_parser("encode", help="encode one audio file to a token file (.npy or .txt)")
    add_config_args(
        e,
        EncodeArgs,
        old={
            **{f"--{k}": (k, "value") for k in ("codec", "audio", "out", "speaker", "profile")},
            "--reference": ("reference", "list"),
        },
    )
    e.set_defaults(func=cmd_encode)

    d = csub.add_parser("decode", help="decode tokens (a token file, or one utterance of token shards) to WAV")
    add_config_args(
        d,
        DecodeArgs,
        old={
            **{f"--{k}": (k, "value") for k in ("codec", "tokens", "id", "out", "speaker", "profile")},
            "--reference": ("reference", "list"),
        },
    )
    d.set_defaults(func=cmd_decode)

    p = csub.add_parser("profile", help="a speaker profile from a few recordings of the speaker (JSON)")
    add_config_args(
        p,
        ProfileArgs,
        old={"--reference": ("reference", "list"), **{f"--{k}": (k, "value") for k in ("codec", "speaker", "out")}},
    )
    p.set_defaults(func=cmd_profile)

    k = sub.add_parser("tokenize", help="tokens and per-token energies of a whole manifest, into token shards")
    add_config_args(
        k,
        TokenizeArgs,
        old={**{f"--{k}": (k, "value") for k in ("codec", "manifest", "out")}, "--shard-size": ("shard_size", "value")},
    )
    k.set_defaults(func=cmd_tokenize)


def resolve_profile(codec, args, tokens_path: str | None = None):
    """The profile that speaker= / profile= / reference= ask for (None: the codec's default)."""
    if not (args.speaker or args.profile or args.reference):
        return None
    if args.reference:
        from rrpo.data.audio import load_audio

        audios = [load_audio(w) for w in args.reference]
        try:
            return codec.profile_from_audio(audios, speaker=args.speaker or "reference")
        except RrpoError as e:
            raise RrpoError(e.reason, e.path or args.reference[0]) from None
    if not getattr(codec, "uses_profiles", False):
        raise RrpoError(f"{type(codec).__name__} takes no speaker profile files; give reference recordings")
    from rrpo.codec.profile import read_profile_file

    n_mel, n_log = codec.cfg.mel_bands, codec.n_syn_bins
    if args.profile:
        return read_profile_file(args.profile, n_mel, n_log, args.speaker or None)
    if tokens_path is not None and (Path(tokens_path) / "meta.json").is_file():
        meta = json.loads((Path(tokens_path) / "meta.json").read_text(encoding="utf-8"))
        if args.speaker in (meta.get("profiles") or {}):
            return read_profile_file(Path(tokens_path) / "meta.json", n_mel, n_log, args.speaker)
    return codec.speaker_profile(args.speaker)


def cmd_profile(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.codec import load_codec
    from rrpo.io import write_json

    args = config_from_args(ProfileArgs, args)
    codec = load_codec(args.codec)
    args.profile = ""
    prof = resolve_profile(codec, args)
    if not hasattr(prof, "to_dict"):
        raise RrpoError(f"{type(codec).__name__} profiles cannot be written to a file", args.codec)
    write_json(args.out, prof.to_dict())
    print(
        json.dumps(
            {
                "profile": str(args.out),
                "speaker": prof.speaker,
                "recordings": prof.recordings,
                "f0_hz": round(prof.f0_hz, 2),
                "level_db": round(prof.level_db, 2),
            }
        )
    )
    return 0


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
            yield (*load_audio(man.audio_path(u), cfg.sampling_rate), u.speaker)

    dbar = tqdm(total=cfg.decoder_steps, desc="codec decoder", unit="step", disable=cfg.decoder != "learned")
    codec, arrays, state = train_builtin(
        cfg, audios(), progress=bar.update, checkpoint=out / "decoder.ckpt", decoder_progress=dbar.update
    )
    bar.close()
    dbar.close()
    codec.save(out, arrays, state)
    (out / "decoder.ckpt").unlink(missing_ok=True)
    run.log({f"codec/{k}": v for k, v in codec.stats.items() if isinstance(v, (int, float))})
    print(
        json.dumps({"codec": str(out), "vocab_size": codec.vocab_size, "frame_rate": codec.frame_rate, **codec.stats})
    )
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
    profile = resolve_profile(codec, args)
    audio, sr = load_audio(args.audio)
    try:
        tokens = codec.encode(audio, sr, profile=profile)
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
    profile = resolve_profile(codec, args, args.tokens)
    try:
        audio = codec.decode(tokens, profile=profile)
    except RrpoError as e:
        raise RrpoError(e.reason, e.path or args.tokens) from None
    save_audio(args.out, audio, codec.sampling_rate)
    print(
        json.dumps(
            {"wav": str(args.out), "tokens": int(len(tokens)), "seconds": round(len(audio) / codec.sampling_rate, 3)}
        )
    )
    return 0


def cmd_tokenize(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.codec.tokenize import tokenize_manifest

    args = config_from_args(TokenizeArgs, args)
    print(json.dumps(tokenize_manifest(args.codec, args.manifest, args.out, args.shard_size)))
    return 0
