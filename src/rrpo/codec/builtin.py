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
  relative to the speaker's median F0 (``reference=speaker``, the default: the speaker's profile,
  see :mod:`rrpo.codec.profile`), to the utterance's median (``utterance``) or to the codec's pooled
  median (``absolute``), binned in equal semitone widths between the training data's 1st and 99th
  percentiles (``pitch_binning=uniform``; ``quantile``: at equal-occupancy quantiles).
* **relative energy bin** (``energy_bins``): frame level in dB relative to the speaker's level
  reference (``speaker``), the utterance's 95th-percentile frame (``utterance``) or the pooled
  level (``absolute``), also at training quantiles.
* with ``reference=speaker`` the spectral shape is also taken relative to the speaker's mean
  envelope, so clusters hold what is said and how, not who says it.

Timing is kept by the frame rate itself (one token per 40 ms, no de-duplication).

An angry utterance is higher and louder *than its speaker usually is*: utterance-relative bins
delete that cue, speaker-relative ones keep it. The figures of each reference are in docs/codec.md.

The quantiser is plain k-means for the spectral factor and quantile bins for the two prosodic
factors; every token also has a descriptor in this feature space (:meth:`token_features`), so a
token model can tie its embeddings to it (``model.embedding=free+features``, docs/method.md §2).

Decoding (``decode(ids, profile)``) is WORLD synthesis (``pyworld``) that puts the speaker back:
F0 = the profile's median shifted by the pitch bin's centre, level = its level reference plus the
energy bin's centre, and the envelope either from a small learned convolutional decoder
(``decoder=learned``, :mod:`rrpo.codec.decoder`: tokens + profile -> 10 ms mel-cepstra and band
aperiodicity, with +-240 ms of context) or from each cluster's mean envelope plus the profile's mean
(``decoder=cluster``). A smooth gain then makes every token's frame energy match its level.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rrpo.codec.base import frame_energy
from rrpo.config import check, option, to_dict
from rrpo.errors import RrpoError

log = logging.getLogger(__name__)

FORMAT = "rrpo-codec"
KIND = "builtin"
#: Bump whenever analysis, token layout or saved arrays change: old codec dirs are then refused.
VERSION = 2  # 2: speaker profiles, learned decoder

_EPS = 1e-10
_SUB_PERIOD_MS = 10.0  # F0 tracking period inside a token frame
_DIO_SPEED = 2  # DIO decimation: 2 doubles its speed (78x -> 170x real time) at equal voicing
_AP_BAND_EDGES_HZ = (0.0, 1000.0, 2000.0, 4000.0, None)  # None: Nyquist


