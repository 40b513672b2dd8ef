"""The token-input emotion reward model (docs/method.md §2).

Speech tokens go in either as ids ``(B, T)`` int64 or as one probability vector per position
``(B, T, V)`` float (relaxed samples from a policy). Both take ONE code path: the embedding of a
probability vector p is ``p · E`` and the embedding of an id is the row of the same table ``E``
(equal to ``onehot(id) · E``), so gradients reach p.

    x ─embed→ F (B, T, d) ─+pos, Transformer encoder→ h' (B, T, d) ─attention pooling→ logits (B, K)

The embedding table is built by config (``model.embedding``):

- ``free``: a learned row per token;
- ``features``: ``E = Linear(Φ)`` with Φ the codec's ``token_features()`` (V, F), standardised per
  column, so a token's embedding is tied to where it lies in the codec's feature space;
- ``free+features``: the sum of both (docs/method.md §7: tokens that sound alike start out close).

Φ is kept in the model as a buffer, so a saved reward model loads without its codec.

``reward(x, lens, target) = log_softmax(logits)[target]`` per utterance (docs/method.md §2, our
default), differentiable w.r.t. a relaxed ``x``. :func:`load_reward_model` gives a frozen model in
eval mode from a run folder or one checkpoint folder.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch
from torch import nn

from rrpo.config import check, option, to_dict
from rrpo.errors import RrpoError


@dataclass
class ModelConfig:
    d_model: int = option(128, "width of embeddings and the encoder (GPU scale: 512)")
    n_layers: int = option(2, "Transformer encoder layers (GPU scale: 6)")
    n_heads: int = option(4, "attention heads (GPU scale: 8)")
    d_ff: int = option(256, "feed-forward width (GPU scale: 2048)")
    dropout: float = option(0.1, "dropout in the encoder and on the embeddings")
    pool_dim: int = option(64, "hidden width of the attention-pooling scorer")
    embedding: Literal["free", "features", "free+features"] = option(
        "free", "token embedding: free table, Linear(codec token_features), or their sum")
    token_features: str = option(
        "", "where token_features() come from when the embedding uses them: a .npy (V, F) file or a codec folder")

    def __post_init__(self):
        check(self.d_model >= 1, "model.d_model", "must be >= 1")
        check(self.n_layers >= 0, "model.n_layers", "must be >= 0")
        check(self.n_heads >= 1 and self.d_model % self.n_heads == 0, "model.n_heads",
              "must be >= 1 and divide model.d_model")
        check(self.d_ff >= 1, "model.d_ff", "must be >= 1")
        check(0 <= self.dropout < 1, "model.dropout", "must be in [0, 1)")
        check(self.pool_dim >= 1, "model.pool_dim", "must be >= 1")


def lengths_to_mask(lens: torch.Tensor, T: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool mask, True = valid."""
    return torch.arange(T, device=lens.device)[None, :] < lens[:, None]


