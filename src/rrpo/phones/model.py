"""A small CTC phone recogniser over log-mels, read out at 25 Hz.

The same network serves two purposes with separate weights (two runs of ``rrpo phones train``):
the *phone judge* of the audit, trained on real transcribed speech only, and the *content
encoder* of the built-in codec's phonetic tokens, whose 25 Hz states are clustered into content
ids (:mod:`rrpo.codec.builtin`, ``content_model=``).

Input: 80-band log-mel every 10 ms (25 ms Hann window, 16 kHz), normalised per utterance (mean and
standard deviation of each band over the utterance), so a speaker's or channel's constant
colouring is removed before the network sees it. Network: two stride-2 convolutions (kernel 5,
10 ms -> 40 ms frames), ``blocks`` residual blocks (depthwise convolution of ``kernel`` frames,
LayerNorm, a two-layer feed-forward of ``2 x channels``), a LayerNorm and a linear head onto the
phone set plus the CTC blank (id 0). A frame sees +-(2 + 2 + blocks x (kernel - 1) / 2) x 40 ms of
context (+-1.0 s with the defaults).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rrpo.errors import RrpoError

SAMPLE_RATE = 16000
HOP = 160  # 10 ms
WIN = 400  # 25 ms
N_FFT = 512
SUBSAMPLE = 4  # -> 40 ms frames, 25 Hz


@dataclass
class NetShape:
    n_mels: int = 80
    channels: int = 192
    blocks: int = 6
    kernel: int = 9
    n_phones: int = 2  # with the blank
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


def _mel_filters(n_mels: int, sr: int = SAMPLE_RATE, n_fft: int = N_FFT, fmin: float = 20.0, fmax: float = 7600.0):
    """(n_mels, n_fft/2+1) triangular filters on the HTK mel scale."""

    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    pts = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        fb[i] = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
    return fb.astype(np.float32)


class LogMel:
    """Per-utterance normalised 80-band log-mel (T_mel, n_mels), T_mel = 1 + n // 160."""

    def __init__(self, n_mels: int = 80):
        self.n_mels = n_mels
        self.fb = torch.from_numpy(_mel_filters(n_mels))
        self.window = torch.hann_window(WIN)

    def __call__(self, audio: np.ndarray, sr: int) -> np.ndarray:
        from rrpo.data.audio import resample

        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1:
            raise RrpoError(f"expected mono audio of shape (T,), got {x.shape}")
        if sr != SAMPLE_RATE:
            x = resample(x, sr, SAMPLE_RATE)
        spec = torch.stft(
            torch.from_numpy(np.ascontiguousarray(x)),
            N_FFT,
            HOP,
            WIN,
            self.window,
            center=True,
            pad_mode="reflect" if len(x) > N_FFT // 2 else "constant",
            return_complex=True,
        )
        power = spec.abs().pow(2)  # (F, T)
        logmel = torch.log(self.fb @ power + 1e-6).T  # (T, M)
        mu = logmel.mean(0, keepdim=True)
        sd = logmel.std(0, keepdim=True) if len(logmel) > 1 else torch.ones_like(mu)
        return ((logmel - mu) / (sd + 1e-3)).numpy()


def n_frames(n_samples: int) -> int:
    """25 Hz output frames for ``n_samples`` of 16 kHz audio: ``ceil(n / 640)`` (as the codec's tokens)."""
    return max(1, math.ceil(n_samples / (HOP * SUBSAMPLE)))


class _Block(nn.Module):
    def __init__(self, c: int, k: int, dropout: float):
        super().__init__()
        self.dw = nn.Conv1d(c, c, k, padding=k // 2, groups=c)
        self.norm = nn.LayerNorm(c)
        self.ff = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * c, c))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):  # x (B, T, C), mask (B, T, 1)
        y = self.dw((x * mask).transpose(1, 2)).transpose(1, 2)
        return x + self.drop(self.ff(self.norm(y)))


class PhoneNet(nn.Module):
    def __init__(self, shape: NetShape):
        super().__init__()
        self.shape = shape
        c = shape.channels
        self.sub = nn.Sequential(
            nn.Conv1d(shape.n_mels, c, 5, stride=2, padding=2), nn.GELU(), nn.Conv1d(c, c, 5, stride=2, padding=2)
        )
        self.blocks = nn.ModuleList(_Block(c, shape.kernel, shape.dropout) for _ in range(shape.blocks))
        self.norm = nn.LayerNorm(c)
        self.head = nn.Linear(c, shape.n_phones)

    @staticmethod
    def out_lengths(mel_lengths: torch.Tensor) -> torch.Tensor:
        return (mel_lengths + 3) // 4  # two stride-2 convolutions with padding 2, kernel 5

    def states(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T_mel, M) -> states (B, T, C) after the last block's normalisation, lengths (B,)."""
        x = self.sub(mel.transpose(1, 2)).transpose(1, 2)
        lens = self.out_lengths(mel_lengths)
        mask = (torch.arange(x.shape[1], device=x.device)[None] < lens[:, None]).unsqueeze(-1).to(x.dtype)
        for b in self.blocks:
            x = b(x, mask)
        return self.norm(x), lens

    def forward(self, mel, mel_lengths):
        h, lens = self.states(mel, mel_lengths)
        return self.head(h), lens