@dataclass
class BuiltinCodecConfig:
    """Settings of ``rrpo codec train`` (the built-in codec)."""

    sampling_rate: int = option(16000, "rate the codec reads and writes (audio is resampled to it)")
    frame_rate: float = option(25.0, "tokens per second")
    spectral_clusters: int = option(
        512,
        "content ids: k-means clusters of the spectral-envelope shape (content=spectral) or of the phone model's states (content=phonetic)",
    )
    content: str = option(
        "spectral",
        "what the content factor of a token is: 'spectral' (k-means of the spectral-envelope shape) or 'phonetic' (k-means of the 25 Hz states of a CTC phone recogniser, content_model)",
    )
    content_model: str = option(
        "",
        "content=phonetic: the phone model folder (rrpo phones train) whose states are clustered; the codec keeps a copy",
    )
    pitch_bins: int = option(8, "voiced relative-pitch bins (one unvoiced bin is added)")
    pitch_binning: str = option(
        "uniform",
        "where the pitch-bin edges go: 'uniform' (equal semitone widths between the training data's 1st and 99th percentiles) or 'quantile' (equal occupancy of the training data)",
    )
    energy_bins: int = option(4, "relative-energy bins")
    mel_bands: int = option(32, "mel bands of the envelope shape used for clustering")
    aperiodicity_weight: float = option(1.0, "weight of the 4 band-aperiodicity features in k-means")
    f0_floor: float = option(60.0, "lowest F0 tracked (Hz)")
    f0_ceil: float = option(600.0, "highest F0 tracked (Hz)")
    reference: str = option(
        "speaker",
        "what pitch, level and spectral shape are encoded relative to: 'speaker' (the speaker's profile), 'utterance' (the utterance's median F0 and reference level) or 'absolute' (the codec's pooled values)",
    )
    pitch_reference: str = option("", "override of `reference` for the pitch bins alone ('' = follow reference)")
    level_reference: str = option("", "override of `reference` for the energy bins alone ('' = follow reference)")
    level_percentile: float = option(95.0, "a recording's reference level: this percentile of its frame dB")
    min_speaker_recordings: int = option(
        10, "a speaker with fewer recordings gets a warning and a mean envelope shrunk toward the pooled one"
    )
    max_train_frames: int = option(200000, "frames sampled for k-means (all if fewer)")
    kmeans_iters: int = option(100, "k-means iterations")
    seed: int = option(0, "random seed (frame sampling, k-means init, decoder)")
    decoder: str = option(
        "cluster",
        "how tokens become audio: 'cluster' (each cluster's mean envelope) or 'learned' (a small convolutional decoder, trained by codec train)",
    )
    decoder_fraction: float = option(1.0, "share of the training utterances (random) the learned decoder trains on")
    decoder_steps: int = option(1500, "learned decoder: optimiser steps")
    decoder_batch: int = option(16, "learned decoder: sequences per step")
    decoder_crop: int = option(48, "learned decoder: tokens per training sequence")
    decoder_channels: int = option(128, "learned decoder: channels")
    decoder_dims: int = option(40, "learned decoder: mel-cepstral coefficients of the envelope")
    decoder_lr: float = option(2e-3, "learned decoder: peak learning rate")
    synthesis_period_ms: float = option(
        5.0, "decoding: WORLD synthesis frame period in ms (parameters interpolated from the tokens to this grid)"
    )
    pitch_smoothing: int = option(
        0, "decoding: passes of a [1, 2, 1] / 4 filter over the semitones of each voiced run of tokens (0: bin centres)"
    )

    def __post_init__(self):
        check(self.sampling_rate >= 8000, "sampling_rate", "must be at least 8000")
        check(0 < self.frame_rate <= 200, "frame_rate", "must be in (0, 200]")
        check(
            (self.sampling_rate / self.frame_rate).is_integer(),
            "frame_rate",
            f"sampling_rate / frame_rate must be a whole number of samples (got {self.sampling_rate / self.frame_rate})",
        )
        check(self.spectral_clusters >= 2, "spectral_clusters", "must be at least 2")
        check(self.content in ("spectral", "phonetic"), "content", "must be 'spectral' or 'phonetic'")
        check(self.pitch_bins >= 1, "pitch_bins", "must be at least 1")
        check(self.energy_bins >= 1, "energy_bins", "must be at least 1")
        check(self.pitch_binning in ("uniform", "quantile"), "pitch_binning", "must be 'uniform' or 'quantile'")
        check(self.mel_bands >= 4, "mel_bands", "must be at least 4")
        check(
            0 < self.f0_floor < self.f0_ceil < self.sampling_rate / 2,
            "f0_floor",
            "need 0 < f0_floor < f0_ceil < Nyquist",
        )
        refs = ("utterance", "speaker", "absolute")
        check(self.reference in refs, "reference", "must be 'utterance', 'speaker' or 'absolute'")
        check(
            self.pitch_reference in ("",) + refs, "pitch_reference", "must be '', 'utterance', 'speaker' or 'absolute'"
        )
        check(
            self.level_reference in ("",) + refs, "level_reference", "must be '', 'utterance', 'speaker' or 'absolute'"
        )
        check(0 < self.level_percentile <= 100, "level_percentile", "must be in (0, 100]")
        check(self.min_speaker_recordings >= 1, "min_speaker_recordings", "must be at least 1")
        check(self.max_train_frames >= 100, "max_train_frames", "must be at least 100")
        check(self.kmeans_iters >= 1, "kmeans_iters", "must be at least 1")
        check(self.decoder in ("learned", "cluster"), "decoder", "must be 'learned' or 'cluster'")
        check(
            self.decoder == "cluster" or (100 / self.frame_rate).is_integer(),
            "decoder",
            "the learned decoder renders 10 ms frames: 100 / frame_rate must be a whole number",
        )
        check(0 < self.decoder_fraction <= 1, "decoder_fraction", "must be in (0, 1]")
        check(self.decoder_steps >= 1, "decoder_steps", "must be at least 1")
        check(self.decoder_batch >= 1, "decoder_batch", "must be at least 1")
        check(self.decoder_crop >= 4, "decoder_crop", "must be at least 4")
        check(self.decoder_channels >= 8, "decoder_channels", "must be at least 8")
        check(4 <= self.decoder_dims <= 60, "decoder_dims", "must be in [4, 60]")
        check(self.decoder_lr > 0, "decoder_lr", "must be > 0")
        check(self.pitch_smoothing >= 0, "pitch_smoothing", "must be >= 0")
        check(1.0 <= self.synthesis_period_ms <= 20.0, "synthesis_period_ms", "must be in [1, 20]")

    @property
    def pitch_ref(self) -> str:
        return self.pitch_reference or self.reference

    @property
    def level_ref(self) -> str:
        return self.level_reference or self.reference

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

    f0: np.ndarray  # (T,) Hz, 0 = unvoiced
    sp: np.ndarray  # (T, n_fft/2+1) CheapTrick power envelope
    ap: np.ndarray  # (T, n_fft/2+1) D4C aperiodicity in [0, 1]
    level_db: np.ndarray  # (T,) 10*log10 of the frame's mean squared amplitude
    energy: np.ndarray  # (T,) mean squared amplitude of each frame (linear)
    dense: np.ndarray | None = None  # (T*up, dims + 4) every 10 ms: mel-cepstrum of the level-removed
    #                                  envelope and band aperiodicity (the learned decoder's targets)
    content: np.ndarray | None = None  # (T, C) the phone model's states (content=phonetic)


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


def analyse(audio: np.ndarray, cfg: BuiltinCodecConfig, dense: bool = False) -> Frames:
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
        raise RrpoError(
            f"audio is {len(x)} samples ({1000 * len(x) / sr:.1f} ms), shorter than one "
            f"token frame ({1000 * hop / sr:.0f} ms)"
        )
    f0_sub, t_sub = pw.dio(
        x, sr, f0_floor=cfg.f0_floor, f0_ceil=cfg.f0_ceil, frame_period=_SUB_PERIOD_MS, speed=_DIO_SPEED
    )
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
    d = None
    if dense:
        # every 10 ms sub-frame (the synthesis grid), for the learned decoder's training targets
        up = int(round(100 / cfg.frame_rate))
        sp_d = pw.cheaptrick(x, f0_sub, t_sub, sr, f0_floor=cfg.f0_floor)
        ap_d = pw.d4c(x, f0_sub, t_sub, sr)
        coded = pw.code_spectral_envelope(np.exp(log_shape(sp_d)), sr, cfg.decoder_dims)
        d = np.concatenate([coded, ap_d @ _band_matrix(sr, ap_d.shape[1]).T], 1)
        n = T * up
        d = d[:n] if len(d) >= n else np.concatenate([d, np.repeat(d[-1:], n - len(d), 0)])
        d = d.astype(np.float32)
    return Frames(f0=f0, sp=sp, ap=ap, level_db=level_db, energy=energy, dense=d)


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


def smooth_voiced_runs(st: np.ndarray, voiced: np.ndarray, passes: int) -> np.ndarray:
    """``passes`` of a [1, 2, 1] / 4 filter over ``st`` inside each run of voiced tokens (a run's
    ends repeat themselves; unvoiced values are returned unchanged).

    Example: st = [0, 12, 0, 5], voiced = [1, 1, 1, 0], one pass ->
    [(0 + 0 + 12) / 4, (0 + 24 + 0) / 4, (12 + 0 + 0) / 4, 5] = [3, 6, 3, 5].
    """
    out = np.asarray(st, dtype=np.float64).copy()
    v = np.asarray(voiced, dtype=bool)
    if passes <= 0 or not v.any():
        return out
    idx = np.arange(len(out))
    run = np.cumsum(np.concatenate([[1], v[1:] != v[:-1]]))  # run id of each token
    left = np.where((idx > 0) & (run == np.roll(run, 1)), idx - 1, idx)
    right = np.where((idx < len(out) - 1) & (run == np.roll(run, -1)), idx + 1, idx)
    for _ in range(passes):
        out = np.where(v, (out[left] + 2 * out + out[right]) / 4.0, out)
    return out