def sinusoidal(T: int, d: int, device=None) -> torch.Tensor:
    """(T, d) sinusoidal position encoding."""
    pos = torch.arange(T, dtype=torch.float32, device=device)[:, None]
    i = torch.arange(0, d, 2, dtype=torch.float32, device=device)
    div = torch.exp(-math.log(10000.0) * i / d)
    pe = torch.zeros(T, d, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return pe


class AttentionPool(nn.Module):
    """Masked attention pooling: a = softmax_t(w·tanh(W h_t)), pooled = Σ_t a_t h_t."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(d, hidden)
        self.score = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = self.score(torch.tanh(self.proj(h))).squeeze(-1)  # (B, T)
        s = s.float().masked_fill(~mask, float("-inf"))
        a = torch.softmax(s, dim=-1).to(h.dtype)  # (B, T)
        return torch.einsum("bt,btd->bd", a, h)


class TokenRewardModel(nn.Module):
    """Emotion recogniser over speech tokens; see the module docstring.

    ``classes``: emotion names, index k of the logits is ``classes[k]``.
    ``token_features``: (V, F) descriptor per token, required when ``cfg.embedding`` uses features.
    """

    def __init__(self, vocab_size: int, classes: Sequence[str], cfg: ModelConfig | None = None,
                 token_features: torch.Tensor | None = None):
        super().__init__()
        cfg = cfg or ModelConfig()
        self.cfg = cfg
        self.vocab_size = int(vocab_size)
        self.classes = tuple(classes)
        d = cfg.d_model
        if cfg.embedding in ("free", "free+features"):
            self.free = nn.Embedding(vocab_size, d)
            nn.init.normal_(self.free.weight, std=d ** -0.5)
        else:
            self.free = None
        if cfg.embedding in ("features", "free+features"):
            if token_features is None:
                raise RrpoError(f"model.embedding={cfg.embedding} needs the codec's token features "
                                "(set model.token_features to a codec folder or a .npy file)")
            phi = torch.as_tensor(token_features, dtype=torch.float32)
            if phi.ndim != 2 or phi.shape[0] != vocab_size:
                raise RrpoError(f"token features have shape {tuple(phi.shape)}, expected ({vocab_size}, F)")
            phi = (phi - phi.mean(0)) / phi.std(0).clamp_min(1e-6)  # standardise each feature column
            self.register_buffer("token_features", phi)
            self.feat_proj = nn.Linear(phi.shape[1], d)
        else:
            self.token_features = None
            self.feat_proj = None
        self.emb_drop = nn.Dropout(cfg.dropout)
        if cfg.n_layers > 0:
            layer = nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.d_ff, cfg.dropout, batch_first=True,
                                               norm_first=True, activation="gelu")
            self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        else:
            self.encoder = None
        self.norm = nn.LayerNorm(d)
        self.pool = AttentionPool(d, cfg.pool_dim)
        self.out = nn.Linear(d, len(self.classes))

    @property
    def feature_dim(self) -> int:
        return 0 if self.token_features is None else int(self.token_features.shape[1])

    def embedding_table(self) -> torch.Tensor:
        """E (V, d): the free table, the projected token features, or their sum."""
        E = None
        if self.free is not None:
            E = self.free.weight
        if self.feat_proj is not None:
            P = self.feat_proj(self.token_features)
            E = P if E is None else E + P
        return E

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Low-level features F (B, T, d) of ids (B, T) or probability vectors (B, T, V): p·E."""
        E = self.embedding_table()  # (V, d)
        if x.dtype in (torch.int64, torch.int32):
            return E[x]  # one-hot(x)·E, by index
        if x.ndim != 3 or x.shape[-1] != self.vocab_size:
            raise ValueError(f"relaxed input must be (B, T, {self.vocab_size}), got {tuple(x.shape)}")
        return torch.matmul(x.to(E.dtype), E)  # (B, T, V)·(V, d) -> (B, T, d)

    def encode(self, F: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """High-level sequence h' (B, T, d) from low-level features F (B, T, d)."""
        B, T, d = F.shape
        mask = lengths_to_mask(lens, T)
        h = self.emb_drop(F + sinusoidal(T, d, F.device).to(F.dtype))
        if self.encoder is not None:
            h = self.encoder(h, src_key_padding_mask=~mask)
        return self.norm(h)

    def head(self, h: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) from h' (B, T, d) (possibly perturbed): masked attention pooling + linear."""
        mask = lengths_to_mask(lens, h.shape[1])
        return self.out(self.pool(h, mask))

    def hidden(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """h' (B, T, d) for ids or relaxed input."""
        return self.encode(self.embed(x), lens)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) for ids (B, T) or probability vectors (B, T, V); ``lens`` (B,)."""
        return self.head(self.hidden(x, lens), lens)

    def class_index(self, target) -> torch.Tensor:
        """Emotion name(s) or index(es) -> LongTensor of class indices."""
        if isinstance(target, str):
            return self.class_index([target])[0]  # a scalar: broadcast over the batch
        if isinstance(target, (list, tuple)) and target and isinstance(target[0], str):
            bad = [t for t in target if t not in self.classes]
            if bad:
                raise RrpoError(f"emotion(s) {bad} are not classes of this reward model {list(self.classes)}")
            return torch.tensor([self.classes.index(t) for t in target])
        return torch.as_tensor(target, dtype=torch.long)

    def reward(self, x: torch.Tensor, lens: torch.Tensor, target) -> torch.Tensor:
        """R (B,) = log_softmax(logits)[target]; ``target`` a (B,) LongTensor, an int or emotion name(s)."""
        logits = self(x, lens).float()
        idx = self.class_index(target).to(logits.device)
        if idx.ndim == 0:
            idx = idx.expand(logits.shape[0])
        return torch.log_softmax(logits, -1).gather(1, idx[:, None]).squeeze(1)

    def describe(self) -> dict:
        """What :func:`build_from_meta` needs to rebuild this model (goes into meta.json)."""
        return {"model": to_dict(self.cfg), "classes": list(self.classes), "vocab_size": self.vocab_size,
                "feature_dim": self.feature_dim}


# ---------------------------------------------------------------------------- token features

def load_token_features(source: str) -> torch.Tensor:
    """(V, F) token features from a ``.npy`` file or a codec folder (via ``rrpo.codec.load_codec``)."""
    import numpy as np

    p = Path(source)
    if not p.exists():
        raise RrpoError("token-features source not found", p)
    if p.is_file():
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as e:
            raise RrpoError(f"not a readable .npy array ({str(e)[:120]})", p) from None
    else:
        try:
            from rrpo.codec import load_codec  # provided by the codec package
        except ImportError:
            raise RrpoError("this rrpo has no codec loader; pass a .npy file of token features", p) from None
        arr = load_codec(p).token_features()
        if arr is None:
            raise RrpoError("this codec has no token_features(); use model.embedding=free", p)
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 2:
        raise RrpoError(f"token features must be (V, F), got shape {arr.shape}", p)
    return torch.from_numpy(arr)


# ---------------------------------------------------------------------------- loading

def build_from_meta(info: dict) -> TokenRewardModel:
    """An untrained model of the architecture described by ``TokenRewardModel.describe()``."""
    from rrpo.config import _build  # same validation as a config file

    cfg = _build(ModelConfig, dict(info["model"]), "model.")
    fd = int(info.get("feature_dim", 0))
    phi = torch.zeros(int(info["vocab_size"]), fd) if fd else None
    if phi is not None:
        phi[0, 0] = 1.0  # placeholder (non-degenerate std); the real buffer comes from the weights
    return TokenRewardModel(int(info["vocab_size"]), info["classes"], cfg, phi)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder (model.safetensors + meta.json) from itself or from a run folder (newest)."""
    from rrpo.train.loop import latest_checkpoint

    p = Path(path)
    if (p / "model.safetensors").exists() and (p / "meta.json").exists():
        return p
    if p.is_dir():
        ck = latest_checkpoint(p)
        if ck is not None:
            return ck
        raise RrpoError("no checkpoint in this folder (expected checkpoints/step_N or model.safetensors)", p)
    raise RrpoError("reward-model folder not found", p)


def load_reward_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> TokenRewardModel:
    """A frozen reward model in eval mode from a run folder (newest checkpoint) or a checkpoint folder."""
    from rrpo.train.loop import load_weights

    ck = resolve_checkpoint(path)
    try:
        meta = json.loads((ck / "meta.json").read_text(encoding="utf-8"))
        info = meta["rm"]
    except (OSError, ValueError, KeyError):
        raise RrpoError("meta.json does not describe a reward model (no 'rm' entry)", ck / "meta.json") from None
    model = build_from_meta(info)
    load_weights(model, ck / "model.safetensors")
    model.eval().requires_grad_(False)
    return model.to(device)
