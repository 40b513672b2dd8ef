"""The built-in codec: factorised WORLD-parameter tokens, learned on CPU in seconds.

Design (measured in ``bench/codec.py``; figures in ``docs/codec.md``)
---------------------------------------------------------------------
Every token covers one frame of ``1/frame_rate`` seconds (40 ms at the default 25 Hz) and is the
product of three factors::

    token = (spectral_cluster * (pitch_bins + 1) + pitch_bin) * energy_bins + energy_bin

* **spectral cluster** (``spectral_clusters``, k-means): the *shape* of the WORLD CheapTrick
  spectral envelope on ``mel_bands`` mel bands, with the frame's level removed, plus the band
  aperiodicity (D4C) of four bands. This is what is said and the voice quality (breathiness,
  spectral tilt = vocal effort), but neither pitch (CheapTrick removes the harmonics) nor loudness.
* **relative pitch bin** (``pitch_bins`` voiced bins + one unvoiced bin): log-F0 in semitones
  *relative to the utterance's median voiced F0*, binned at quantiles of the training data.
  Absolute-F0 bins carry the speaker (a low-pitched voice lands in low bins whatever its emotion)
  rather than the emotion, and a token model cannot normalise per speaker at reward time, so the
  normalisation is done here, per utterance, and the contour (range, rises, falls) is what the
  token keeps (docs/method.md §7).
* **relative energy bin** (``energy_bins``): frame level in dB relative to the utterance's 95th
  percentile frame level, also at training quantiles, so a recording's gain does not matter but
  the dynamics within the utterance do.

Timing is kept by the frame rate itself (one token per 40 ms, no de-duplication).

Measured (docs/codec.md): with the probe of bench/codec.py, 512 spectral clusters beat 128 on
cross-lingual emotion (English UA 34 vs 28), finer prosody bins did not help, and absolute pitch or
level bins helped in-language only; hence the defaults below.

The quantiser is plain k-means for the spectral factor and quantile bins for the two prosodic
factors; every token also has a descriptor in this feature space (:meth:`token_features`), so a
token model can tie its embeddings to it (``model.embedding=free+features``, docs/method.md §2).

Decoding is WORLD synthesis (``pyworld``): each token gives its cluster's mean log envelope and
aperiodicity, F0 = ``decode_f0_hz`` (by default the median F0 of the training utterances) shifted
by the pitch bin's centre, and a level = ``decode_level_db`` plus the energy bin's centre. The
per-token parameters are interpolated to a 10 ms synthesis grid, then a smooth gain makes every
token's frame energy match its level. The absolute pitch and level of the speaker are not in the
tokens (by design, see above): ``decode(ids)`` uses the codec's defaults, and
``decode(ids, f0_hz=..., level_db=...)`` takes a speaker's own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from rrpo.codec.base import frame_energy
from rrpo.config import check, option, to_dict
from rrpo.errors import RrpoError

log = logging.getLogger(__name__)

FORMAT = "rrpo-codec"
KIND = "builtin"
#: Bump whenever analysis, token layout or saved arrays change: old codec dirs are then refused.
VERSION = 1

_EPS = 1e-10
_SUB_PERIOD_MS = 10.0   # F0 tracking period inside a token frame
_SYN_PERIOD_MS = 10.0   # synthesis grid (parameters interpolated from the 40 ms tokens)
_DIO_SPEED = 2          # DIO decimation: 2 doubles its speed (78x -> 170x real time) at equal voicing
_AP_BAND_EDGES_HZ = (0.0, 1000.0, 2000.0, 4000.0, None)  # None: Nyquist


@dataclass
class BuiltinCodecConfig:
    """Settings of ``rrpo codec train`` (the built-in codec)."""

    sampling_rate: int = option(16000, "rate the codec reads and writes (audio is resampled to it)")
    frame_rate: float = option(25.0, "tokens per second")
    spectral_clusters: int = option(512, "k-means clusters of the spectral-envelope shape")
    pitch_bins: int = option(8, "voiced relative-pitch bins (one unvoiced bin is added)")
    energy_bins: int = option(4, "relative-energy bins")
    mel_bands: int = option(32, "mel bands of the envelope shape used for clustering")
    aperiodicity_weight: float = option(1.0, "weight of the 4 band-aperiodicity features in k-means")
    f0_floor: float = option(60.0, "lowest F0 tracked (Hz)")
    f0_ceil: float = option(600.0, "highest F0 tracked (Hz)")
    pitch_reference: str = option("utterance", "pitch bins relative to the 'utterance' median F0 or to the codec's 'absolute' base F0")
    level_reference: str = option("utterance", "energy bins relative to the 'utterance' reference level or the codec's 'absolute' base level")
    level_percentile: float = option(95.0, "utterance reference level: this percentile of frame dB")
    max_train_frames: int = option(200000, "frames sampled for k-means (all if fewer)")
    kmeans_iters: int = option(100, "k-means iterations")
    seed: int = option(0, "random seed (frame sampling, k-means init)")
    decode_f0_hz: float = option(0.0, "F0 the decoder gives relative pitch 0 (0: median of training utterances)")
    decode_level_db: float = option(0.0, "frame dB the decoder gives relative level 0 (0: training median)")

    def __post_init__(self):
        check(self.sampling_rate >= 8000, "sampling_rate", "must be at least 8000")
        check(0 < self.frame_rate <= 200, "frame_rate", "must be in (0, 200]")
        check((self.sampling_rate / self.frame_rate).is_integer(), "frame_rate",
              f"sampling_rate / frame_rate must be a whole number of samples (got {self.sampling_rate / self.frame_rate})")
        check(self.spectral_clusters >= 2, "spectral_clusters", "must be at least 2")
        check(self.pitch_bins >= 1, "pitch_bins", "must be at least 1")
        check(self.energy_bins >= 1, "energy_bins", "must be at least 1")
        check(self.mel_bands >= 4, "mel_bands", "must be at least 4")
        check(0 < self.f0_floor < self.f0_ceil < self.sampling_rate / 2, "f0_floor", "need 0 < f0_floor < f0_ceil < Nyquist")
        check(self.pitch_reference in ("utterance", "absolute"), "pitch_reference", "must be 'utterance' or 'absolute'")
        check(self.level_reference in ("utterance", "absolute"), "level_reference", "must be 'utterance' or 'absolute'")
        check(0 < self.level_percentile <= 100, "level_percentile", "must be in (0, 100]")
        check(self.max_train_frames >= 100, "max_train_frames", "must be at least 100")
        check(self.kmeans_iters >= 1, "kmeans_iters", "must be at least 1")
        check(self.decode_f0_hz >= 0, "decode_f0_hz", "must be >= 0 (0 = from training)")

    @property
    def vocab_size(self) -> int:
        return self.spectral_clusters * (self.pitch_bins + 1) * self.energy_bins

    @property
    def hop(self) -> int:
        return int(round(self.sampling_rate / self.frame_rate))


# ---------------------------------------------------------------------------------------------
# analysis


@dataclass
class Frames:
    """WORLD parameters at the centre of every token frame (T = number of tokens)."""

    f0: np.ndarray        # (T,) Hz, 0 = unvoiced
    sp: np.ndarray        # (T, n_fft/2+1) CheapTrick power envelope
    ap: np.ndarray        # (T, n_fft/2+1) D4C aperiodicity in [0, 1]
    level_db: np.ndarray  # (T,) 10*log10 of the frame's mean squared amplitude
    energy: np.ndarray    # (T,) mean squared amplitude of each frame (linear)


def n_tokens(n_samples: int, hop: int) -> int:
    """Tokens for ``n_samples`` of audio: one per started frame, ``ceil(n / hop)``.

    Audio shorter than one full frame has no token (the caller raises). Example: hop 640, 1,000
    samples -> 2 tokens; 640 -> 1; 639 -> 0.
    """
    if n_samples < hop:
        return 0
    return -(-n_samples // hop)


def _mel_matrix(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sr / 2).astype(np.float64)


def _band_matrix(sr: int, n_bins: int) -> np.ndarray:
    """(4, n_bins) averaging matrix of the aperiodicity bands."""
    freqs = np.linspace(0, sr / 2, n_bins)
    edges = [e if e is not None else sr / 2 + 1 for e in _AP_BAND_EDGES_HZ]
    m = np.zeros((len(edges) - 1, n_bins))
    for i in range(len(edges) - 1):
        sel = (freqs >= edges[i]) & (freqs < edges[i + 1])
        m[i, sel] = 1.0 / max(1, sel.sum())
    return m


def analyse(audio: np.ndarray, cfg: BuiltinCodecConfig) -> Frames:
    """WORLD analysis of ``audio`` (already at ``cfg.sampling_rate``) at the token frame centres.

    F0 is tracked by DIO + StoneMask every 10 ms; a token is voiced when at least half of its
    10 ms sub-frames are, with the median of those F0s. CheapTrick and D4C then run once per
    token at its centre. (Harvest tracks better but runs at ~8x real time on this CPU; DIO keeps
    encoding above 50x.)
    """
    from rrpo.system import require

    pw = require("pyworld")

    sr, hop = cfg.sampling_rate, cfg.hop
    x = np.ascontiguousarray(audio, dtype=np.float64)
    T = n_tokens(len(x), hop)
    if T == 0:
        raise RrpoError(f"audio is {len(x)} samples ({1000 * len(x) / sr:.1f} ms), shorter than one "
                        f"token frame ({1000 * hop / sr:.0f} ms)")
    f0_sub, t_sub = pw.dio(x, sr, f0_floor=cfg.f0_floor, f0_ceil=cfg.f0_ceil, frame_period=_SUB_PERIOD_MS,
                           speed=_DIO_SPEED)
    f0_sub = pw.stonemask(x, f0_sub, t_sub, sr)
    # sub-frame k (time t_sub[k]) belongs to token floor(t * frame_rate)
    owner = np.minimum((t_sub * cfg.frame_rate).astype(np.int64), T - 1)
    f0 = np.zeros(T)
    voiced = f0_sub > 0
    counts = np.bincount(owner, minlength=T)
    vcounts = np.bincount(owner, weights=voiced.astype(float), minlength=T)
    for t in np.nonzero(vcounts * 2 >= np.maximum(counts, 1))[0]:
        if vcounts[t] > 0:
            f0[t] = np.median(f0_sub[(owner == t) & voiced])
    centres = (np.arange(T) + 0.5) / cfg.frame_rate
    centres = np.minimum(centres, (len(x) - 1) / sr)
    sp = pw.cheaptrick(x, f0, centres, sr, f0_floor=cfg.f0_floor)
    ap = pw.d4c(x, f0, centres, sr)
    energy = frame_energy(x, sr, cfg.frame_rate, T)
    level_db = 10 * np.log10(energy.astype(np.float64) + _EPS)
    return Frames(f0=f0, sp=sp, ap=ap, level_db=level_db, energy=energy)


def relative_pitch(f0: np.ndarray) -> np.ndarray:
    """Semitones of each voiced frame relative to the median voiced F0; NaN where unvoiced.

    Example: f0 = [100, 200, 0, 100] -> median 100 -> [0, 12, nan, 0].
    """
    out = np.full(len(f0), np.nan)
    v = f0 > 0
    if v.any():
        st = 12 * np.log2(f0[v])
        out[v] = st - np.median(st)
    return out


def relative_level(level_db: np.ndarray, percentile: float) -> np.ndarray:
    """Frame level in dB minus the utterance's ``percentile`` frame level (<= 0 mostly)."""
    return level_db - np.percentile(level_db, percentile)