def _pitch_values(f0: np.ndarray, reference: str, ref_st: float) -> np.ndarray:
    """Semitones the pitch bins quantise (NaN unvoiced): re the utterance's median voiced F0
    (``utterance``) or re ``ref_st`` (semitones re 1 Hz: the speaker's median for ``speaker``, the
    pooled median for ``absolute``). Example: f0 [200, 0], ref_st = 12 log2 100 -> [12, nan]."""
    if reference == "utterance":
        return relative_pitch(f0)
    out = np.full(len(f0), np.nan)
    v = f0 > 0
    out[v] = 12 * np.log2(f0[v]) - ref_st
    return out


def _level_values(level_db: np.ndarray, reference: str, percentile: float, ref_db: float) -> np.ndarray:
    """dB the energy bins quantise: re the utterance's reference level (``utterance``) or ``ref_db``
    (the speaker's level reference, or the pooled one for ``absolute``)."""
    if reference == "utterance":
        return relative_level(level_db, percentile)
    return level_db - ref_db


class _Features:
    """Level-removed log mel envelope (T, M) and band aperiodicity (T, 4) of :class:`Frames`."""

    def __init__(self, cfg: BuiltinCodecConfig, n_bins: int):
        n_fft = 2 * (n_bins - 1)
        self.mel = _mel_matrix(cfg.sampling_rate, n_fft, cfg.mel_bands)  # (M, K)
        self.bands = _band_matrix(cfg.sampling_rate, n_bins)  # (4, K)

    def __call__(self, fr: Frames) -> tuple[np.ndarray, np.ndarray]:
        logmel = np.log(fr.sp @ self.mel.T + _EPS)  # (T, M)
        return logmel - logmel.mean(axis=1, keepdims=True), fr.ap @ self.bands.T


def log_shape(sp: np.ndarray) -> np.ndarray:
    """Log envelope with the frame's mean log removed: (T, K) -> (T, K)."""
    ls = np.log(sp + _EPS)
    return ls - ls.mean(axis=1, keepdims=True)


def syn_shape(sp: np.ndarray) -> np.ndarray:
    """Level-removed log envelope on the synthesis grid (every other bin: a 512-point FFT at 16 kHz)."""
    return log_shape(sp)[:, ::2]


def _unit_power(log_env: np.ndarray) -> np.ndarray:
    """Shift each row of a log power envelope so that its mean power is 1."""
    m = log_env.max(axis=-1, keepdims=True)
    return log_env - (m + np.log(np.exp(log_env - m).mean(axis=-1, keepdims=True)))


# ---------------------------------------------------------------------------------------------
# the codec


PROFILES_FORMAT = "rrpo-speaker-profiles"


