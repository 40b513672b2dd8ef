"""Verbs: ``rrpo policy sft``, ``rrpo policy generate``, ``rrpo policy export``."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rrpo.config import check, option, section
from rrpo.errors import RrpoError
from rrpo.policy.settings import SamplingConfig

log = logging.getLogger(__name__)


@dataclass
class GenerateConfig:
    policy: str = option("", "policy folder, SFT run folder or CosyVoice2 directory")
    out: str = option("runs/policy_generate", "run folder for tokens.jsonl (and WAVs)")
    texts: list[str] = option([], "texts to speak")
    emotions: list[str] = option([], "emotions to speak each text in (empty = every emotion the policy knows)")
    language: str = option("zh", "language of the texts (picks the instruction wording)")
    speaker: str = option("", "speaker (policies trained with speakers); empty = the first known speaker")
    codec: str = option("", "codec folder to decode tokens to WAV (empty = tokens only)")
    reference: list[str] = option(
        [],
        "reference recordings (WAV) of the target speaker: the codec's speaker profile for decoding (CosyVoice2 needs one)",
    )
    seed: int = option(0, "sampling seed (row i of the run uses seed + i)")
    batch_size: int = option(8, "prompts per batch")
    max_text_tokens: int = option(
        80,
        "split each text into pieces of at most this many text tokens at sentence ends, one sample per piece, as CosyVoice does (0 = never; policies without a text frontend are never split)",
    )
    bf16: bool = option(False, "bf16 autocast for the decoder")
    device: str = option("auto", "cpu, cuda, ... or auto")
    sampling: SamplingConfig = section(SamplingConfig, "sampling settings")

    def __post_init__(self):
        check(self.batch_size >= 1, "batch_size", "must be >= 1")
        check(self.max_text_tokens >= 0, "max_text_tokens", "must be >= 0")


@dataclass
class ExportConfig:
    policy: str = option("", "policy to export (loaded from a CosyVoice2 directory, or made here without speakers)")
    out: str = option(
        "", "folder to write into: llm.pt (a CosyVoice2 source's other files are copied beside it) or the HF folder"
    )
    layout: Literal["cosyvoice2", "hf"] = option(
        "cosyvoice2",
        "cosyvoice2 = llm.pt; hf = a Qwen2ForCausalLM folder with speech ids appended to the text vocabulary (CosyVoice's GRPO/veRL layout)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    from rrpo.args import add_config_args
    from rrpo.policy.sft import SFTConfig

    p = sub.add_parser("policy", help="the TTS policy: supervised fine-tuning, sampling, CosyVoice2 export")
    psub = p.add_subparsers(dest="policy_verb", metavar="ACTION", required=True)

    s = psub.add_parser("sft", help="teacher-forced fine-tuning on token shards with emotion instructions")
    add_config_args(s, SFTConfig)
    s.set_defaults(func=cmd_sft)

    g = psub.add_parser("generate", help="sample speech tokens (and WAVs) for texts x emotions")
    add_config_args(g, GenerateConfig)
    g.set_defaults(func=cmd_generate)

    e = psub.add_parser("export", help="write a policy as CosyVoice2's llm.pt or in the HF/GRPO layout")
    add_config_args(e, ExportConfig)
    e.set_defaults(func=cmd_export)


def cmd_sft(args) -> int:
    import sys

    from rrpo.args import config_from_args
    from rrpo.policy.sft import SFTConfig, run_sft

    cfg = config_from_args(SFTConfig, args)
    out = run_sft(cfg, argv=sys.argv)
    out.pop("config", None)
    print(json.dumps(out, ensure_ascii=False))
    return 0


def cmd_generate(args) -> int:
    import sys

    from rrpo.args import config_from_args

    cfg = config_from_args(GenerateConfig, args)
    print(json.dumps(run_generate(cfg, argv=sys.argv), ensure_ascii=False))
    return 0


def run_generate(cfg, argv: list[str] | None = None) -> dict:
    """Sample every (text, emotion) pair; write tokens.jsonl (line by line as samples come) and,
    with a decoding codec, WAVs."""
    from rrpo.io import atomic_open
    from rrpo.policy.generate import generate
    from rrpo.policy.io import load_policy
    from rrpo.runs import RunDir
    from rrpo.train.loop import resolve_device

    if not cfg.policy:
        raise RrpoError("set policy=PATH (a policy folder, SFT run or CosyVoice2 directory)")
    if not cfg.texts:
        raise RrpoError("set texts=[...] (the texts to speak)")
    policy = load_policy(cfg.policy)
    emotions = list(cfg.emotions) or policy.emotions
    if not emotions:
        raise RrpoError("this policy has no emotion list; set emotions=[...]")
    speaker = None
    if policy.speaker_embedding is not None:
        speaker = cfg.speaker or policy.speakers[0]
    codec, profile = None, None
    if cfg.codec:
        codec = _load_codec(cfg.codec)
        if not codec.can_decode:
            problem = getattr(codec, "decode_problem", lambda: None)() or "it encodes only"
            raise RrpoError(f"this codec cannot decode ({problem}); drop codec= for tokens only", cfg.codec)
        profile = _profile(codec, cfg.reference, cfg.speaker or speaker)
    elif cfg.reference:
        raise RrpoError("reference=[...] needs codec= (the codec builds the speaker profile)")
    pieces = {t: _pieces(policy, t, cfg) for t in cfg.texts}
    rows = [(t, e, k, p) for t in cfg.texts for e in emotions for k, p in enumerate(pieces[t])]
    # validate every prompt before any sampling (one clear line on bad input)
    prompts_all = policy.encode_prompts(
        [p for _, _, _, p in rows],
        [e for _, e, _, _ in rows],
        cfg.language,
        [speaker] * len(rows) if speaker is not None else None,
    )
    device = resolve_device(cfg.device)
    policy.to(device)
    run = RunDir.create(cfg.out, cfg, argv)
    records = []
    tokens_path = run.path / "tokens.jsonl"
    with open(tokens_path, "w", encoding="utf-8") as tokens_file:  # one line per sample as it comes
        for a in range(0, len(rows), cfg.batch_size):
            idx = list(range(a, min(a + cfg.batch_size, len(rows))))
            gen = generate(
                policy,
                prompts_all.select(idx),
                cfg.sampling,
                seeds=[cfg.seed + i for i in idx],
                return_noise=False,
                bf16=cfg.bf16,
            )
            batch = []
            for j, i in enumerate(idx):
                text, emo, k, piece = rows[i]
                toks = gen.tokens(j).tolist()
                rec = {
                    "index": i,
                    "text": text,
                    "emotion": emo,
                    "speaker": speaker,
                    "tokens": toks,
                    "n_tokens": len(toks),
                    "ended": bool(gen.ended[j]),
                }
                if len(pieces[text]) > 1 or piece != text:
                    rec.update({"piece": k, "pieces": len(pieces[text]), "spoken": piece})
                tokens_file.write(json.dumps(rec, ensure_ascii=False) + "\n")
                batch.append(rec)
            tokens_file.flush()  # a decode failure below loses no sampled tokens
            for rec in batch:
                if codec is not None and rec["tokens"]:
                    _decode_to_wav(codec, profile, rec, run.path)
            records += batch
    if codec is not None:  # rewrite with the WAV names (atomic: the streamed file stays valid until then)
        with atomic_open(tokens_path) as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return {
        "run": str(run.path),
        "samples": len(records),
        "mean_tokens": round(sum(r["n_tokens"] for r in records) / len(records), 2),
        "ended": sum(r["ended"] for r in records),
    }


def _pieces(policy, text: str, cfg) -> list[str]:
    """``text`` as the policy's frontend writes it, cut at sentence ends into pieces of at most
    ``cfg.max_text_tokens`` tokens of the policy's tokenizer (rrpo.policy.frontend)."""
    from rrpo.policy.frontend import normalize, split_sentences

    if policy.text_frontend == "none" or policy.tokenizer is None:
        return [text]
    spoken = normalize(text, cfg.language, policy.text_frontend)
    if not cfg.max_text_tokens:
        return [spoken]
    count = lambda s: len(policy.tokenizer.encode(s))  # noqa: E731
    return split_sentences(spoken, cfg.language, cfg.max_text_tokens, count=count) or [spoken]


