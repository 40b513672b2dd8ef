"""Supervised fine-tuning of the policy: teacher-forced cross-entropy on token shards.

Each utterance of the manifest becomes ``(instruction(emotion) <|endofprompt|> text, speaker) ->
speech tokens + eos``. The loss of a micro-batch is the mean cross-entropy over its valid target
positions (speech ids and the end-of-speech position). A held-out part of the manifest (distinct
sentences by default, or speakers, or a manifest split) is scored with the same loss and with token
accuracy (teacher-forced argmax == target, over the same positions). With ``data.drop_emotion`` p
a share p of the training rows is read without its emotion instruction (:func:`emotion_dropout`),
so that the policy also learns the unconditional prompt that classifier-free guidance
(``sampling.guidance``) needs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from rrpo.config import check, option, section, to_dict
from rrpo.errors import RrpoError
from rrpo.train.loop import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class SFTData:
    manifest: str = option("", "manifest (JSONL) of the training corpus")
    shards: str = option("", "token shards of that manifest (rrpo tokenize)")
    manifests: list[str] = option([], "several manifests trained on together (instead of manifest; ids must differ)")
    tokens: list[str] = option([], "their token shards, one folder per manifest, all from one codec")
    emotions: list[str] = option([], "emotions to train on (empty = every emotion in the manifest)")
    heldout_by: Literal["text", "speaker", "split"] = option(
        "text", "what the held-out part shares: sentences, speakers or a manifest split"
    )
    heldout: list[str] = option(
        [], "held-out values (texts, speakers or split names); empty with heldout_by=text = a fraction of the sentences"
    )
    heldout_fraction: float = option(
        0.1, "share of distinct sentences held out when heldout is empty (chosen by hash, reproducible)"
    )
    max_speech_tokens: int = option(0, "drop utterances with more speech tokens than this (0 = keep all)")
    bucket: int = option(
        0, "length bucketing: sort groups of bucket x batch_size utterances by length before batching (0 = off)"
    )
    drop_emotion: float = option(
        0.0,
        "share of training utterances read without their emotion instruction (the unconditional prompt of "
        "classifier-free guidance, sampling.guidance); drawn per micro-batch from train.seed (0 = off)",
    )

    def __post_init__(self):
        check(not (self.manifest and self.manifests), "data.manifests", "give manifest or manifests, not both")
        check(
            len(self.tokens) == len(self.manifests),
            "data.tokens",
            f"needs one shard folder per manifest ({len(self.manifests)} manifests, {len(self.tokens)} folders)",
        )
        check(not (self.shards and self.tokens), "data.tokens", "give shards or tokens, not both")
        check(self.bucket >= 0, "data.bucket", "must be >= 0")
        check(0 <= self.heldout_fraction < 1, "data.heldout_fraction", "must be in [0, 1)")
        check(self.max_speech_tokens >= 0, "data.max_speech_tokens", "must be >= 0")
        check(0 <= self.drop_emotion < 1, "data.drop_emotion", "must be in [0, 1)")


@dataclass
class SFTModel:
    init: str = option(
        "", "start from this policy (policy folder, SFT run or CosyVoice2 directory); empty = a fresh tiny policy"
    )
    hidden_size: int = option(256, "tiny policy: hidden size")
    layers: int = option(4, "tiny policy: decoder layers")
    heads: int = option(4, "tiny policy: attention heads")
    kv_heads: int = option(2, "tiny policy: key/value heads")
    intermediate_size: int = option(768, "tiny policy: MLP width")
    speakers: bool = option(True, "tiny policy: condition on the speaker (a learned speaker row after sos)")
    text_frontend: Literal["basic", "none"] = option(
        "basic",
        "tiny policy: text normalisation before tokenising (basic: numbers and symbols spelled out for zh/en; none: text as is). A policy loaded with init keeps its own",
    )

    def __post_init__(self):
        for k in ("hidden_size", "layers", "heads", "kv_heads", "intermediate_size"):
            check(getattr(self, k) >= 1, f"model.{k}", "must be >= 1")
        check(self.hidden_size % self.heads == 0, "model.hidden_size", "must be divisible by model.heads")
        check(self.heads % self.kv_heads == 0, "model.heads", "must be divisible by model.kv_heads")


@dataclass
class SFTConfig:
    out: str = option("runs/policy_sft", "run folder to write (resumed if it holds checkpoints)")
    data: SFTData = section(SFTData, "training data")
    model: SFTModel = section(SFTModel, "the policy")
    train: TrainConfig = section(TrainConfig, "optimisation")
    eval_batch_size: int = option(32, "utterances per held-out scoring batch")

    def __post_init__(self):
        check(self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1")


class BucketedBatches:
    """Micro-batch ``k`` of an epoch-wise pass with length bucketing, reproducibly.

    Each epoch: shuffle the ``n`` examples (seeded by epoch), cut the order into groups of
    ``bucket * batch_size``, sort each group by length, cut it into batches, and shuffle the batch
    order (seeded by epoch). Padding shrinks; batch ``k`` depends only on ``(seed, k)``, so resume
    is exact. The last partial batch of a group is dropped when a group holds more than one batch.
    """

    def __init__(self, lengths: list[int], batch_size: int, bucket: int, collate, seed: int = 0):
        if not lengths:
            raise RrpoError("no training examples")
        self.lengths, self.b, self.bucket, self.collate, self.seed = (
            lengths,
            min(batch_size, len(lengths)),
            bucket,
            collate,
            seed,
        )
        self._epoch, self._batches = -1, []
        self.per_epoch = len(self._make(0))

    def _make(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        perm = torch.randperm(len(self.lengths), generator=g).tolist()
        size = self.b * self.bucket
        batches = []
        for a in range(0, len(perm), size):
            group = sorted(perm[a : a + size], key=lambda i: self.lengths[i])
            cut = [group[i : i + self.b] for i in range(0, len(group), self.b)]
            if len(cut) > 1 and len(cut[-1]) < self.b:
                cut = cut[:-1]
            batches += cut
        order = torch.randperm(len(batches), generator=g).tolist()
        return [batches[i] for i in order]

    def indices(self, k: int) -> list[int]:
        epoch, i = divmod(k, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, self._make(epoch)
        return self._batches[i % len(self._batches)]

    def __call__(self, k: int):
        return self.collate(self.indices(k))


@dataclass
class Example:
    uid: str
    text: str
    emotion: str
    language: str
    speaker: str
    tokens: torch.Tensor  # (T,) int64


def _hash(s: str) -> str:
    return hashlib.sha1(s.encode("utf-8")).hexdigest()


def split_heldout(man, cfg: SFTData) -> tuple[list, list]:
    """(train records, held-out records) of a manifest according to ``cfg``."""
    if cfg.heldout_by == "text":
        texts = sorted({u.text for u in man})
        chosen = (
            set(cfg.heldout)
            if cfg.heldout
            else set(sorted(texts, key=_hash)[: int(round(cfg.heldout_fraction * len(texts)))])
        )
        key = lambda u: u.text  # noqa: E731
    elif cfg.heldout_by == "speaker":
        chosen, key = set(cfg.heldout), (lambda u: u.speaker)
    else:
        chosen, key = set(cfg.heldout), (lambda u: u.split)
    held = [u for u in man if key(u) in chosen]
    train = [u for u in man if key(u) not in chosen]
    return train, held


def load_examples(cfg: SFTData):
    """Read manifest and shards; return (train examples, held-out examples, all texts, shards)."""
    from rrpo.codec.shards import TokenShards
    from rrpo.data.manifest import read_manifest

    pairs = list(zip(cfg.manifests, cfg.tokens)) or [(cfg.manifest, cfg.shards)]
    if not all(m and t for m, t in pairs):
        raise RrpoError(
            "set data.manifest and data.shards (a manifest and its token shards), or data.manifests and data.tokens"
        )
    man, source, shards = [], {}, None
    for mpath, spath in pairs:
        part = read_manifest(mpath)
        sh = TokenShards(spath)
        if shards is not None and sh.vocab_size != shards.vocab_size:
            raise RrpoError(
                f"these shards hold {sh.vocab_size} speech tokens, the first {shards.vocab_size}: "
                "tokenize every manifest with one codec",
                spath,
            )
        shards = shards or sh
        # emotion conditioning needs emotion labels: records of a corpus without them are left out
        part = [u for u in part if u.emotion_labelled and (not cfg.emotions or u.emotion in set(cfg.emotions))]
        missing = sh.missing([u.id for u in part])
        if missing:
            raise RrpoError(
                f"{len(missing)} utterance(s) of the manifest are not in the shards (first: "
                f"{missing[0]}); run `rrpo tokenize` on this manifest",
                spath,
            )
        for u in part:
            if u.id in source:
                raise RrpoError(f"utterance id '{u.id}' is also in an earlier manifest (ids must differ)", mpath)
            source[u.id] = sh
        man += list(part)
    emotions = cfg.emotions or sorted({u.emotion for u in man})
    train_u, held_u = split_heldout(man, cfg)
    if not train_u:
        raise RrpoError("no training utterances left after holding out data.heldout", cfg.manifest)

    def ex(u):
        tokens = torch.from_numpy(source[u.id].get(u.id)[0].copy())
        return Example(u.id, u.text, u.emotion, u.language, u.speaker, tokens)

    keep = lambda e: len(e.tokens) > 0 and (not cfg.max_speech_tokens or len(e.tokens) <= cfg.max_speech_tokens)  # noqa
    train = [e for e in map(ex, train_u) if keep(e)]
    held = [e for e in map(ex, held_u) if keep(e)]
    return train, held, [u.text for u in man], shards, emotions


def collate(policy, examples: list[Example]) -> dict:
    """Batch of examples -> {"prompts": Prompts, "speech": (B, T) int64, "speech_lens": (B,)}."""
    prompts = policy.encode_prompts(
        [e.text for e in examples],
        [e.emotion for e in examples],
        [e.language for e in examples],
        [e.speaker for e in examples] if policy.speaker_embedding is not None else None,
    )
    lens = torch.tensor([len(e.tokens) for e in examples], dtype=torch.long)
    speech = torch.zeros(len(examples), int(lens.max()), dtype=torch.long)
    for i, e in enumerate(examples):
        speech[i, : len(e.tokens)] = e.tokens
    return {"prompts": prompts, "speech": speech, "speech_lens": lens}


def emotion_dropout(batches, p: float, seed: int):
    """``batches`` (micro-batch k -> collated batch) with each row's emotion instruction dropped with
    probability ``p`` (:meth:`~rrpo.policy.model.Prompts.unconditional`). The rows of micro-batch
    ``k`` are chosen by a generator seeded from ``(seed, k)`` alone, so a resumed or repeated run
    drops the same rows; ``p = 0`` returns ``batches`` itself."""
    if p <= 0:
        return batches

    def get(k: int) -> dict:
        batch = batches(k)
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(k))
        drop = torch.rand(len(batch["prompts"]), generator=g) < p
        if bool(drop.any()):
            batch = {**batch, "prompts": batch["prompts"].unconditional(drop), "dropped": drop}
        return batch

    return get


def token_loss(policy, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean cross-entropy over valid targets, number of correct argmax predictions, number of targets)."""
    from rrpo.policy.model import IGNORE

    logits = policy(batch["prompts"], batch["speech"], batch["speech_lens"])  # (B, T+1, V_out)
    tgt = policy.targets(batch["speech"].to(logits.device), batch["speech_lens"].to(logits.device))  # (B, T+1)
    loss = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), ignore_index=IGNORE)
    valid = tgt != IGNORE
    correct = ((logits.argmax(-1) == tgt) & valid).sum()
    return loss, correct, valid.sum()