class BuiltinCodec:
    """A trained built-in codec (see the module docstring). Load with :func:`rrpo.codec.load_codec`."""

    can_decode = True
    uses_profiles = True
    #: tokens are encoded relative to the speaker's profile (``rrpo tokenize`` computes one per speaker)
    profile_in_tokens = True

    def __init__(
        self,
        cfg: BuiltinCodecConfig,
        arrays: dict[str, np.ndarray],
        stats: dict | None = None,
        profiles: dict | None = None,
        pooled=None,
        decoder_state: dict | None = None,
        path: Path | None = None,
        content_model=None,
    ):
        from rrpo.codec.profile import SpeakerProfile

        self.cfg = cfg
        self.path = path
        self.vocab_size = cfg.vocab_size
        self.frame_rate = float(cfg.frame_rate)
        self.sampling_rate = int(cfg.sampling_rate)
        self.hop = cfg.hop
        self.up = int(round(100 / cfg.frame_rate))
        self.stats = dict(stats or {})
        self.centroids = arrays["centroids"].astype(np.float64)  # (S, F) standardised features
        self.feat_mean = arrays["feat_mean"].astype(np.float64)  # (F,)
        self.feat_std = arrays["feat_std"].astype(np.float64)  # (F,)
        self.pitch_edges = arrays["pitch_edges"].astype(np.float64)  # (P-1,) semitones
        self.pitch_centres = arrays["pitch_centres"].astype(np.float64)  # (P,)
        self.energy_edges = arrays["energy_edges"].astype(np.float64)  # (E-1,) dB
        self.energy_centres = arrays["energy_centres"].astype(np.float64)  # (E,)
        self.env_shape = arrays["env_shape"].astype(np.float64)  # (S, K') mean log envelope shape
        self.env_ap = arrays["env_ap"].astype(np.float64)  # (S, K') mean aperiodicity
        self.n_syn_bins = self.env_shape.shape[1]
        self.profiles: dict[str, SpeakerProfile] = dict(profiles or {})
        if pooled is None:
            raise RrpoError("codec has no pooled speaker profile")
        self.pooled: SpeakerProfile = pooled
        self._features = _Features(cfg, 2 * (self.n_syn_bins - 1) + 1)
        self._ap_interp = self._band_to_bins()
        S, P, E = cfg.spectral_clusters, cfg.pitch_bins, cfg.energy_bins
        if self.centroids.shape[0] != S or len(self.pitch_centres) != P or len(self.energy_centres) != E:
            raise RrpoError("codec arrays do not match codec.json (spectral_clusters / pitch_bins / energy_bins)")
        self.content_model = content_model
        self.content_centroids = None
        if cfg.content == "phonetic":
            if content_model is None or "content_centroids" not in arrays:
                raise RrpoError("a phonetic codec needs its phone model and content_centroids")
            self.content_centroids = arrays["content_centroids"].astype(np.float32)  # (S, C)
            if self.content_centroids.shape != (S, content_model.shape.channels):
                raise RrpoError(
                    f"content_centroids of shape {self.content_centroids.shape} do not match "
                    f"{S} clusters of the phone model's {content_model.shape.channels} channels"
                )
        self.net = None
        if decoder_state is not None:
            from rrpo.codec.decoder import LearnedDecoder

            self.net = LearnedDecoder(self.decoder_shape(), decoder_state)
        self._coded_cache: dict[bytes, np.ndarray] = {}

    @property
    def spectral_relative(self) -> bool:
        """Whether the clustering features (and cluster envelopes) are relative to the speaker."""
        return self.cfg.reference == "speaker"

    def decoder_shape(self):
        from rrpo.codec.decoder import DecoderShape

        c = self.cfg
        return DecoderShape(
            clusters=c.spectral_clusters,
            pitch_bins1=c.pitch_bins + 1,
            energy_bins=c.energy_bins,
            dims=c.decoder_dims,
            channels=c.decoder_channels,
            profile_dims=c.decoder_dims + 2,
            up=self.up,
        )

    def _band_to_bins(self) -> np.ndarray:
        """(K', 4) linear interpolation of 4 band aperiodicities (at band centres) to the bins."""
        sr = self.sampling_rate
        edges = [e if e is not None else sr / 2 for e in _AP_BAND_EDGES_HZ]
        centres = np.array([(edges[i] + edges[i + 1]) / 2 for i in range(4)])
        freqs = np.linspace(0, sr / 2, self.n_syn_bins)
        m = np.zeros((self.n_syn_bins, 4))
        for b in range(4):
            onehot = np.zeros(4)
            onehot[b] = 1.0
            m[:, b] = np.interp(freqs, centres, onehot)
        return m

    # -- token layout -------------------------------------------------------------------------

    def compose(self, s: np.ndarray, p: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Factors -> token ids. ``p`` = 0 is unvoiced, 1..P the voiced pitch bins."""
        P1, E = self.cfg.pitch_bins + 1, self.cfg.energy_bins
        return (np.asarray(s, np.int64) * P1 + np.asarray(p, np.int64)) * E + np.asarray(e, np.int64)

    def factors(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token ids -> (spectral cluster, pitch bin (0 unvoiced), energy bin)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        P1, E = self.cfg.pitch_bins + 1, self.cfg.energy_bins
        return tokens // (P1 * E), (tokens // E) % P1, tokens % E

    # -- profiles -----------------------------------------------------------------------------

    def _profile(self, profile):
        from rrpo.codec.profile import SpeakerProfile

        if profile is None:
            return self.pooled
        if not isinstance(profile, SpeakerProfile):
            raise RrpoError(f"not a speaker profile of the built-in codec: {type(profile).__name__}")
        if profile.env_mel.shape != (self.cfg.mel_bands,) or profile.env_log.shape != (self.n_syn_bins,):
            raise RrpoError(
                f"speaker profile '{profile.speaker}' has envelopes of shape {profile.env_mel.shape} / "
                f"{profile.env_log.shape}; this codec needs ({self.cfg.mel_bands},) / ({self.n_syn_bins},)"
            )
        return profile

    def speaker_profile(self, speaker: str):
        try:
            return self.profiles[speaker]
        except KeyError:
            known = ", ".join(sorted(self.profiles)[:8]) + (" ..." if len(self.profiles) > 8 else "")
            raise RrpoError(
                f"no profile of speaker '{speaker}' in this codec (it has: {known or 'none'}); "
                "give a few of the speaker's recordings instead (--reference)",
                self.path / "profiles.json" if self.path else None,
            ) from None

    def profile_from_frames(self, frames: Iterable[Frames], speaker: str = "", source=None):
        """The profile of the speaker of these analysed recordings (see :mod:`rrpo.codec.profile`)."""
        from rrpo.codec.profile import ProfileAccumulator

        acc = ProfileAccumulator(self.cfg.level_percentile)
        for fr in frames:
            shape_mel, _ = self._features(fr)
            acc.add(fr.f0, fr.level_db, shape_mel, syn_shape(fr.sp))
        if not acc.refs:
            raise RrpoError(f"speaker '{speaker}': no recordings to compute a profile from", source)
        return acc.finish(speaker, self.pooled, self.cfg.min_speaker_recordings, source)

    def profile_from_audio(self, audios, speaker: str = ""):
        """Profile of the speaker of ``(audio, sr)`` recordings (any iterable; one pass)."""
        return self.profile_from_frames((analyse(self._prepare(a, sr), self.cfg) for a, sr in audios), speaker)

    def profile_vector(self, profile) -> np.ndarray:
        """The learned decoder's view of a profile: its median F0 and level re the pooled ones
        (/12 semitones, /20 dB) and its mean envelope's mel-cepstrum re the pooled one."""
        c = self._coded(profile) - self._coded(self.pooled)
        return np.concatenate(
            [[(profile.f0_st - self.pooled.f0_st) / 12.0, (profile.level_db - self.pooled.level_db) / 20.0], c]
        ).astype(np.float32)

    def _coded(self, profile) -> np.ndarray:
        """Mel-cepstrum (decoder_dims,) of the profile's mean envelope (cached by its content)."""
        import pyworld as pw

        key = profile.env_log.tobytes()
        got = self._coded_cache.get(key)
        if got is None:
            if len(self._coded_cache) > 256:
                self._coded_cache.clear()
            env = np.ascontiguousarray(np.exp(profile.env_log)[None])
            got = self._coded_cache[key] = pw.code_spectral_envelope(env, self.sampling_rate, self.cfg.decoder_dims)[0]
        return got

    def _refs(self, profile) -> tuple[float, float]:
        """(semitones, dB) the pitch and energy bins of ``profile``'s speaker are relative to."""
        st = self.pooled.f0_st if self.cfg.pitch_ref == "absolute" else profile.f0_st
        db = self.pooled.level_db if self.cfg.level_ref == "absolute" else profile.level_db
        return st, db

    # -- encode -------------------------------------------------------------------------------

    def _prepare(self, audio: np.ndarray, sr: int) -> np.ndarray:
        from rrpo.data.audio import resample

        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise RrpoError(f"expected mono audio of shape (T,), got {audio.shape}")
        if not np.isfinite(audio).all():
            raise RrpoError("audio holds NaN or infinite samples")
        return resample(audio, sr, self.sampling_rate) if sr != self.sampling_rate else audio

    def features(self, fr: Frames, profile=None) -> np.ndarray:
        """Standardised clustering features (T, M + 4) of ``fr`` (relative to the profile's mean
        envelope when ``reference=speaker``)."""
        prof = self._profile(profile)
        shape_mel, apb = self._features(fr)
        if self.spectral_relative:
            shape_mel = shape_mel - prof.env_mel
        x = np.concatenate([shape_mel, self.cfg.aperiodicity_weight * apb], axis=1)
        return (x - self.feat_mean) / self.feat_std

    def frames(self, audio: np.ndarray, sr: int, dense: bool = False) -> Frames:
        """The analysis :meth:`quantise` reads: WORLD frames, and the phone model's states when the
        content is phonetic."""
        audio = self._prepare(audio, sr)
        fr = analyse(audio, self.cfg, dense=dense)
        if self.content_model is not None:
            fr.content = content_states(self.content_model, audio, self.sampling_rate, len(fr.f0))
        return fr

    def content_ids(self, fr: Frames, profile=None) -> np.ndarray:
        """The content factor (T,) of each token: the nearest spectral or phonetic centroid."""
        if self.content_centroids is not None:
            if fr.content is None:
                raise RrpoError("a phonetic codec quantises frames with the phone model's states (codec.frames)")
            return nearest(fr.content, self.content_centroids)
        feats = self.features(fr, self._profile(profile))  # (T, F)
        d = ((feats[:, None, :] - self.centroids[None]) ** 2).sum(-1)  # (T, S)
        return d.argmin(axis=1)

    def quantise(self, fr: Frames, profile=None) -> np.ndarray:
        """Frames of one utterance (:meth:`frames`) -> token ids (T,) int64, relative to ``profile``."""
        prof = self._profile(profile)
        s = self.content_ids(fr, prof)
        st, db = self._refs(prof)
        rp = _pitch_values(fr.f0, self.cfg.pitch_ref, st)
        p = np.where(np.isnan(rp), 0, 1 + np.searchsorted(self.pitch_edges, np.nan_to_num(rp)))
        e = np.searchsorted(
            self.energy_edges, _level_values(fr.level_db, self.cfg.level_ref, self.cfg.level_percentile, db)
        )
        return self.compose(s, p, e)

    def encode_with_energy(self, audio: np.ndarray, sr: int, profile=None) -> tuple[np.ndarray, np.ndarray]:
        fr = self.frames(audio, sr)
        return self.quantise(fr, profile), fr.energy.astype(np.float32)

    def encode(self, audio: np.ndarray, sr: int, profile=None) -> np.ndarray:
        return self.encode_with_energy(audio, sr, profile)[0]

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

    def decode(self, tokens: np.ndarray, profile=None, *, decoder: str | None = None) -> np.ndarray:
        """Token ids (T,) -> float32 audio (T * hop,) at ``sampling_rate``, as ``profile``'s
        speaker (None: the pooled profile of the training audio).

        ``decoder`` ('learned' / 'cluster', default the codec's ``decoder`` setting) picks the
        spectral decoder; F0 and level come from the tokens and the profile either way.
        """
        from rrpo.system import require

        pw = require("pyworld")

        prof = self._profile(profile)
        which = decoder or self.cfg.decoder
        if which not in ("learned", "cluster"):
            raise RrpoError(f"unknown decoder {which!r} (learned or cluster)")
        if which == "learned" and self.net is None:
            raise RrpoError("this codec has no learned decoder (trained with decoder=cluster)", self.path)
        t = self.check_tokens(tokens)
        s, p, e = self.factors(t)
        st, db = self._refs(prof)
        T, sr, hop = len(t), self.sampling_rate, self.hop
        semis = smooth_voiced_runs(self.pitch_centres[np.maximum(p - 1, 0)], p > 0, self.cfg.pitch_smoothing)
        f0 = np.where(p > 0, 2.0 ** ((st + semis) / 12.0), 0.0)
        target_db = db + self.energy_centres[e]  # (T,)
        n_out = T * hop
        grid, i0, i1, w = token_grid(T, self.frame_rate, self.cfg.synthesis_period_ms)
        level_g = np.log(10.0) / 10.0 * ((1 - w[:, 0]) * target_db[i0] + w[:, 0] * target_db[i1])
        if which == "cluster":
            log_sp = self.env_shape[s] + (prof.env_log if self.spectral_relative else 0.0)
            log_sp = _unit_power(log_sp)  # (T, K')
            ap = self.env_ap[s]
            shape_g = (1 - w) * log_sp[i0] + w * log_sp[i1]
            ap_g = np.clip((1 - w) * ap[i0] + w * ap[i1], 0.0, 1.0)
        else:
            out = self.net(s, p, e, self.profile_vector(prof))  # (T*up, D + 4)
            # the decoder's rows are 10 ms frames (row k at k * 10 ms): the nearest one per grid point
            rows = np.minimum(np.round(grid * 100.0).astype(np.int64), len(out) - 1)
            out = out[rows]
            coded = np.ascontiguousarray(out[:, :-4] + self._coded(prof))
            env = pw.decode_spectral_envelope(coded, sr, 2 * (self.n_syn_bins - 1))
            shape_g = _unit_power(np.log(env + _EPS))
            ap_g = np.clip(out[:, -4:] @ self._ap_interp.T, 0.0, 1.0)
        sp_g = np.exp(shape_g + level_g[:, None])
        f0_g = grid_f0(f0, i0, i1, w)
        y = pw.synthesize(
            np.ascontiguousarray(f0_g),
            np.ascontiguousarray(sp_g),
            np.ascontiguousarray(ap_g),
            sr,
            self.cfg.synthesis_period_ms,
        )
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
        s, p, e = s.ravel(), p.ravel(), e.ravel()  # already in compose() order
        pitch = np.where(p > 0, self.pitch_centres[np.maximum(p - 1, 0)] / 6.0, 0.0)
        voiced = (p > 0).astype(np.float64)
        level = self.energy_centres[e] / 10.0
        out = np.concatenate([self.centroids[s], pitch[:, None], voiced[:, None], level[:, None]], axis=1)
        return out.astype(np.float32)

    def describe(self) -> dict:
        """What token shards record about the codec that made them."""
        return {
            "kind": KIND,
            "version": VERSION,
            "vocab_size": self.vocab_size,
            "frame_rate": self.frame_rate,
            "config": to_dict(self.cfg),
            "trained_sha": self.stats.get("fingerprint"),
        }

    # -- persistence --------------------------------------------------------------------------

    def save(
        self, out: str | os.PathLike, arrays: dict[str, np.ndarray], decoder_state: dict[str, np.ndarray] | None = None
    ) -> None:
        """Write codec.safetensors, decoder.safetensors (learned decoder), profiles.json, and last
        codec.json (so a folder without codec.json is not mistaken for a finished codec)."""
        from safetensors.numpy import save_file

        from rrpo.io import atomic_path, write_json

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "codec.safetensors") as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
        if decoder_state is not None:
            with atomic_path(out / "decoder.safetensors") as tmp:
                save_file({k: np.ascontiguousarray(v) for k, v in decoder_state.items()}, str(tmp))
        if self.content_model is not None:
            self.content_model.save(out / CONTENT_DIR)
        write_json(
            out / "profiles.json",
            {
                "format": PROFILES_FORMAT,
                "version": 1,
                "pooled": self.pooled.to_dict(),
                "profiles": {k: v.to_dict() for k, v in sorted(self.profiles.items())},
            },
        )
        write_json(
            out / "codec.json",
            {
                "format": FORMAT,
                "kind": KIND,
                "version": VERSION,
                "vocab_size": self.vocab_size,
                "frame_rate": self.frame_rate,
                "sampling_rate": self.sampling_rate,
                "token_layout": "(content_id * (pitch_bins + 1) + pitch_bin) * energy_bins + energy_bin; "
                "pitch_bin 0 = unvoiced",
                "content": self.cfg.content,
                "decoder": self.decoder_shape().to_dict() if decoder_state is not None else None,
                "config": to_dict(self.cfg),
                "stats": self.stats,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike, meta: dict) -> BuiltinCodec:
        from safetensors.numpy import load_file

        from rrpo.codec.profile import SpeakerProfile
        from rrpo.config import _build
        from rrpo.io import read_json

        path = Path(path)
        conf = dict(meta.get("config", {}))
        conf.setdefault("pitch_binning", "quantile")  # codecs saved before the setting existed
        conf.setdefault("content", "spectral")
        cfg = _build(BuiltinCodecConfig, conf, "config.")
        arr_path = path / "codec.safetensors"
        if not arr_path.exists():
            raise RrpoError("codec arrays missing (codec.safetensors)", path)
        try:
            arrays = load_file(str(arr_path))
        except Exception as e:
            raise RrpoError(f"unreadable codec arrays ({str(e)[:100]})", arr_path) from None
        need = {
            "centroids",
            "feat_mean",
            "feat_std",
            "pitch_edges",
            "pitch_centres",
            "energy_edges",
            "energy_centres",
            "env_shape",
            "env_ap",
        }
        if need - set(arrays):
            raise RrpoError(f"codec arrays lack {sorted(need - set(arrays))}", arr_path)
        prof_path = path / "profiles.json"
        if not prof_path.exists():
            raise RrpoError("speaker profiles missing (profiles.json)", path)
        try:
            pj = read_json(prof_path)
        except Exception as e:
            raise RrpoError(f"unreadable speaker profiles ({str(e)[:80]})", prof_path) from None
        if not isinstance(pj, dict) or pj.get("format") != PROFILES_FORMAT or pj.get("version") != 1:
            raise RrpoError("not a speaker-profiles file of version 1", prof_path)
        n_mel, n_log = cfg.mel_bands, arrays["env_shape"].shape[1]
        pooled = SpeakerProfile.from_dict(pj.get("pooled"), prof_path, n_mel, n_log)
        profiles = {
            k: SpeakerProfile.from_dict(v, prof_path, n_mel, n_log) for k, v in (pj.get("profiles") or {}).items()
        }
        state = None
        dec_path = path / "decoder.safetensors"
        if dec_path.exists():
            try:
                state = load_file(str(dec_path))
            except Exception as e:
                raise RrpoError(f"unreadable decoder weights ({str(e)[:100]})", dec_path) from None
        elif cfg.decoder == "learned":
            raise RrpoError("learned decoder weights missing (decoder.safetensors)", path)
        content_model = None
        if cfg.content == "phonetic":
            from rrpo.phones.model import PhoneModel

            if "content_centroids" not in arrays:
                raise RrpoError("codec arrays lack content_centroids (content=phonetic)", arr_path)
            content_model = PhoneModel.load(path / CONTENT_DIR)
        try:
            return cls(cfg, arrays, meta.get("stats"), profiles, pooled, state, path, content_model)
        except RrpoError as e:
            raise RrpoError(e.reason, e.path or path) from None


# ---------------------------------------------------------------------------------------------
# training


#: where a phonetic codec keeps its copy of the phone model
CONTENT_DIR = "content"


def token_grid(T: int, frame_rate: float, period_ms: float):
    """The synthesis grid of ``T`` tokens: (times in s, lower and upper token of each grid point, the
    upper token's weight as a (G, 1) column). Token t is centred at (t + 0.5) / frame_rate; points
    before the first centre or after the last hold that token."""
    period = period_ms / 1000.0
    grid = np.arange(int(np.ceil(T / frame_rate / period)) + 1) * period
    pos = np.clip(grid * frame_rate - 0.5, 0, T - 1)  # in token units
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, T - 1)
    return grid, i0, i1, (pos - i0)[:, None]


