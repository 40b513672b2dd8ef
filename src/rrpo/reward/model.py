"""The token-input emotion reward model (docs/method.md §2).

Speech tokens go in either as ids ``(B, T)`` int64 or as one probability vector per position
``(B, T, V)`` float (relaxed samples from a policy). Both take ONE code path: the embedding of a
probability vector p is ``p · E`` and the embedding of an id is the row of the same table ``E``
(equal to ``onehot(id) · E``), so gradients reach p.

    x ─embed→ F (B, T, d) ─+pos, Transformer encoder→ h' (B, T, d) ─pooling→ logits (B, K)

Pooling (``model.pooling``): ``attention`` (masked attention pooling), ``attention+stats``
(attention pooling concatenated with the masked mean and standard deviation of h' over time,
x-vector style statistics pooling) or ``stats`` (the mean and standard deviation alone: every
position weighs the same, so no few positions can dominate the decision).

Non-speech trimming (``model.trim_nonspeech``): the model keeps a (V,) flag per token id, "this
token stands for non-speech", estimated from the per-token energies of its training data
(:func:`estimate_nonspeech`). Leading and trailing runs of such tokens are masked out of the
encoder and the pooling, and positions are counted from the first speech token, so a clip padded
with silence before and after gives the same prediction as the clip itself. The decision is made
on the hard token (the argmax of a relaxed input): it applies to corpus tokens and to a policy's
samples alike, and the gradient still reaches every kept position.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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
        "free", "token embedding: free table, Linear(codec token_features), or their sum"
    )
    token_features: str = option(
        "", "where token_features() come from when the embedding uses them: a .npy (V, F) file or a codec folder"
    )
    free_init: Literal["normal", "zero"] = option(
        "normal",
        "initial free rows: normal (std 1/sqrt(d)) or zero (with free+features a token starts as its features' "
        "projection and a token absent from the training data keeps exactly that embedding)",
    )
    pooling: Literal["attention", "attention+stats", "stats"] = option(
        "attention",
        "attention pooling, attention pooling + mean/std statistics pooling of h', or the statistics alone",
    )
    trim_nonspeech: bool = option(
        True, "mask leading/trailing non-speech tokens (flags estimated from the training data's token energies)"
    )
    nonspeech_db: float = option(
        -35.0, "a token occurrence is quiet below this level (dB re its utterance's loudest token)"
    )
    nonspeech_frac: float = option(
        0.5, "a token id is non-speech if at least this fraction of its occurrences are quiet"
    )
    unseen_tokens: Literal["keep", "nearest"] = option(
        "keep",
        "a token heard fewer than model.min_token_count times in training is read as itself (keep) or as "
        "its nearest well-heard token in codec-feature space (nearest; needs token features). Read from the "
        "fine-tuning config, not from init_from's checkpoint",
    )
    min_token_count: int = option(10, "with unseen_tokens=nearest: a token is well heard from this many occurrences")

    def __post_init__(self):
        check(self.d_model >= 1, "model.d_model", "must be >= 1")
        check(self.n_layers >= 0, "model.n_layers", "must be >= 0")
        check(
            self.n_heads >= 1 and self.d_model % self.n_heads == 0,
            "model.n_heads",
            "must be >= 1 and divide model.d_model",
        )
        check(self.d_ff >= 1, "model.d_ff", "must be >= 1")
        check(0 <= self.dropout < 1, "model.dropout", "must be in [0, 1)")
        check(self.pool_dim >= 1, "model.pool_dim", "must be >= 1")
        check(self.free_init in ("normal", "zero"), "model.free_init", "must be 'normal' or 'zero'")
        check(
            self.pooling in ("attention", "attention+stats", "stats"),
            "model.pooling",
            "must be 'attention', 'attention+stats' or 'stats'",
        )
        check(self.nonspeech_db < 0, "model.nonspeech_db", "must be < 0")
        check(0 < self.nonspeech_frac <= 1, "model.nonspeech_frac", "must be in (0, 1]")
        check(self.unseen_tokens in ("keep", "nearest"), "model.unseen_tokens", "must be 'keep' or 'nearest'")
        check(self.min_token_count >= 1, "model.min_token_count", "must be >= 1")


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


def as_mask(lens_or_mask: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) bool valid-position mask from (B,) lengths or an existing (B, T) bool mask."""
    if lens_or_mask.dtype == torch.bool and lens_or_mask.ndim == 2:
        return lens_or_mask
    return lengths_to_mask(lens_or_mask, T)