def _pitch_values(f0: np.ndarray, reference: str, base_f0: float) -> np.ndarray:
    if reference == "utterance":
        return relative_pitch(f0)
    out = np.full(len(f0), np.nan)
    v = f0 > 0
    out[v] = 12 * np.log2(f0[v] / base_f0)
    return out


def _level_values(level_db: np.ndarray, cfg: "BuiltinCodecConfig", base_db: float) -> np.ndarray:
    if cfg.level_reference == "utterance":
        return relative_level(level_db, cfg.level_percentile)
    return level_db - base_db


class _Features:
    """Spectral-shape + aperiodicity features for clustering, from :class:`Frames`."""

    def __init__(self, cfg: BuiltinCodecConfig, n_bins: int):
        n_fft = 2 * (n_bins - 1)
        self.mel = _mel_matrix(cfg.sampling_rate, n_fft, cfg.mel_bands)      # (M, K)
        self.bands = _band_matrix(cfg.sampling_rate, n_bins)                 # (4, K)
        self.ap_weight = cfg.aperiodicity_weight

    def __call__(self, fr: Frames) -> np.ndarray:
        logmel = np.log(fr.sp @ self.mel.T + _EPS)                           # (T, M)
        shape = logmel - logmel.mean(axis=1, keepdims=True)                  # level removed
        apb = fr.ap @ self.bands.T                                            # (T, 4)
        return np.concatenate([shape, self.ap_weight * apb], axis=1)          # (T, M + 4)