def grid_f0(f0: np.ndarray, i0: np.ndarray, i1: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-token F0 (0 = unvoiced) onto the grid of :func:`token_grid`: log-linear between two voiced
    tokens, otherwise the nearer token's value (so voicing switches half-way)."""
    both = (f0[i0] > 0) & (f0[i1] > 0)
    lf = (1 - w[:, 0]) * np.log(np.maximum(f0[i0], 1)) + w[:, 0] * np.log(np.maximum(f0[i1], 1))
    near = np.where(w[:, 0] < 0.5, i0, i1)
    return np.where(both, np.exp(lf), np.where(f0[near] > 0, f0[near], 0.0))


def nearest(x: np.ndarray, centroids: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index (N,) of the nearest row of ``centroids`` (S, C) to each row of ``x`` (N, C), Euclidean."""
    x = np.asarray(x, np.float32)
    c = np.asarray(centroids, np.float32)
    cc = (c * c).sum(1)
    out = [(cc[None] - 2.0 * x[i : i + chunk] @ c.T).argmin(1) for i in range(0, len(x), chunk)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def content_states(model, audio: np.ndarray, sr: int, t: int) -> np.ndarray:
    """The phone model's 25 Hz states of ``audio``, cropped or padded to ``t`` tokens."""
    from rrpo.phones.model import align

    return align(model.states(audio, sr), t)


def load_content_model(cfg: BuiltinCodecConfig):
    """The phone model a phonetic codec is trained with (``content_model``), or None."""
    if cfg.content != "phonetic":
        return None
    if not cfg.content_model:
        raise RrpoError("content=phonetic needs content_model=DIR (a phone model from `rrpo phones train`)")
    from rrpo.phones.model import PhoneModel

    return PhoneModel.load(cfg.content_model)


def _quantile_bins(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges (n-1,) at equal-occupancy quantiles and the median of each bin (n,).

    Example: values 0..99, n = 4 -> edges [24.75, 49.5, 74.25], centres [12, 37, 62, 87].
    """
    values = np.asarray(values, dtype=np.float64)
    if n == 1:
        return np.zeros(0), np.array([float(np.median(values))])
    edges = np.quantile(values, np.arange(1, n) / n)
    edges = np.maximum.accumulate(edges + np.arange(n - 1) * 1e-9)  # strictly rising
    idx = np.searchsorted(edges, values)
    centres = np.array([np.median(values[idx == k]) if (idx == k).any() else (edges[min(k, n - 2)]) for k in range(n)])
    return edges, centres


#: the range the ``uniform`` pitch bins span: these percentiles of the training semitones
_UNIFORM_PERCENTILES = (1.0, 99.0)


def _uniform_bins(values: np.ndarray, n: int, lo_pct: float = 1.0, hi_pct: float = 99.0):
    """Edges (n-1,) splitting [``lo_pct``, ``hi_pct``] percentiles of ``values`` into ``n`` equal
    widths, and the median of each bin (an empty bin: the middle of its edges).

    The two outer bins stay open (everything below / above), but the inner edges no longer follow
    the training data's density: a speaker whose range is wider than the training pool's keeps a
    contour instead of collapsing into one wide outer bin.

    Example: values 0..99, n = 4, percentiles 1 / 99 (0.99 / 98.01): width 24.255, edges
    [25.245, 49.5, 73.755]; bins 0..25, 26..49, 50..73, 74..99 with medians 12.5, 37.5, 61.5, 86.5.
    """
    values = np.asarray(values, dtype=np.float64)
    if n == 1:
        return np.zeros(0), np.array([float(np.median(values))])
    lo, hi = np.percentile(values, [lo_pct, hi_pct])
    if hi <= lo:  # degenerate (constant) data: fall back to equal occupancy
        return _quantile_bins(values, n)
    edges = np.linspace(lo, hi, n + 1)[1:-1]
    idx = np.searchsorted(edges, values)
    width = (hi - lo) / n
    centres = np.array(
        [np.median(values[idx == k]) if (idx == k).any() else (lo + (k + 0.5) * width) for k in range(n)]
    )
    return edges, centres


def train_builtin(
    cfg: BuiltinCodecConfig,
    audios: Iterable[tuple],
    progress=None,
    checkpoint: Path | None = None,
    decoder_progress=None,
    content_model=None,
):
    """Learn the codec from ``(audio, sr, speaker)`` triples (unlabelled; ``(audio, sr)`` pairs are
    one speaker). Returns the codec, its arrays and the learned decoder's weights (or None).

    Utterances shorter than one frame are skipped. Raises when fewer than ``spectral_clusters``
    frames are left, or a speaker has no voiced frame.
    """
    from rrpo.data.audio import resample

    rng = np.random.default_rng([cfg.seed, 7])
    if content_model is None:
        content_model = load_content_model(cfg)

    def frames():
        for item in audios:
            audio, sr = item[0], item[1]
            speaker = str(item[2]) if len(item) > 2 else "speaker"
            audio = np.asarray(audio, np.float32)
            if sr != cfg.sampling_rate:
                audio = resample(audio, sr, cfg.sampling_rate)
            dense = cfg.decoder == "learned" and rng.random() < cfg.decoder_fraction
            if n_tokens(len(audio), cfg.hop) == 0:
                continue
            fr = analyse(audio, cfg, dense=dense)
            if content_model is not None:
                fr.content = content_states(content_model, audio, cfg.sampling_rate, len(fr.f0))
            yield speaker, fr
            if progress is not None:
                progress(1)

    return train_from_frames(
        cfg, frames(), checkpoint=checkpoint, decoder_progress=decoder_progress, content_model=content_model
    )


def train_from_frames(
    cfg: BuiltinCodecConfig,
    frames: Iterable[tuple[str, Frames]],
    checkpoint: Path | None = None,
    decoder_progress=None,
    content_model=None,
):
    """Fit profiles, the quantiser (k-means, quantile bins) and the decoders on analysed utterances
    ``(speaker, Frames)`` (with ``content`` states when ``cfg.content`` is phonetic: then
    ``content_model`` is the phone model that made them). Returns (codec, arrays, decoder weights
    or None)."""
    from sklearn.cluster import KMeans

    from rrpo.codec.profile import ProfileAccumulator

    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    phonetic = cfg.content == "phonetic"
    if phonetic and content_model is None:
        content_model = load_content_model(cfg)
    utts = []  # (speaker, f0, level_db, shape_mel, apb, syn log shape, syn ap, dense, content states)
    featurise = None
    accs: dict[str, ProfileAccumulator] = {}
    pooled_acc = ProfileAccumulator(cfg.level_percentile)
    n_sec = 0.0
    for speaker, fr in frames:
        if featurise is None:
            featurise = _Features(cfg, fr.sp.shape[1])
        shape_mel, apb = featurise(fr)
        ls = syn_shape(fr.sp)
        accs.setdefault(speaker, ProfileAccumulator(cfg.level_percentile)).add(fr.f0, fr.level_db, shape_mel, ls)
        pooled_acc.add(fr.f0, fr.level_db, shape_mel, ls)
        utts.append(
            (
                speaker,
                fr.f0,
                fr.level_db,
                shape_mel.astype(np.float32),
                apb.astype(np.float32),
                ls.astype(np.float32),
                fr.ap[:, ::2].astype(np.float32),
                fr.dense,
                fr.content,
            )
        )
        if phonetic and fr.content is None:
            raise RrpoError("content=phonetic: analysed frames without the phone model's states")
        n_sec += len(fr.f0) / cfg.frame_rate
    if featurise is None:
        raise RrpoError("no training audio of at least one frame")
    pooled = pooled_acc.finish("*pooled*")
    profiles = {spk: acc.finish(spk, pooled, cfg.min_speaker_recordings) for spk, acc in sorted(accs.items())}
    rel = cfg.reference == "speaker"
    X = np.concatenate(
        [
            np.concatenate([u[3] - (profiles[u[0]].env_mel if rel else 0.0), cfg.aperiodicity_weight * u[4]], 1)
            for u in utts
        ]
    )  # (N, F)
    C = np.concatenate([u[8] for u in utts]).astype(np.float32) if phonetic else None
    if len(X) < cfg.spectral_clusters:
        raise RrpoError(
            f"only {len(X)} training frames for {cfg.spectral_clusters} spectral clusters; "
            "give more audio or lower spectral_clusters"
        )
    mean, std = X.mean(0), X.std(0) + 1e-6
    Z = (X - mean) / std
    space = C if phonetic else Z  # what the content ids cluster
    pick = None if len(space) <= cfg.max_train_frames else rng.choice(len(space), cfg.max_train_frames, replace=False)
    sample = space if pick is None else space[pick]
    km = KMeans(n_clusters=cfg.spectral_clusters, n_init=1, max_iter=cfg.kmeans_iters, random_state=cfg.seed).fit(
        sample
    )
    S = cfg.spectral_clusters
    content_centroids = None
    if phonetic:
        content_centroids = km.cluster_centers_.astype(np.float32)
        labels = nearest(C, content_centroids)
    else:
        centroids = km.cluster_centers_
        # assign every frame to accumulate the cluster decoder's envelopes
        labels = np.concatenate(
            [
                ((z[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
                for z in np.array_split(Z, max(1, len(Z) // 4096))
            ]
        )
    L = np.concatenate([u[5] - (profiles[u[0]].env_log if rel else 0.0) for u in utts])
    A = np.concatenate([u[6] for u in utts])
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
    del L, A
    if phonetic:  # a content id's descriptor (token_features): its frames' mean standardised envelope shape
        centroids = np.zeros((S, Z.shape[1]))
        np.add.at(centroids, labels, Z)
        centroids[~empty] /= counts[~empty, None]

    def refs(spk):
        prof = profiles[spk]
        return (
            pooled.f0_st if cfg.pitch_ref == "absolute" else prof.f0_st,
            pooled.level_db if cfg.level_ref == "absolute" else prof.level_db,
        )

    pv = [_pitch_values(u[1], cfg.pitch_ref, refs(u[0])[0]) for u in utts]
    pv = np.concatenate(pv)
    pv = pv[~np.isnan(pv)]
    pv = pv if len(pv) else np.zeros(1)
    if cfg.pitch_binning == "uniform":
        p_edges, p_centres = _uniform_bins(pv, cfg.pitch_bins, *_UNIFORM_PERCENTILES)
    else:
        p_edges, p_centres = _quantile_bins(pv, cfg.pitch_bins)
    e_edges, e_centres = _quantile_bins(
        np.concatenate([_level_values(u[2], cfg.level_ref, cfg.level_percentile, refs(u[0])[1]) for u in utts]),
        cfg.energy_bins,
    )
    arrays = {
        "centroids": centroids.astype(np.float32),
        "feat_mean": mean.astype(np.float32),
        "feat_std": std.astype(np.float32),
        "pitch_edges": p_edges,
        "pitch_centres": p_centres,
        "energy_edges": e_edges,
        "energy_centres": e_centres,
        "env_shape": env_shape.astype(np.float32),
        "env_ap": env_ap.astype(np.float32),
    }
    if phonetic:
        arrays["content_centroids"] = content_centroids
    fingerprint = hashlib.sha256(
        centroids.astype(np.float32).tobytes()
        + p_edges.tobytes()
        + e_edges.tobytes()
        + (content_centroids.tobytes() if phonetic else b"")
    ).hexdigest()[:16]
    spk_recs = [p.recordings for p in profiles.values()]
    stats = {
        "utterances": len(utts),
        "seconds": round(n_sec, 2),
        "frames": int(len(X)),
        "speakers": len(profiles),
        "speakers_fallback": sum(r < cfg.min_speaker_recordings for r in spk_recs),
        "empty_clusters": int(empty.sum()),
        "pooled_f0_hz": round(pooled.f0_hz, 2),
        "pooled_level_db": round(pooled.level_db, 2),
        "quantiser_seconds": round(time.perf_counter() - t0, 2),
        "fingerprint": fingerprint,
    }
    codec = BuiltinCodec(cfg, arrays, stats, profiles, pooled, content_model=content_model)
    state = None
    if cfg.decoder == "learned":
        from rrpo.codec.decoder import TrainItem, train_decoder

        items = []
        for spk, f0, level_db, shape_mel, apb, _, _, dense, cst in utts:
            if dense is None:
                continue
            prof = profiles[spk]
            fr = Frames(f0=f0, sp=None, ap=None, level_db=level_db, energy=None)
            if phonetic:
                s = nearest(cst, content_centroids)
            else:
                x = np.concatenate([shape_mel - (prof.env_mel if rel else 0.0), cfg.aperiodicity_weight * apb], 1)
                z = (x - mean) / std
                s = ((z[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
            st, db = refs(spk)
            rp = _pitch_values(fr.f0, cfg.pitch_ref, st)
            p = np.where(np.isnan(rp), 0, 1 + np.searchsorted(p_edges, np.nan_to_num(rp)))
            e = np.searchsorted(e_edges, _level_values(level_db, cfg.level_ref, cfg.level_percentile, db))
            target = dense.astype(np.float64).copy()
            target[:, : cfg.decoder_dims] -= codec._coded(prof)
            items.append(TrainItem(s=s, p=p, e=e, prof=codec.profile_vector(prof), target=target.astype(np.float32)))
        if not items:
            raise RrpoError("no utterance was drawn for the learned decoder (raise decoder_fraction)")
        state, dstats = train_decoder(
            codec.decoder_shape(),
            items,
            steps=cfg.decoder_steps,
            batch=cfg.decoder_batch,
            crop=cfg.decoder_crop,
            lr=cfg.decoder_lr,
            seed=cfg.seed,
            checkpoint=checkpoint,
            fingerprint=fingerprint,
            progress=decoder_progress,
        )
        stats.update(dstats)
        stats["decoder_utterances"] = len(items)
        codec = BuiltinCodec(cfg, arrays, stats, profiles, pooled, state, content_model=content_model)
    stats["train_seconds"] = round(time.perf_counter() - t0, 2)
    codec.stats = stats
    return codec, arrays, state