def _profile(codec, references: list[str], speaker: str | None = None):
    """The profile to decode as: one from reference recordings when given, else the codec's stored
    profile of ``speaker`` (a one-line error when it has none), else None (the codec's default
    voice) where the codec has one."""
    from rrpo.codec import profile_for
    from rrpo.data.audio import load_audio

    if not references:
        if getattr(codec, "needs_profile", False):
            raise RrpoError(
                "this codec speaks in the voice of a reference recording: set reference=[WAV, ...] "
                "(recordings of the target speaker)"
            )
        return profile_for(codec, speaker) if speaker else None
    audios = []
    for r in references:
        audios.append(load_audio(r))
    return codec.profile_from_audio(audios, speaker=speaker or "reference")


def _decode_to_wav(codec, profile, rec: dict, folder) -> None:
    import numpy as np
    import soundfile as sf

    from rrpo.io import atomic_path

    ids = np.asarray(rec["tokens"], dtype=np.int64)
    audio = codec.decode(ids) if profile is None else codec.decode(ids, profile=profile)
    wav = folder / f"{rec['index']:04d}_{rec['emotion']}.wav"
    with atomic_path(wav) as tmp:
        sf.write(str(tmp), audio, codec.sampling_rate, format="WAV")
    rec["wav"] = wav.name
    rec["seconds"] = round(len(audio) / codec.sampling_rate, 3)


def _load_codec(path: str):
    try:
        from rrpo.codec import load_codec
    except ImportError:
        raise RrpoError("this rrpo has no codec loader (rrpo.codec.load_codec); generate tokens only") from None
    return load_codec(path)


def cmd_export(args) -> int:
    from rrpo.args import config_from_args
    from rrpo.policy.io import load_policy, save_cosyvoice2

    cfg = config_from_args(ExportConfig, args)
    if not cfg.policy or not cfg.out:
        raise RrpoError("set policy=PATH and out=FOLDER")
    if cfg.layout == "hf":
        from rrpo.policy.hf import save_hf_layout

        path = save_hf_layout(load_policy(cfg.policy), Path(cfg.out))
        print(json.dumps({"hf": str(path)}))
        return 0
    path = save_cosyvoice2(load_policy(cfg.policy), Path(cfg.out))
    print(json.dumps({"llm.pt": str(path)}))
    return 0