def pad_batch(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(f) for f in feats])
    out = torch.zeros(len(feats), int(lens.max()), feats[0].shape[1])
    for i, f in enumerate(feats):
        out[i, : len(f)] = torch.from_numpy(np.asarray(f, dtype=np.float32))
    return out, lens


def greedy(logits: torch.Tensor, lens: torch.Tensor) -> list[list[int]]:
    """Best-path CTC decoding: argmax per frame, repeats merged, blanks (0) removed."""
    best = logits.argmax(-1)
    out = []
    for row, n in zip(best, lens.tolist()):
        ids = row[:n].tolist()
        out.append([a for i, a in enumerate(ids) if a != 0 and (i == 0 or a != ids[i - 1])])
    return out


FORMAT = "rrpo-phones"
VERSION = 1


class PhoneModel:
    """A trained recogniser: a folder with ``phones.json`` + ``model.safetensors`` (the end of
    ``rrpo phones train``), or one of its run's checkpoints (``RUN/checkpoints/step_N``)."""

    def __init__(self, shape: NetShape, symbols: list[str], state: dict, meta: dict | None = None, path=None):
        from rrpo.phones.inventory import PhoneSet

        self.shape = shape
        self.phones = PhoneSet(symbols[1:] if symbols and symbols[0] == PhoneSet.BLANK else symbols)
        if len(self.phones) != shape.n_phones:
            raise RrpoError(f"phone set of {len(self.phones)} symbols for a head of {shape.n_phones}", path)
        self.net = PhoneNet(shape)
        self.net.load_state_dict(state)
        self.net.eval()
        self.meta = dict(meta or {})
        self.path = path
        self.frontend = LogMel(shape.n_mels)

    @classmethod
    def load(cls, path: str | Path) -> PhoneModel:
        from safetensors.torch import load_file

        from rrpo.io import read_json

        path = Path(path)
        mpath = path / "phones.json"
        if not mpath.exists() and (path / "meta.json").exists():  # a checkpoint of a training run
            meta = read_json(path / "meta.json").get("phones")
            if not isinstance(meta, dict):
                raise RrpoError("not a checkpoint of `rrpo phones train` (no phones in meta.json)", path)
            meta = {**meta, "checkpoint": str(path)}
        elif not mpath.exists():
            raise RrpoError("not a phone model folder (no phones.json; train one with `rrpo phones train`)", path)
        else:
            meta = read_json(mpath)
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise RrpoError(f"not a phone model of version {VERSION}", mpath)
        try:
            state = load_file(str(path / "model.safetensors"))
        except Exception as e:
            raise RrpoError(f"unreadable phone model weights ({str(e)[:100]})", path / "model.safetensors") from None
        return cls(NetShape(**meta["shape"]), list(meta["symbols"]), state, meta, path)

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        from safetensors.torch import save_file

        from rrpo.io import atomic_path, write_json

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "model.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(tmp))
        meta = {**self.meta, **(extra or {})}
        meta.update(format=FORMAT, version=VERSION, shape=self.shape.to_dict(), symbols=self.phones.symbols)
        write_json(path / "phones.json", meta)  # last: a folder without it is no finished model

    @torch.no_grad()
    def _run(self, audios: list[tuple[np.ndarray, int]]):
        feats = [self.frontend(a, sr) for a, sr in audios]
        mel, lens = pad_batch(feats)
        h, olens = self.net.states(mel, lens)
        return h, self.net.head(h), olens

    def recognise(self, audio: np.ndarray, sr: int) -> list[str]:
        """The phonemes heard in ``audio`` (greedy CTC)."""
        _, logits, lens = self._run([(audio, sr)])
        return self.phones.decode(greedy(logits, lens)[0])

    def recognise_batch(self, audios: list[tuple[np.ndarray, int]], batch: int = 16) -> list[list[str]]:
        out = []
        order = sorted(range(len(audios)), key=lambda i: len(audios[i][0]))
        res: dict[int, list[str]] = {}
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            _, logits, lens = self._run([audios[i] for i in idx])
            for i, ids in zip(idx, greedy(logits, lens)):
                res[i] = self.phones.decode(ids)
        out = [res[i] for i in range(len(audios))]
        return out

    def states(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """(n_frames(n), C) float32 states at 25 Hz, one per 640 samples of 16 kHz audio."""
        n = int(round(len(audio) * SAMPLE_RATE / sr))
        h, _, lens = self._run([(audio, sr)])
        return align(h[0, : int(lens[0])].numpy(), n_frames(n))

    def posteriors(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """(n_frames(n), n_phones) frame posteriors at 25 Hz (blank first)."""
        n = int(round(len(audio) * SAMPLE_RATE / sr))
        _, logits, lens = self._run([(audio, sr)])
        return align(torch.softmax(logits[0, : int(lens[0])], -1).numpy(), n_frames(n))


def align(x: np.ndarray, t: int) -> np.ndarray:
    """Crop or edge-pad ``x`` (T', ...) to ``t`` rows."""
    if len(x) >= t:
        return x[:t]
    return np.concatenate([x, np.repeat(x[-1:], t - len(x), axis=0)])
