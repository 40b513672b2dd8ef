"""The built-in codec's learned decoder: token sequence + speaker profile -> WORLD parameters.

Each token's three factors (spectral cluster, pitch bin, energy bin) are embedded and summed with a
projection of the speaker's profile; three residual 1-D convolutions (kernel 5) over the 25 Hz
tokens give each token a context of +-6 tokens (+-240 ms), an upsampling by 4 and two more
convolutions render the 10 ms frames in between (formant transitions), and a last 1x1 convolution
outputs, per 10 ms frame, the level-removed log envelope as ``dims`` WORLD mel-cepstral
coefficients (``pyworld.code_spectral_envelope``) *relative to the profile's mean envelope*, and
the aperiodicity of 4 bands. F0 and level stay what the tokens say (the codec's decoder puts them
in). About 0.5 M parameters; trains in minutes on one CPU core with a stateless per-step batch
sampler, so an interrupted run resumes from its checkpoint to the same weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rrpo.errors import RrpoError

N_AP = 4  # aperiodicity bands


@dataclass
class DecoderShape:
    clusters: int
    pitch_bins1: int  # pitch bins + 1 (unvoiced)
    energy_bins: int
    dims: int  # mel-cepstral coefficients of the envelope
    channels: int
    profile_dims: int  # length of the profile vector
    up: int = 4  # 10 ms frames per token (4 at 25 Hz)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def build_model(shape: DecoderShape):
    import torch
    import torch.nn as nn

    class Res(nn.Module):
        def __init__(self, ch):
            super().__init__()
            self.conv = nn.Conv1d(ch, ch, 5, padding=2)
            self.norm = nn.GroupNorm(1, ch)

        def forward(self, x):
            return x + self.conv(nn.functional.gelu(self.norm(x)))

    class TokenDecoder(nn.Module):
        def __init__(self):
            super().__init__()
            ch = shape.channels
            self.emb_s = nn.Embedding(shape.clusters, ch)
            self.emb_p = nn.Embedding(shape.pitch_bins1, ch)
            self.emb_e = nn.Embedding(shape.energy_bins, ch)
            self.prof = nn.Linear(shape.profile_dims, ch)
            self.enc = nn.Sequential(*[Res(ch) for _ in range(3)])
            self.up = nn.ConvTranspose1d(ch, ch, shape.up, stride=shape.up)
            self.dec = nn.Sequential(*[Res(ch) for _ in range(2)])
            self.out = nn.Conv1d(ch, shape.dims + N_AP, 1)

        def forward(self, s, p, e, prof):  # (B, T) x3, (B, P) -> (B, T*up, dims + 4)
            h = self.emb_s(s) + self.emb_p(p) + self.emb_e(e) + self.prof(prof)[:, None, :]
            h = self.enc(h.transpose(1, 2))
            h = self.dec(self.up(h))
            y = self.out(nn.functional.gelu(h)).transpose(1, 2)
            return torch.cat([y[..., : shape.dims], torch.sigmoid(y[..., shape.dims :])], -1)

    return TokenDecoder()


@dataclass
class TrainItem:
    s: np.ndarray  # (T,) cluster ids
    p: np.ndarray  # (T,) pitch bins
    e: np.ndarray  # (T,) energy bins
    prof: np.ndarray  # (P,) profile vector
    target: np.ndarray  # (T*up, dims + 4): cepstrum relative to the profile, aperiodicity bands


def _batch(items: list[TrainItem], step: int, seed: int, batch: int, crop: int, UP: int):
    """Batch of ``step``: drawn from a generator seeded by (seed, step) alone, so a resumed run
    draws exactly the batches an uninterrupted one would."""
    import torch

    rng = np.random.default_rng([seed, step])
    pick = rng.integers(0, len(items), batch)
    S, P, E, PR, Y, M = [], [], [], [], [], []
    for i in pick:
        it = items[i]
        T = len(it.s)
        a = int(rng.integers(0, max(1, T - crop + 1)))
        b = min(T, a + crop)
        pad = crop - (b - a)
        S.append(np.pad(it.s[a:b], (0, pad)))
        P.append(np.pad(it.p[a:b], (0, pad)))
        E.append(np.pad(it.e[a:b], (0, pad)))
        Y.append(np.pad(it.target[a * UP : b * UP], ((0, pad * UP), (0, 0))))
        M.append(np.pad(np.ones((b - a) * UP), (0, pad * UP)))
        PR.append(it.prof)
    t = lambda v, dt: torch.as_tensor(np.stack(v), dtype=dt)  # noqa: E731
    return (
        t(S, torch.long),
        t(P, torch.long),
        t(E, torch.long),
        t(PR, torch.float32),
        t(Y, torch.float32),
        t(M, torch.float32),
    )


def train_decoder(
    shape: DecoderShape,
    items: list[TrainItem],
    *,
    steps: int,
    batch: int,
    crop: int,
    lr: float,
    seed: int,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    stop_at: int | None = None,
    progress=None,
) -> tuple[dict, dict]:
    """Train; returns (state dict as numpy arrays, stats). With ``checkpoint``, the state is saved
    there atomically every 100 steps and a run finding one (made for the same ``fingerprint``)
    resumes from it. ``stop_at`` ends early after that step (a stand-in for an interruption)."""
    import torch

    from rrpo.io import atomic_path

    if not items:
        raise RrpoError("no utterances to train the codec's decoder on")
    torch.manual_seed(seed)
    model = build_model(shape)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        try:
            ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
        except Exception as e:
            raise RrpoError(f"unreadable decoder checkpoint ({str(e)[:80]}); delete it", checkpoint) from None
        if ck.get("fingerprint") == fingerprint and ck.get("shape") == shape.to_dict():
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            start = int(ck["step"])

    def lr_at(step):
        warm = max(1, steps // 20)
        if step < warm:
            return lr * (step + 1) / warm
        return lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    def save(step):
        if checkpoint is None:
            return
        with atomic_path(checkpoint) as tmp:
            torch.save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "fingerprint": fingerprint,
                    "shape": shape.to_dict(),
                },
                tmp,
            )

    t0 = time.perf_counter()
    loss_ema = None
    model.train()
    end = steps if stop_at is None else min(steps, stop_at)
    for step in range(start, end):
        s, p, e, prof, y, m = _batch(items, step, seed, batch, crop, shape.up)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        out = model(s, p, e, prof)
        err = (out - y).abs()
        loss = ((err[..., : shape.dims].mean(-1) + err[..., shape.dims :].mean(-1)) * m).sum() / m.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = float(loss.detach())
        loss_ema = lv if loss_ema is None else 0.95 * loss_ema + 0.05 * lv
        if progress is not None:
            progress(1)
        if (step + 1) % 100 == 0 and step + 1 < end:
            save(step + 1)
    save(end)
    state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    return state, {
        "decoder_steps": end,
        "decoder_resumed_from": start,
        "decoder_loss": round(loss_ema, 4) if loss_ema is not None else None,
        "decoder_train_seconds": round(time.perf_counter() - t0, 2),
    }


class LearnedDecoder:
    """Inference wrapper: (s, p, e) token factors + profile vector -> (T*up, dims + 4) numpy."""

    def __init__(self, shape: DecoderShape, state: dict[str, np.ndarray]):
        import torch

        self.shape = shape
        self.model = build_model(shape)
        try:
            self.model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
        except RuntimeError as e:
            raise RrpoError(f"decoder weights do not fit the decoder's shape ({str(e)[:100]})") from None
        self.model.eval()

    def __call__(self, s, p, e, prof) -> np.ndarray:
        import torch

        with torch.inference_mode():
            t = lambda v: torch.as_tensor(np.asarray(v, np.int64))[None]  # noqa: E731
            out = self.model(t(s), t(p), t(e), torch.as_tensor(np.asarray(prof, np.float32))[None])
        return out[0].numpy().astype(np.float64)
