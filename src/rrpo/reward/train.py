"""Training the reward model: pre-training from scratch or fine-tuning from a checkpoint, with the
hybrid regularisers switched and weighted by config, through the one loop :func:`rrpo.train.loop.train`.

The objective for a batch (tokens, lens, per-token energies, labels):

    F = embed(tokens); F, (j, λ) = EAM(F) if enabled; h' = encode(F); ŷ = head(h')
    L_emo = mean[(1−λ)·CE(ŷ, y'_i) + λ·CE(ŷ, y'_j)]            (y' label-smoothed, λ = 0 without EAM)
    L_adv = L_emo at head(h' + δ), δ = ε·∇_{h'}L_emo/‖·‖ (constant)  if FGM enabled
    L_tok = CE(model(x_tok), y')  with x_tok = HotFlip(x, ∇_F L_emo)   if TAT enabled
    loss  = L_emo + α·L_adv + β·L_tok
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from rrpo.config import option, section
from rrpo.data.emotions import ESD_CLASSES, check_classes
from rrpo.errors import RrpoError
from rrpo.reward.data import DataConfig, collate, load_items
from rrpo.reward.model import (
    ModelConfig,
    TokenRewardModel,
    count_tokens,
    load_token_features,
    resolve_checkpoint,
)
from rrpo.reward.regularisers import (
    RegConfig,
    energy_adaptive_mixup,
    fgm_delta,
    greedy_substitute,
    hotflip_candidates,
    hotflip_substitute,
    mixup_loss,
    perturbation_radius,
    smooth_labels,
    soft_cross_entropy,
)
from rrpo.train.loop import TrainConfig


@dataclass
class RMTrainConfig:
    classes: list[str] = option(list(ESD_CLASSES), "emotion classes, in logit order")
    init_from: str = option("", "fine-tune from this run folder or checkpoint folder ('' = from scratch)")
    data: DataConfig = section(DataConfig, "training data")
    val: DataConfig = section(DataConfig, "optional validation data (evaluated at eval_every and the end)")
    model: ModelConfig = section(ModelConfig, "architecture (ignored when init_from is set)")
    reg: RegConfig = section(RegConfig, "hybrid regularisation (docs/method.md §3)")
    train: TrainConfig = section(
        TrainConfig, "optimisation (the one training loop); RM settings in configs/rm_train.yaml"
    )

    def __post_init__(self):
        self.classes = list(check_classes(self.classes))


def _utterance_loss(model: TokenRewardModel, lens: torch.Tensor, y: torch.Tensor, avail: torch.Tensor | None):
    """``loss_fn(ids, rows) -> (N,)`` for :func:`greedy_substitute`: the cross-entropy of each variant's true
    label (classes its corpus lacks left out), the model in eval mode (no dropout), no gradient."""

    def loss_fn(ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                logits = model(ids, lens[rows]).float()
                av = None if avail is None else avail[rows]
                return soft_cross_entropy(logits, smooth_labels(y[rows], logits.shape[-1], 0.0, av), av)
        finally:
            model.train(was)

    return loss_fn


def make_objective(model: TokenRewardModel, reg: RegConfig):
    """``objective(batch, step) -> (loss, metrics)`` for the training loop."""

    def objective(batch: dict, step: int):
        x, lens, y = batch["tokens"], batch["lens"], batch["labels"]
        avail = batch.get("avail")
        mask = model.input_mask(x, lens)  # valid positions without leading/trailing non-speech
        F0 = model.embed(x)  # (B, T, d)
        F = F0
        partner = lam = None
        if reg.eam.enabled:
            F, draw = energy_adaptive_mixup(F0, lens, batch["energy"], reg.eam)
            partner, lam = draw.partner, draw.lam
        h = model.encode(F, mask)  # (B, T, d) h'
        logits = model.head(h, mask)
        l_emo = mixup_loss(logits, y, partner, lam, reg.label_smoothing, avail)
        metrics = {"rm/l_emo": float(l_emo.detach()), "rm/acc": float((logits.argmax(-1) == y).float().mean())}
        loss = l_emo
        tat = reg.tat.enabled and reg.tat.beta > 0
        g_F = None
        if tat:  # the gradient at the embedded tokens, before the FGM term is added
            (g_F,) = torch.autograd.grad(l_emo, F0, retain_graph=True)
        if reg.fgm.enabled and reg.fgm.alpha > 0:
            (g,) = torch.autograd.grad(l_emo, h, retain_graph=True)
            radius = perturbation_radius(reg.fgm.eps, h, mask, reg.fgm.eps_mode)
            delta = fgm_delta(g, radius).to(h.dtype)  # constant
            l_adv = mixup_loss(model.head(h + delta, mask), y, partner, lam, reg.label_smoothing, avail)
            loss = l_emo + reg.fgm.alpha * l_adv
            metrics["rm/l_adv"] = float(l_adv.detach())
        if tat:
            if reg.tat.search == "greedy":
                best_tok, gain = hotflip_candidates(x, g_F, model.read_table(), mask, reg.tat.chunk)
                x_tok, changed = greedy_substitute(
                    _utterance_loss(model, lens, y, avail), x, best_tok, gain, mask, reg.tat.frac, reg.tat.candidates
                )
            else:
                x_tok, changed = hotflip_substitute(x, g_F, model.read_table(), mask, reg.tat.frac, reg.tat.chunk)
            l_tok = mixup_loss(model(x_tok, lens), y, None, None, reg.label_smoothing, avail)
            loss = loss + reg.tat.beta * l_tok
            metrics["rm/l_tok"] = float(l_tok.detach())
            metrics["rm/tat_changed"] = float(changed.float().sum(1).mean())
        if lam is not None:
            metrics["rm/lambda"] = float(lam.float().mean())
        metrics["rm/loss"] = float(loss.detach())
        return loss, metrics

    return objective


def build_model(cfg: RMTrainConfig, vocab_size: int) -> tuple[TokenRewardModel, dict]:
    """A fresh model from cfg.model, or the checkpoint of cfg.init_from (head re-initialised when
    its classes differ from cfg.classes)."""
    from safetensors.torch import load_file

    from rrpo.reward.model import build_from_meta

    classes = tuple(cfg.classes)
    if not cfg.init_from:
        phi = None
        if cfg.model.embedding != "free":
            if not cfg.model.token_features:
                raise RrpoError(
                    f"model.embedding={cfg.model.embedding} needs model.token_features (a codec folder or a .npy file)"
                )
            phi = load_token_features(cfg.model.token_features)
        return TokenRewardModel(vocab_size, classes, cfg.model, phi), {"init": "scratch"}
    ck = resolve_checkpoint(cfg.init_from)
    meta = json.loads((ck / "meta.json").read_text(encoding="utf-8"))
    if "rm" not in meta:
        raise RrpoError("init_from: not a reward-model checkpoint (no 'rm' in meta.json)", ck)
    info = dict(meta["rm"])
    # how tokens heard too rarely are read is a choice of this training, not of the checkpoint
    info["model"] = {
        **info["model"],
        "unseen_tokens": cfg.model.unseen_tokens,
        "min_token_count": cfg.model.min_token_count,
    }
    if cfg.model.unseen_tokens == "nearest" and not int(info.get("feature_dim", 0)):
        raise RrpoError("model.unseen_tokens=nearest needs token features; init_from's model has none", ck)
    if int(info["vocab_size"]) != vocab_size:
        raise RrpoError(f"init_from has token vocabulary {info['vocab_size']}, the data {vocab_size}", ck)
    same_head = tuple(info["classes"]) == classes
    info["classes"] = list(classes)
    model = build_from_meta(info)
    state = load_file(str(ck / "model.safetensors"))
    if not same_head:
        state = {k: v for k, v in state.items() if not k.startswith("out.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("out.")] + list(unexpected)
    if bad:
        raise RrpoError(f"init_from weights do not fit ({bad[:3]})", ck)
    return model, {"init": str(ck), "head_reinitialised": not same_head}


def train_rm(cfg: RMTrainConfig, out: str | Path, resume: bool = True, argv: list[str] | None = None) -> dict:
    """Train a reward model into run folder ``out``; return a summary (last metrics, data counts)."""
    from rrpo.runs import RunDir
    from rrpo.train.loop import EpochBatches, train

    classes = tuple(cfg.classes)
    items, summary = load_items(cfg.data, classes, what="data")
    vocab = summary["vocab_size"]
    torch.manual_seed(cfg.train.seed)
    model, init = build_model(cfg, vocab)
    if model.nonspeech is not None and init["init"] == "scratch":
        from rrpo.reward.model import estimate_nonspeech

        model.nonspeech.copy_(
            estimate_nonspeech(
                [it.tokens for it in items],
                [it.energy for it in items],
                vocab,
                cfg.model.nonspeech_db,
                cfg.model.nonspeech_frac,
            )
        )
    if model.nonspeech is not None:
        summary["nonspeech_tokens"] = int(model.nonspeech.sum())
    if model.token_count is not None:  # add this data's counts to init_from's (on resume the checkpoint's win)
        count = count_tokens([it.tokens for it in items], vocab)
        model.set_token_count(model.token_count.double() + torch.from_numpy(count).double())
        if model.cfg.unseen_tokens == "nearest":
            summary["rare_tokens"] = int((model.token_count < model.cfg.min_token_count).sum())
    run = RunDir.create(out, cfg, argv)
    batches = EpochBatches(
        len(items),
        cfg.train.batch_size,
        lambda idx: collate(
            [items[i] for i in idx],
            cfg.data.max_tokens,
            tempo=cfg.data.tempo,
            token_noise=cfg.data.token_noise,
            vocab_size=vocab,
        ),
        seed=cfg.train.seed,
    )
    evaluate = None
    if cfg.val.manifests:
        val_items, _ = load_items(cfg.val, classes, vocab, what="val")

        def evaluate():
            from rrpo.reward.metrics import predict

            probs, labels = predict(model, val_items)
            acc = float((probs.argmax(-1) == labels).float().mean())
            return {"val/acc": acc}

    meta = {"rm": model.describe(), "data": summary, "init": init}
    last = train(
        model, make_objective(model, cfg.reg), batches, cfg.train, run, evaluate=evaluate, meta=meta, resume=resume
    )
    return {"run": str(run.path), "init": init, "data": summary, "last": last}
