"""``rrpo phones train``: a CTC phone recogniser (:mod:`rrpo.phones.model`) from transcribed manifests.

Every utterance with a text in a language espeak-ng reads (:data:`rrpo.phones.inventory.VOICES`)
is phonemised and turned into per-utterance normalised log-mels once; both are cached in the run
folder (``features/``), so a resumed run reads them back. Batches hold utterances of similar length
up to ``batch_seconds`` of padded audio; their order is a seeded permutation per epoch, and
SpecAugment masks are drawn from the loop's per-micro-batch seed, so a resumed run repeats the
losses of an uninterrupted one. The loss is CTC (blank 0), each utterance's loss divided by its
phone count, averaged over the batch. The validation phone error rate (greedy decoding) is logged
as ``val/per`` at ``train.eval_every`` and at the end, when ``val_manifests`` are given.

The run folder is also the model folder: ``phones.json`` + ``model.safetensors`` are written at
the end (``phones.json`` last), beside ``checkpoints/``, ``config.yaml`` and ``metrics.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rrpo.config import check, option, section, to_dict
from rrpo.errors import RrpoError
from rrpo.train.loop import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class PhoneOptim(TrainConfig):
    """The training loop's settings with this trainer's defaults (batches are set by batch_seconds)."""

    steps: int = option(3000, "optimizer steps in all")
    lr: float = option(2e-3, "peak learning rate (AdamW)")
    warmup_steps: int = option(200, "linear warm-up steps")
    log_every: int = option(25, "log training metrics every N steps")
    ckpt_every: int = option(500, "save a checkpoint every N steps (0 = only at the end)")
    keep_checkpoints: int = option(2, "keep only the newest N checkpoints (0 = keep all)")


@dataclass
class PhoneTrainConfig:
    manifests: list[str] = option([], "transcribed manifests to train on (text + language in every record used)")
    val_manifests: list[str] = option([], "transcribed manifests to measure val/per on (never trained on)")
    exclude_speakers: list[str] = option([], "speakers of the manifests never trained on (e.g. held-out ones)")
    val_max: int = option(200, "validation utterances at most (evenly spread over the val manifests' records)")
    max_seconds: float = option(20.0, "longer utterances are left out")
    max_hours: float = option(0.0, "train on at most this many hours, drawn at random (0 = all)")
    batch_seconds: float = option(120.0, "padded audio per micro-batch, in seconds (train.batch_size is unused)")
    channels: int = option(192, "network width")
    blocks: int = option(6, "residual convolution blocks at 25 Hz")
    kernel: int = option(9, "depthwise kernel of a block, in 40 ms frames")
    dropout: float = option(0.1, "dropout in the blocks")
    freq_masks: int = option(2, "SpecAugment: frequency masks per utterance")
    freq_width: int = option(15, "SpecAugment: widest frequency mask, in mel bands")
    time_masks: int = option(2, "SpecAugment: time masks per utterance")
    time_width: float = option(0.05, "SpecAugment: widest time mask, as a fraction of the utterance")
    train: PhoneOptim = section(PhoneOptim, "optimisation (the one training loop; train.batch_size is unused)")

    def __post_init__(self):
        check(self.max_seconds > 0, "max_seconds", "must be > 0")
        check(self.max_hours >= 0, "max_hours", "must be >= 0")
        check(self.batch_seconds > 0, "batch_seconds", "must be > 0")
        check(self.channels >= 8, "channels", "must be at least 8")
        check(self.blocks >= 1, "blocks", "must be at least 1")
        check(self.kernel >= 1 and self.kernel % 2 == 1, "kernel", "must be an odd number >= 1")
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        check(self.val_max >= 1, "val_max", "must be at least 1")


@dataclass
class Item:
    id: str
    feats: np.ndarray  # (T_mel, 80) float16
    phones: list[int]


def _records(paths: list[str], exclude: set[str], max_seconds: float, what: str):
    """Usable records of the manifests, and counts of what was left out and why."""
    from rrpo.data.manifest import read_manifest
    from rrpo.phones.inventory import VOICES

    out, skipped = [], {"no_text": 0, "language": 0, "too_long": 0, "excluded_speaker": 0}
    for p in paths:
        man = read_manifest(p)
        for u in man:
            if u.speaker in exclude:
                skipped["excluded_speaker"] += 1
            elif not (u.text or "").strip():
                skipped["no_text"] += 1
            elif u.language not in VOICES:
                skipped["language"] += 1
            elif u.duration and u.duration > max_seconds:
                skipped["too_long"] += 1
            else:
                out.append((man, u))
    if not out:
        raise RrpoError(f"no transcribed utterance in the {what} manifests ({skipped})", paths[0] if paths else None)
    return out, skipped


def _featurise(records, cache: Path, what: str, progress: bool = True) -> list[tuple[str, np.ndarray, tuple]]:
    """(id, log-mel float16, phonemes) of every record, cached in ``cache`` (keyed by the records)."""
    from rrpo.data.audio import load_audio
    from rrpo.io import write_json
    from rrpo.phones.inventory import PARSE_VERSION, phonemise
    from rrpo.phones.model import LogMel

    key = hashlib.sha256(
        json.dumps([PARSE_VERSION, [[str(m.audio_path(u)), u.text, u.language] for m, u in records]]).encode()
    ).hexdigest()[:16]
    done = cache / f"{what}-{key}.json"
    arr = cache / f"{what}-{key}.npy"
    if done.exists() and arr.exists():
        index = json.loads(done.read_text())
        feats = np.load(arr, mmap_mode="r")
        return [(r["id"], feats[r["o"] : r["o"] + r["n"]], tuple(r["p"])) for r in index["items"]]
    cache.mkdir(parents=True, exist_ok=True)
    frontend = LogMel()
    chunks, index, o = [], [], 0
    from tqdm import tqdm

    for man, u in tqdm(records, desc=f"features ({what})", unit="utt", disable=not progress, dynamic_ncols=True):
        audio, sr = load_audio(man.audio_path(u))
        f = frontend(audio, sr).astype(np.float16)
        ph = phonemise(u.text, u.language)
        if not ph:
            continue
        chunks.append(f)
        index.append({"id": u.id, "o": o, "n": len(f), "p": list(ph)})
        o += len(f)
    allf = np.concatenate(chunks) if chunks else np.zeros((0, frontend.n_mels), np.float16)
    tmp = arr.with_suffix(".tmp.npy")
    np.save(tmp, allf)
    tmp.replace(arr)
    write_json(done, {"items": index})
    return [(r["id"], allf[r["o"] : r["o"] + r["n"]], tuple(r["p"])) for r in index]


class LengthBatches:
    """Micro-batch ``k``: batches of similar-length utterances (at most ``budget`` padded mel
    frames each) in a seeded random order per epoch; SpecAugment drawn from torch's global RNG
    (which the training loop seeds per micro-batch)."""

    def __init__(self, items: list[Item], budget: int, seed: int, cfg: PhoneTrainConfig):
        order = sorted(range(len(items)), key=lambda i: (len(items[i].feats), items[i].id))
        self.batches, cur = [], []
        for i in order:
            n = len(items[i].feats)
            if cur and n * (len(cur) + 1) > budget:
                self.batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            self.batches.append(cur)
        self.items, self.seed, self.cfg = items, seed, cfg
        self._epoch, self._perm = -1, None

    def __len__(self) -> int:
        return len(self.batches)

    def __call__(self, k: int):
        from rrpo.phones.model import pad_batch

        epoch, i = divmod(k, len(self.batches))
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._perm, self._epoch = torch.randperm(len(self.batches), generator=g).tolist(), epoch
        its = [self.items[j] for j in self.batches[self._perm[i]]]
        mel, lens = pad_batch([it.feats for it in its])
        c = self.cfg
        for b, n in enumerate(lens.tolist()):
            for _ in range(c.freq_masks):
                w = int(torch.randint(0, c.freq_width + 1, ()))
                f0 = int(torch.randint(0, max(1, mel.shape[2] - w), ()))
                mel[b, :n, f0 : f0 + w] = 0.0
            for _ in range(c.time_masks):
                w = int(torch.randint(0, int(c.time_width * n) + 1, ()))
                t0 = int(torch.randint(0, max(1, n - w), ()))
                mel[b, t0 : t0 + w] = 0.0
        targets = [torch.tensor(it.phones, dtype=torch.long) for it in its]
        return mel, lens, torch.cat(targets), torch.tensor([len(t) for t in targets])


def ctc_objective(net):
    def objective(batch, step):
        mel, lens, targets, tlens = batch
        logits, olens = net(mel, lens)
        logp = torch.log_softmax(logits.float(), -1).transpose(0, 1)  # (T, B, V)
        loss = torch.nn.functional.ctc_loss(logp, targets, olens, tlens, blank=0, reduction="none", zero_infinity=True)
        loss = (loss / tlens.clamp(min=1)).mean()
        return loss, {"phones/ctc": float(loss.detach())}

    return objective


def phone_error(model_or_net, phones, items: list[Item], batch: int = 16) -> dict:
    """Greedy-decoded PER of ``net`` over ``items``: total edits / total reference phones."""
    from rrpo.phones.inventory import edit_ops
    from rrpo.phones.model import greedy, pad_batch

    net = model_or_net
    s = d = ins = n = 0
    order = sorted(range(len(items)), key=lambda i: len(items[i].feats))
    for b in range(0, len(order), batch):
        its = [items[i] for i in order[b : b + batch]]
        mel, lens = pad_batch([it.feats for it in its])
        logits, olens = net(mel, lens)
        for it, hyp in zip(its, greedy(logits, olens)):
            a, bb, c = edit_ops(it.phones, hyp)
            s, d, ins, n = s + a, d + bb, ins + c, n + len(it.phones)
    return {"per": (s + d + ins) / max(1, n), "sub": s / max(1, n), "del": d / max(1, n), "ins": ins / max(1, n)}


def train_phones(cfg: PhoneTrainConfig, out: str | Path, resume: bool = True, argv: list[str] | None = None) -> dict:
    """Train into run folder ``out``; returns a summary (data counts, last metrics, times)."""
    from rrpo.phones.inventory import PhoneSet
    from rrpo.phones.model import NetShape, PhoneModel, PhoneNet
    from rrpo.runs import RunDir
    from rrpo.train.loop import train

    if not cfg.manifests:
        raise RrpoError("manifests=[...] is required (transcribed manifests to train on)")
    t0 = time.perf_counter()
    out = Path(out)
    exclude = set(cfg.exclude_speakers)
    recs, skipped = _records(cfg.manifests, exclude, cfg.max_seconds, "training")
    if cfg.max_hours:
        rng = np.random.default_rng(cfg.train.seed)
        perm = rng.permutation(len(recs))
        keep, total = [], 0.0
        for i in perm:
            total += recs[i][1].duration or 0.0
            if total > cfg.max_hours * 3600:
                break
            keep.append(int(i))
        recs = [recs[i] for i in sorted(keep)]
    rows = _featurise(recs, out / "features", "train", cfg.train.progress)
    phones = PhoneSet.from_sequences(r[2] for r in rows)
    items = [Item(i, f, phones.encode(p)) for i, f, p in rows]
    t_feat = time.perf_counter() - t0
    val_items: list[Item] = []
    if cfg.val_manifests:
        vrecs, _ = _records(cfg.val_manifests, set(), cfg.max_seconds, "validation")
        step = max(1, len(vrecs) // cfg.val_max)
        vrows = _featurise(vrecs[::step][: cfg.val_max], out / "features", "val", cfg.train.progress)
        val_items = [Item(i, f, phones.encode(p)) for i, f, p in vrows]
    shape = NetShape(
        channels=cfg.channels, blocks=cfg.blocks, kernel=cfg.kernel, n_phones=len(phones), dropout=cfg.dropout
    )
    torch.manual_seed(cfg.train.seed)
    net = PhoneNet(shape)
    run = RunDir.create(out, cfg, argv)
    batches = LengthBatches(items, int(cfg.batch_seconds * 100), cfg.train.seed, cfg)
    evaluate = None
    if val_items:

        def evaluate():
            return {f"val/{k}": v for k, v in phone_error(net, phones, val_items).items()}

    hours = sum(len(it.feats) for it in items) / 100 / 3600
    data = {
        "utterances": len(items),
        "hours": round(hours, 3),
        "phones": len(phones) - 1,
        "skipped": skipped,
        "batches_per_epoch": len(batches),
        "val_utterances": len(val_items),
    }
    log.info(
        "phones: %d utterances, %.2f h, %d phonemes, %d batches per epoch",
        len(items),
        hours,
        len(phones) - 1,
        len(batches),
    )
    t1 = time.perf_counter()
    last = train(
        net,
        ctc_objective(net),
        batches,
        cfg.train,
        run,
        evaluate=evaluate,
        meta={"phones": {"shape": shape.to_dict(), "symbols": phones.symbols}, "data": data},
        resume=resume,
    )
    net.eval()
    times = {"features_s": round(t_feat, 1), "train_s": round(time.perf_counter() - t1, 1)}
    model = PhoneModel(shape, phones.symbols, net.state_dict(), path=out)
    model.save(
        out,
        {
            "trained_on": [str(p) for p in cfg.manifests],
            "excluded_speakers": sorted(exclude),
            "data": data,
            "last": last,
            "times": times,
            "config": to_dict(cfg),
        },
    )
    return {"model": str(out), "data": data, "last": last, "times": times}