def stats_pool(h: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """[mean_t h_t, sqrt(var_t h_t + eps)] over the valid positions: (B, T, d) -> (B, 2d)."""
    m = mask.to(h.dtype)[..., None]  # (B, T, 1)
    n = m.sum(1).clamp_min(1.0)
    mean = (h * m).sum(1) / n
    var = (((h - mean[:, None]) ** 2) * m).sum(1) / n
    return torch.cat([mean, torch.sqrt(var + eps)], -1)


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

    def __init__(
        self,
        vocab_size: int,
        classes: Sequence[str],
        cfg: ModelConfig | None = None,
        token_features: torch.Tensor | None = None,
        count_tokens: bool = True,
    ):
        super().__init__()
        cfg = cfg or ModelConfig()
        self.cfg = cfg
        self.vocab_size = int(vocab_size)
        self.classes = tuple(classes)
        d = cfg.d_model
        if cfg.embedding in ("free", "free+features"):
            self.free = nn.Embedding(vocab_size, d)
            if cfg.free_init == "zero":
                nn.init.zeros_(self.free.weight)
            else:
                nn.init.normal_(self.free.weight, std=d**-0.5)
        else:
            self.free = None
        if cfg.embedding in ("features", "free+features"):
            if token_features is None:
                raise RrpoError(
                    f"model.embedding={cfg.embedding} needs the codec's token features "
                    "(set model.token_features to a codec folder or a .npy file)"
                )
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
            layer = nn.TransformerEncoderLayer(
                d, cfg.n_heads, cfg.d_ff, cfg.dropout, batch_first=True, norm_first=True, activation="gelu"
            )
            self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        else:
            self.encoder = None
        self.norm = nn.LayerNorm(d)
        self.pool = None if cfg.pooling == "stats" else AttentionPool(d, cfg.pool_dim)
        pooled_dim = {"attention": d, "attention+stats": 3 * d, "stats": 2 * d}[cfg.pooling]
        self.out = nn.Linear(pooled_dim, len(self.classes))
        if cfg.trim_nonspeech:  # set by estimate_nonspeech() before training; stored with the weights
            self.register_buffer("nonspeech", torch.zeros(vocab_size, dtype=torch.bool))
        else:
            self.nonspeech = None
        # how often each token id occurred in the training data (pre-training and fine-tuning added up);
        # checkpoints from before the counts were kept have none (count_tokens=False)
        if count_tokens:
            self.register_buffer("token_count", torch.zeros(vocab_size))
        else:
            self.token_count = None
        if cfg.unseen_tokens == "nearest" and self.token_features is None:
            raise RrpoError(
                "model.unseen_tokens=nearest needs token features to measure nearness "
                "(model.embedding=features or free+features)"
            )
        self._token_map = None  # (V,) ids, computed from token_count on first use (unseen_tokens=nearest)
        self.register_load_state_dict_post_hook(lambda module, keys: module._forget_token_map())

    def _forget_token_map(self) -> None:
        self._token_map = None

    def set_token_count(self, count: torch.Tensor) -> None:
        """Store the training data's per-token occurrence counts (V,)."""
        if self.token_count is None:
            raise RrpoError("this reward model was built without token counts (a checkpoint from an older rrpo)")
        self.token_count.copy_(torch.as_tensor(count, dtype=self.token_count.dtype))
        self._forget_token_map()

    def token_map(self) -> torch.Tensor | None:
        """(V,) ids: each token as the model reads it (None when unseen_tokens=keep). A token heard at least
        ``min_token_count`` times maps to itself, any other to the nearest such token by Euclidean
        distance between standardised codec token features. Without counts or well-heard tokens: identity."""
        if self.cfg.unseen_tokens != "nearest":
            return None
        if self._token_map is None:
            V = self.vocab_size
            dev = self.token_features.device
            ids = torch.arange(V, device=dev)
            seen = (
                self.token_count >= self.cfg.min_token_count
                if self.token_count is not None
                else torch.zeros(V, dtype=torch.bool, device=dev)
            )
            if bool(seen.any()) and not bool(seen.all()):
                phi = self.token_features.float()
                cand = phi[seen]
                cand_ids = ids[seen]
                rare = (~seen).nonzero().squeeze(1)
                c2 = (cand * cand).sum(1)
                for s in range(0, len(rare), 1024):
                    r = rare[s : s + 1024]
                    d2 = c2[None, :] - 2 * phi[r] @ cand.T  # |a|^2 is constant per row
                    ids[r] = cand_ids[d2.argmin(1)]
            self._token_map = ids
        return self._token_map

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

    def read_table(self) -> torch.Tensor:
        """E[m] (V, d): the embedding each token id is read with (E when unseen_tokens=keep)."""
        m = self.token_map()
        E = self.embedding_table()
        return E if m is None else E[m]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Low-level features F (B, T, d) of ids (B, T) or probability vectors (B, T, V): p·E."""
        E = self.embedding_table()  # (V, d)
        m = self.token_map()
        if x.dtype in (torch.int64, torch.int32):
            return E[x if m is None else m[x]]  # one-hot(x)·E, by index
        if x.ndim != 3 or x.shape[-1] != self.vocab_size:
            raise ValueError(f"relaxed input must be (B, T, {self.vocab_size}), got {tuple(x.shape)}")
        if m is not None:
            E = E[m]  # row v is the row of the token v is read as: p·E[m] = (p·M)·E, M the (V, V) map
        return torch.matmul(x.to(E.dtype), E)  # (B, T, V)·(V, d) -> (B, T, d)

    def input_mask(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """(B, T) bool: the valid positions of ``x`` (ids or relaxed) without its leading and trailing
        non-speech tokens (all valid positions when trimming is off or a row holds no speech token)."""
        T = x.shape[1]
        valid = lengths_to_mask(lens.to(x.device), T)
        if self.nonspeech is None or not bool(self.nonspeech.any()):
            return valid
        ids = x if x.dtype in (torch.int64, torch.int32) else x.detach().argmax(-1)
        speech = valid & ~self.nonspeech[ids.long()]
        t = torch.arange(T, device=x.device)[None, :]
        first = torch.where(speech, t, T).min(1).values[:, None]
        last = torch.where(speech, t, -1).max(1).values[:, None]
        kept = valid & (t >= first) & (t <= last)
        return torch.where(speech.any(1, keepdim=True), kept, valid)

    def encode(self, F: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """High-level sequence h' (B, T, d) from low-level features F (B, T, d); ``lens`` (B,) lengths or a
        (B, T) bool mask (from :meth:`input_mask`). Positions count from the first valid position."""
        B, T, d = F.shape
        mask = as_mask(lens, T)
        pos = (mask.long().cumsum(1) - 1).clamp_min(0)  # (B, T): 0 at the first kept position
        h = self.emb_drop(F + sinusoidal(T, d, F.device).to(F.dtype)[pos])
        if self.encoder is not None:
            h = self.encoder(h, src_key_padding_mask=~mask)
        return self.norm(h)

    def head(self, h: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) from h' (B, T, d) (possibly perturbed): masked pooling + linear. ``lens`` as in
        :meth:`encode` (pass the same mask)."""
        mask = as_mask(lens, h.shape[1])
        if self.pool is None:
            return self.out(stats_pool(h, mask))
        pooled = self.pool(h, mask)
        if self.cfg.pooling == "attention+stats":
            pooled = torch.cat([pooled, stats_pool(h, mask).to(pooled.dtype)], -1)
        return self.out(pooled)

    def hidden(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """h' (B, T, d) for ids or relaxed input (use with ``head(h, input_mask(x, lens))``)."""
        return self.encode(self.embed(x), self.input_mask(x, lens))

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) for ids (B, T) or probability vectors (B, T, V); ``lens`` (B,)."""
        mask = self.input_mask(x, lens)
        return self.head(self.encode(self.embed(x), mask), mask)

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
        return {
            "model": to_dict(self.cfg),
            "classes": list(self.classes),
            "vocab_size": self.vocab_size,
            "feature_dim": self.feature_dim,
            "token_count": self.token_count is not None,
        }


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


# ---------------------------------------------------------------------------- non-speech tokens


def count_tokens(tokens: Sequence, vocab_size: int):
    """(V,) int64 numpy array: how often each token id occurs in ``tokens`` (a sequence of id arrays)."""
    import numpy as np

    count = np.zeros(vocab_size, dtype=np.int64)
    for tok in tokens:
        np.add.at(count, np.asarray(tok, dtype=np.int64), 1)
    return count


def estimate_nonspeech(
    tokens: Sequence,
    energies: Sequence,
    vocab_size: int,
    level_db: float = -35.0,
    frac: float = 0.5,
    min_count: int = 3,
) -> torch.Tensor:
    """(V,) bool: token ids that stand for non-speech in this data.

    An occurrence of a token is *quiet* when its energy (the mean squared amplitude of the audio
    behind it) is below ``level_db`` dB relative to the loudest token of its utterance. A token id
    is non-speech when it occurs at least ``min_count`` times and at least ``frac`` of its
    occurrences are quiet. Only energies decide, so any codec whose shards carry token energies works.
    """
    import numpy as np

    quiet = np.zeros(vocab_size, dtype=np.int64)
    seen = count_tokens(tokens, vocab_size)
    for tok, en in zip(tokens, energies):
        tok = np.asarray(tok, dtype=np.int64)
        en = np.asarray(en, dtype=np.float64)
        if len(tok) == 0:
            continue
        rel = 10 * np.log10(np.maximum(en, 1e-12) / max(float(en.max()), 1e-12))
        np.add.at(quiet, tok, (rel < level_db).astype(np.int64))
    flag = (seen >= min_count) & (quiet >= frac * np.maximum(seen, 1))
    return torch.from_numpy(flag)


# ---------------------------------------------------------------------------- loading


def build_from_meta(info: dict) -> TokenRewardModel:
    """An untrained model of the architecture described by ``TokenRewardModel.describe()``."""
    from rrpo.config import _build  # same validation as a config file

    model = dict(info["model"])
    model.setdefault("trim_nonspeech", False)  # checkpoints from before trimming have no flags
    cfg = _build(ModelConfig, model, "model.")
    fd = int(info.get("feature_dim", 0))
    phi = torch.zeros(int(info["vocab_size"]), fd) if fd else None
    if phi is not None:
        phi[0, 0] = 1.0  # placeholder (non-degenerate std); the real buffer comes from the weights
    return TokenRewardModel(int(info["vocab_size"]), info["classes"], cfg, phi, bool(info.get("token_count", False)))


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