def build_policy(cfg: SFTConfig, texts: list[str], train: list[Example], vocab_size: int, emotions: list[str]):
    from rrpo.policy.frontend import normalize
    from rrpo.policy.io import load_policy
    from rrpo.policy.model import tiny_policy
    from rrpo.policy.text import ENDOFPROMPT, INSTRUCTIONS, CharTokenizer

    languages = sorted({e.language for e in train})
    if cfg.model.init:
        policy = load_policy(cfg.model.init)
        if policy.speech_vocab_size != vocab_size:
            raise RrpoError(
                f"the policy speaks {policy.speech_vocab_size} speech tokens, the shards {vocab_size}", cfg.model.init
            )
        policy.info["emotions"] = sorted(set(policy.emotions) | set(emotions)) if policy.emotions else list(emotions)
        return policy
    instr = [INSTRUCTIONS[lang][e] + ENDOFPROMPT for lang in languages if lang in INSTRUCTIONS for e in emotions]
    # the characters of the texts as the frontend writes them, in every language of the corpus
    spoken = [normalize(t, lang, cfg.model.text_frontend) for t in texts for lang in (languages or ["zh"])]
    tok = CharTokenizer.build(spoken + instr)
    speakers = sorted({e.speaker for e in train}) if cfg.model.speakers else []
    m = cfg.model
    policy = tiny_policy(
        tok,
        vocab_size,
        hidden_size=m.hidden_size,
        layers=m.layers,
        heads=m.heads,
        kv_heads=m.kv_heads,
        intermediate_size=m.intermediate_size,
        speakers=speakers,
        emotions=emotions,
        languages=languages,
        seed=cfg.train.seed,
    )
    policy.info["text_frontend"] = m.text_frontend
    return policy