def log_shape(sp: np.ndarray) -> np.ndarray:
    """Log envelope with the frame's mean log removed: (T, K) -> (T, K)."""
    ls = np.log(sp + _EPS)
    return ls - ls.mean(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# the codec


class BuiltinCodec:
    """A trained built-in codec (see the module docstring). Load with :func:`rrpo.codec.load_codec`."""

    can_decode = True

    def __init__(self, cfg: BuiltinCodecConfig, arrays: dict[str, np.ndarray], stats: dict | None = None):
        self.cfg = cfg
        self.vocab_size = cfg.vocab_size
        self.frame_rate = float(cfg.frame_rate)
        self.sampling_rate = int(cfg.sampling_rate)
        self.hop = cfg.hop
        self.stats = dict(stats or {})
        self.centroids = arrays["centroids"].astype(np.float64)        # (S, F) standardised features
        self.feat_mean = arrays["feat_mean"].astype(np.float64)        # (F,)
        self.feat_std = arrays["feat_std"].astype(np.float64)          # (F,)
        self.pitch_edges = arrays["pitch_edges"].astype(np.float64)    # (P-1,) semitones
        self.pitch_centres = arrays["pitch_centres"].astype(np.float64)  # (P,)
        self.energy_edges = arrays["energy_edges"].astype(np.float64)  # (E-1,) dB
        self.energy_centres = arrays["energy_centres"].astype(np.float64)  # (E,)
        self.env_shape = arrays["env_shape"].astype(np.float64)        # (S, K) mean log envelope shape
        self.env_ap = arrays["env_ap"].astype(np.float64)              # (S, K) mean aperiodicity
        self.base_f0_train, self.base_level_train = float(arrays["base"][0]), float(arrays["base"][1])
        self.base_f0 = float(cfg.decode_f0_hz or self.base_f0_train)
        self.base_level_db = float(cfg.decode_level_db or self.base_level_train)
        self._features = _Features(cfg, self.env_shape.shape[1])
        # Synthesis uses every other bin (a 512-point FFT at 16 kHz): the envelopes are smooth, and
        # WORLD synthesis runs ~2x faster (measured 52x -> 105x real time).
        syn = self.env_shape[:, ::2]
        syn = syn - np.log(np.exp(syn).mean(axis=1, keepdims=True))                    # unit mean power
        self._syn_shape = np.ascontiguousarray(syn)
        self._syn_ap = np.ascontiguousarray(self.env_ap[:, ::2])
        S, P, E = cfg.spectral_clusters, cfg.pitch_bins, cfg.energy_bins
        if self.centroids.shape[0] != S or len(self.pitch_centres) != P or len(self.energy_centres) != E:
            raise RrpoError("codec arrays do not match codec.json (spectral_clusters / pitch_bins / energy_bins)")

    # -- token layout -------------------------------------------------------------------------

    def compose(self, s: np.ndarray, p: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Factors -> token ids. ``p`` = 0 is unvoiced, 1..P the voiced pitch bins."""
        P1, E = self.cfg.pitch_bins + 1, self.cfg.energy_bins
        return ((np.asarray(s, np.int64) * P1 + np.asarray(p, np.int64)) * E + np.asarray(e, np.int64))

    def factors(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token ids -> (spectral cluster, pitch bin (0 unvoiced), energy bin)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        P1, E = self.cfg.pitch_bins + 1, self.cfg.energy_bins
        return tokens // (P1 * E), (tokens // E) % P1, tokens % E

    # -- encode -------------------------------------------------------------------------------

    def _prepare(self, audio: np.ndarray, sr: int) -> np.ndarray:
        from rrpo.data.audio import resample

        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise RrpoError(f"expected mono audio of shape (T,), got {audio.shape}")
        if not np.isfinite(audio).all():
            raise RrpoError("audio holds NaN or infinite samples")
        return resample(audio, sr, self.sampling_rate) if sr != self.sampling_rate else audio

    def quantise(self, fr: Frames) -> np.ndarray:
        """WORLD frames of one utterance -> token ids (T,) int64."""
        feats = (self._features(fr) - self.feat_mean) / self.feat_std                  # (T, F)
        d = ((feats[:, None, :] - self.centroids[None]) ** 2).sum(-1)                 # (T, S)
        s = d.argmin(axis=1)
        rp = self.pitch_values(fr.f0)
        p = np.where(np.isnan(rp), 0, 1 + np.searchsorted(self.pitch_edges, np.nan_to_num(rp)))
        e = np.searchsorted(self.energy_edges, self.level_values(fr.level_db))
        return self.compose(s, p, e)

    def pitch_values(self, f0: np.ndarray) -> np.ndarray:
        """Semitones the pitch bins quantise (NaN unvoiced): re the utterance median or the base F0."""
        return _pitch_values(f0, self.cfg.pitch_reference, self.base_f0_train)

    def level_values(self, level_db: np.ndarray) -> np.ndarray:
        """dB the energy bins quantise: re the utterance reference level or the base level."""
        return _level_values(level_db, self.cfg, self.base_level_train)

    def encode_with_energy(self, audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        fr = analyse(self._prepare(audio, sr), self.cfg)
        return self.quantise(fr), fr.energy.astype(np.float32)

    def encode(self, audio: np.ndarray, sr: int) -> np.ndarray:
        return self.encode_with_energy(audio, sr)[0]

    # -- decode -------------------------------------------------------------------------------

    def check_tokens(self, tokens) -> np.ndarray:
        t = np.asarray(tokens)
        if t.ndim != 1:
            raise RrpoError(f"expected a 1-D token sequence, got shape {t.shape}")
        if t.size == 0:
            raise RrpoError("no tokens to decode")
        if not np.issubdtype(t.dtype, np.integer):
            if not np.all(np.equal(np.mod(t, 1), 0)):
                raise RrpoError("token ids must be integers")
        t = t.astype(np.int64)
        bad = (t < 0) | (t >= self.vocab_size)
        if bad.any():
            i = int(np.argmax(bad))
            raise RrpoError(f"token id {int(t[i])} at position {i} is out of range [0, {self.vocab_size})")
        return t

    def decode(self, tokens: np.ndarray, *, f0_hz: float | None = None,
               level_db: float | None = None) -> np.ndarray:
        """Token ids (T,) -> float32 audio (T * hop,) at ``sampling_rate``.

        ``f0_hz`` / ``level_db`` set the speaker's median pitch and reference level (defaults:
        the codec's, learned from its training audio).
        """
        from rrpo.system import require

        pw = require("pyworld")

        t = self.check_tokens(tokens)
        s, p, e = self.factors(t)
        base_f0 = self.base_f0 if f0_hz is None else float(f0_hz)
        base_db = self.base_level_db if level_db is None else float(level_db)
        T, sr, hop = len(t), self.sampling_rate, self.hop
        f0 = np.where(p > 0, base_f0 * 2.0 ** (self.pitch_centres[np.maximum(p - 1, 0)] / 12.0), 0.0)
        target_db = base_db + self.energy_centres[e]                                    # (T,)
        log_sp = self._syn_shape[s]                                                     # (T, K')
        ap = self._syn_ap[s]
        # interpolate token-centre parameters onto the synthesis grid; the envelope carries the
        # token's level (each shape row has unit mean power, see __init__)
        n_out = T * hop
        period = _SYN_PERIOD_MS / 1000.0
        grid = np.arange(int(np.ceil(n_out / sr / period)) + 1) * period
        pos = np.clip(grid * self.frame_rate - 0.5, 0, T - 1)                          # in token units
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, T - 1)
        w = (pos - i0)[:, None]
        level_g = np.log(10.0) / 10.0 * ((1 - w[:, 0]) * target_db[i0] + w[:, 0] * target_db[i1])
        sp_g = np.exp((1 - w) * log_sp[i0] + w * log_sp[i1] + level_g[:, None])
        ap_g = np.clip((1 - w) * ap[i0] + w * ap[i1], 0.0, 1.0)
        both = (f0[i0] > 0) & (f0[i1] > 0)
        lf = (1 - w[:, 0]) * np.log(np.maximum(f0[i0], 1)) + w[:, 0] * np.log(np.maximum(f0[i1], 1))
        nearest = np.where(w[:, 0] < 0.5, i0, i1)
        f0_g = np.where(both, np.exp(lf), np.where(f0[nearest] > 0, f0[nearest], 0.0))
        y = pw.synthesize(np.ascontiguousarray(f0_g), np.ascontiguousarray(sp_g),
                          np.ascontiguousarray(ap_g), sr, _SYN_PERIOD_MS)
        y = np.pad(y, (0, max(0, n_out - len(y))))[:n_out]
        # WORLD's output level follows the envelope's up to a constant and local deviations (at
        # voicing changes): one global gain, plus a smooth per-token correction of at most 6 dB
        got = 10 * np.log10(frame_energy(y, sr, self.frame_rate, T).astype(np.float64) + _EPS)
        diff = target_db - got
        loud = target_db >= target_db.max() - 30
        gain_db = np.median(diff[loud]) + np.clip(diff - np.median(diff[loud]), -6.0, 6.0)
        centres = (np.arange(T) + 0.5) * hop
        y = y * 10 ** (np.interp(np.arange(n_out), centres, gain_db) / 20.0)
        peak = np.abs(y).max()
        if peak > 0.99:
            y *= 0.99 / peak
        return y.astype(np.float32)

    # -- descriptors --------------------------------------------------------------------------

    def token_features(self) -> np.ndarray:
        """(vocab_size, F + 3) float32: the token's cluster centroid (standardised spectral shape
        and aperiodicity), its relative pitch (semitones / 6, 0 when unvoiced), a voiced flag, and
        its relative level (dB / 10). Rows follow the token layout of :meth:`compose`."""
        S, P, E = self.cfg.spectral_clusters, self.cfg.pitch_bins, self.cfg.energy_bins
        s, p, e = np.meshgrid(np.arange(S), np.arange(P + 1), np.arange(E), indexing="ij")
        s, p, e = s.ravel(), p.ravel(), e.ravel()             # already in compose() order
        pitch = np.where(p > 0, self.pitch_centres[np.maximum(p - 1, 0)] / 6.0, 0.0)
        voiced = (p > 0).astype(np.float64)
        level = self.energy_centres[e] / 10.0
        out = np.concatenate([self.centroids[s], pitch[:, None], voiced[:, None], level[:, None]], axis=1)
        return out.astype(np.float32)

    def describe(self) -> dict:
        """What token shards record about the codec that made them."""
        return {"kind": KIND, "version": VERSION, "vocab_size": self.vocab_size,
                "frame_rate": self.frame_rate, "config": to_dict(self.cfg),
                "trained_sha": self.stats.get("fingerprint")}

    # -- persistence --------------------------------------------------------------------------

    def save(self, out: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
        from safetensors.numpy import save_file

        from rrpo.io import atomic_path, write_json

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "codec.safetensors") as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
        write_json(out / "codec.json", {
            "format": FORMAT, "kind": KIND, "version": VERSION, "vocab_size": self.vocab_size,
            "frame_rate": self.frame_rate, "sampling_rate": self.sampling_rate,
            "token_layout": "(spectral_cluster * (pitch_bins + 1) + pitch_bin) * energy_bins + energy_bin; "
                            "pitch_bin 0 = unvoiced",
            "config": to_dict(self.cfg), "stats": self.stats})

    @classmethod
    def load(cls, path: str | os.PathLike, meta: dict) -> "BuiltinCodec":
        from safetensors.numpy import load_file

        from rrpo.config import _build

        path = Path(path)
        cfg = _build(BuiltinCodecConfig, dict(meta.get("config", {})), "config.")
        arr_path = path / "codec.safetensors"
        if not arr_path.exists():
            raise RrpoError("codec arrays missing (codec.safetensors)", path)
        try:
            arrays = load_file(str(arr_path))
        except Exception as e:
            raise RrpoError(f"unreadable codec arrays ({str(e)[:100]})", arr_path) from None
        need = {"centroids", "feat_mean", "feat_std", "pitch_edges", "pitch_centres", "energy_edges",
                "energy_centres", "env_shape", "env_ap", "base"}
        if need - set(arrays):
            raise RrpoError(f"codec arrays lack {sorted(need - set(arrays))}", arr_path)
        return cls(cfg, arrays, meta.get("stats"))


# ---------------------------------------------------------------------------------------------
# training


def _quantile_bins(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges (n-1,) at equal-occupancy quantiles and the median of each bin (n,).

    Example: values 0..99, n = 4 -> edges [24.75, 49.5, 74.25], centres [12, 37, 62, 87].
    """
    values = np.asarray(values, dtype=np.float64)
    if n == 1:
        return np.zeros(0), np.array([float(np.median(values))])
    edges = np.quantile(values, np.arange(1, n) / n)
    edges = np.maximum.accumulate(edges + np.arange(n - 1) * 1e-9)                   # strictly rising
    idx = np.searchsorted(edges, values)
    centres = np.array([np.median(values[idx == k]) if (idx == k).any() else
                        (edges[min(k, n - 2)]) for k in range(n)])
    return edges, centres


def train_builtin(cfg: BuiltinCodecConfig, audios: Iterable[tuple[np.ndarray, int]],
                  progress=None) -> tuple[BuiltinCodec, dict[str, np.ndarray]]:
    """Learn the codec from ``(audio, sr)`` pairs (unlabelled). Returns the codec and its arrays.

    Utterances shorter than one frame are skipped. Raises when fewer than ``spectral_clusters``
    frames are left.
    """
    from rrpo.data.audio import resample

    def frames():
        for audio, sr in audios:
            audio = np.asarray(audio, np.float32)
            if sr != cfg.sampling_rate:
                audio = resample(audio, sr, cfg.sampling_rate)
            if n_tokens(len(audio), cfg.hop) == 0:
                continue
            yield analyse(audio, cfg)
            if progress is not None:
                progress(1)

    return train_from_frames(cfg, frames())


def train_from_frames(cfg: BuiltinCodecConfig, frames: Iterable[Frames]) -> tuple[BuiltinCodec, dict[str, np.ndarray]]:
    """Fit the quantiser (k-means, quantile bins) and the decoder tables on analysed utterances."""
    from sklearn.cluster import KMeans

    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    feats_all, lshape_all, ap_all, rel_p, rel_e, med_f0, ref_db = [], [], [], [], [], [], []
    featurise = None
    n_utt = n_sec = 0
    for fr in frames:
        if featurise is None:
            featurise = _Features(cfg, fr.sp.shape[1])
        feats_all.append(featurise(fr))
        lshape_all.append(log_shape(fr.sp).astype(np.float32))
        ap_all.append(fr.ap.astype(np.float32))
        rel_p.append(fr.f0[fr.f0 > 0])
        rel_e.append(fr.level_db)
        if (fr.f0 > 0).any():
            med_f0.append(float(np.median(fr.f0[fr.f0 > 0])))
        ref_db.append(float(np.percentile(fr.level_db, cfg.level_percentile)))
        n_utt += 1
        n_sec += len(fr.f0) / cfg.frame_rate
    if featurise is None:
        raise RrpoError("no training audio of at least one frame")
    X = np.concatenate(feats_all)                                                        # (N, F)
    if len(X) < cfg.spectral_clusters:
        raise RrpoError(f"only {len(X)} training frames for {cfg.spectral_clusters} spectral clusters; "
                        "give more audio or lower spectral_clusters")
    mean, std = X.mean(0), X.std(0) + 1e-6
    Z = (X - mean) / std
    sample = Z if len(Z) <= cfg.max_train_frames else Z[rng.choice(len(Z), cfg.max_train_frames, replace=False)]
    km = KMeans(n_clusters=cfg.spectral_clusters, n_init=1, max_iter=cfg.kmeans_iters,
                random_state=cfg.seed).fit(sample)
    centroids = km.cluster_centers_
    # assign every frame to accumulate decoder envelopes
    S = cfg.spectral_clusters
    labels = np.concatenate([((z[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
                             for z in np.array_split(Z, max(1, len(Z) // 4096))])
    L = np.concatenate(lshape_all)
    A = np.concatenate(ap_all)
    counts = np.bincount(labels, minlength=S).astype(np.float64)
    env_shape = np.zeros((S, L.shape[1]))
    env_ap = np.zeros((S, L.shape[1]))
    np.add.at(env_shape, labels, L)
    np.add.at(env_ap, labels, A)
    empty = counts == 0
    env_shape[~empty] /= counts[~empty, None]
    env_ap[~empty] /= counts[~empty, None]
    env_shape[empty] = L.mean(0)
    env_ap[empty] = A.mean(0)
    base = np.array([float(np.median(med_f0)) if med_f0 else 120.0, float(np.median(ref_db))])
    pv = [_pitch_values(f, cfg.pitch_reference, base[0]) for f in rel_p]
    rp_all = np.concatenate(pv) if sum(len(v) for v in pv) else np.zeros(1)
    p_edges, p_centres = _quantile_bins(rp_all, cfg.pitch_bins)
    e_edges, e_centres = _quantile_bins(np.concatenate([_level_values(l, cfg, base[1]) for l in rel_e]),
                                        cfg.energy_bins)
    arrays = {"centroids": centroids.astype(np.float32), "feat_mean": mean.astype(np.float32),
              "feat_std": std.astype(np.float32), "pitch_edges": p_edges, "pitch_centres": p_centres,
              "energy_edges": e_edges, "energy_centres": e_centres,
              "env_shape": env_shape.astype(np.float32), "env_ap": env_ap.astype(np.float32),
              "base": base}
    stats = {"utterances": n_utt, "seconds": round(n_sec, 2), "frames": int(len(X)),
             "empty_clusters": int(empty.sum()), "base_f0_hz": round(float(base[0]), 2),
             "base_level_db": round(float(base[1]), 2), "train_seconds": round(time.perf_counter() - t0, 2),
             "fingerprint": hashlib.sha256(centroids.astype(np.float32).tobytes()).hexdigest()[:16]}
    return BuiltinCodec(cfg, arrays, stats), arrays