def run_sft(cfg: SFTConfig, argv: list[str] | None = None) -> dict:
    """Train; write RUN/policy (description + final weights) and checkpoints; return the last metrics."""
    from rrpo.policy.io import save_policy
    from rrpo.runs import RunDir
    from rrpo.train.loop import EpochBatches, autocast, resolve_device, train

    if cfg.model.speakers and not cfg.model.init and cfg.data.heldout_by == "speaker":
        raise RrpoError(
            "config: a speaker-conditioned policy cannot be scored on held-out speakers; "
            "set model.speakers=false or data.heldout_by=text"
        )
    train_ex, held_ex, texts, shards, emotions = load_examples(cfg.data)
    policy = build_policy(cfg, texts, train_ex, shards.vocab_size, emotions)
    # the policy learns the unconditional prompt: sampling.guidance may then differ from 1
    if cfg.data.drop_emotion > 0:
        policy.info["emotion_dropout"] = max(float(policy.info.get("emotion_dropout", 0.0)), cfg.data.drop_emotion)
    run = RunDir.create(cfg.out, cfg, argv)
    save_policy(policy, run.path / "policy", weights=False)
    n_params = sum(p.numel() for p in policy.parameters())
    log.info("policy: %d parameters, %d train / %d held-out utterances", n_params, len(train_ex), len(held_ex))

    make = lambda idx: collate(policy, [train_ex[i] for i in idx])  # noqa: E731
    if cfg.data.bucket:
        batches = BucketedBatches(
            [len(e.tokens) + len(e.text) for e in train_ex],
            cfg.train.batch_size,
            cfg.data.bucket,
            make,
            seed=cfg.train.seed,
        )
    else:
        batches = EpochBatches(len(train_ex), cfg.train.batch_size, make, seed=cfg.train.seed)
    batches = emotion_dropout(batches, cfg.data.drop_emotion, cfg.train.seed)
    device = resolve_device(cfg.train.device)

    def objective(batch, step):
        loss, correct, n = token_loss(policy, batch)
        return loss, {"policy/loss": loss.item(), "policy/acc": (correct.float() / n.clamp(min=1)).item()}

    def evaluate():
        if not held_ex:
            return {}
        tot_loss, tot_ok, tot_n = 0.0, 0, 0
        for a in range(0, len(held_ex), cfg.eval_batch_size):
            batch = collate(policy, held_ex[a : a + cfg.eval_batch_size])
            with autocast(device, cfg.train.bf16):
                loss, ok, n = token_loss(policy, batch)
            tot_loss += loss.item() * int(n)
            tot_ok += int(ok)
            tot_n += int(n)
        return {"policy/eval_loss": tot_loss / tot_n, "policy/eval_acc": tot_ok / tot_n}

    meta = {
        "policy": {
            "speech_vocab_size": policy.speech_vocab_size,
            "emotions": emotions,
            "n_train": len(train_ex),
            "n_heldout": len(held_ex),
        },
        "data": {
            "manifest": cfg.data.manifest,
            "shards": cfg.data.shards,
            "manifests": list(cfg.data.manifests),
            "tokens": list(cfg.data.tokens),
            "manifest_sha256": shards.meta.get("manifest_sha256"),
        },
    }
    last = train(policy, objective, batches, cfg.train, run, evaluate=evaluate, meta=meta)
    save_policy(policy, run.path / "policy")
    return {
        **last,
        "params": n_params,
        "n_train": len(train_ex),
        "n_heldout": len(held_ex),
        "run": str(run.path),
        "config": to_dict(cfg),
    }
