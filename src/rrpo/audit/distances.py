"""Distances between generated and real speech, and word error rate.

* **MCD** (mel-cepstral distortion) with DTW, as TTS papers report it: the WORLD spectral envelope
  (DIO + StoneMask F0, CheapTrick, ``hop_ms`` frames) is turned into mel-cepstra c_0..c_D by SPTK's
  all-pass frequency warping (``pysptk.sp2mc``, α = ``alpha``, 0.42 at 16 kHz, D = ``n_ceps``);
  frames are aligned by DTW on c_1..c_D and MCD = mean over the path of
  (10 / ln 10) · sqrt(2 · Σ_{d≥1} (c_d − c'_d)²), in dB. c_0 (the level) is excluded, so a gain
  change does not count. Two renditions of one sentence by one speaker read about 6 dB on CASIA.
* **F0 error** with DTW: F0 tracks from WORLD (DIO + StoneMask, ``hop_ms`` frames), aligned by the
  MCD path. ``f0_rmse_cents`` = RMSE of 1200·log2(f_gen / f_ref) over path pairs voiced in both;
  ``voicing_error`` = the fraction of path pairs whose voiced/unvoiced decisions differ.
* **Fréchet distance** between two sets of feature vectors (eGeMAPS, as FID does with Inception
  features): ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½). :func:`feature_frechet` z-scores both sets with
  the reference set's mean and the standard deviation of both sets pooled, so that no feature
  dominates by its unit (the reference's own deviation alone let a feature that is nearly constant
  in 25 real recordings blow the distance up ten-thousandfold).
* **WER**: words are normalised (:func:`normalise_words`), then WER = (S + D + I) / N_ref by
  Levenshtein alignment. :class:`PocketsphinxRecognizer` transcribes English with the model that
  pocketsphinx 5 ships.

The policy's token-level KL from its reference is :func:`rrpo.optimize.relax.token_kl`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rrpo.config import check, option
from rrpo.data.audio import resample

MCD_CONST = 10.0 / math.log(10.0) * math.sqrt(2.0)


@dataclass
class DistanceConfig:
    """Settings of the reference distances."""

    sample_rate: int = option(16000, "rate both waveforms are brought to")
    hop_ms: float = option(5.0, "frame hop (ms) of the WORLD analysis (mel-cepstra and F0)")
    n_ceps: int = option(24, "mel-cepstral coefficients c_1..c_D compared (c_0 excluded)")
    alpha: float = option(0.42, "all-pass warping constant of the mel-cepstra (0.42 suits 16 kHz)")
    f0_floor: float = option(60.0, "lowest F0 (Hz) WORLD searches")
    f0_ceil: float = option(600.0, "highest F0 (Hz) WORLD searches")

    def __post_init__(self):
        check(0 < self.n_ceps < 60, "n_ceps", "must be between 1 and 59")
        check(0 <= self.alpha < 1, "alpha", "must be in [0, 1)")
        check(self.f0_floor < self.f0_ceil, "f0_ceil", "must exceed f0_floor")


# -- DTW ------------------------------------------------------------------------------------------


def dtw_path(cost: np.ndarray) -> np.ndarray:
    """Minimum-cost monotone alignment of an (N, M) cost matrix with steps (1,0), (0,1), (1,1).

    Returns the path as (L, 2) index pairs from (0, 0) to (N−1, M−1). Each row of the
    accumulated cost is computed in one vectorised pass: D[i, j] = S_j + min_{k≤j}(a_k − S_k)
    with a_k = c[i, k] + min(D[i−1, k], D[i−1, k−1]) and S the running sum of c[i, ·] (S_k
    including c[i, k]), i.e. the best entry point into row i followed by horizontal steps.
    """
    c = np.asarray(cost, dtype=np.float64)
    n, m = c.shape
    d = np.full((n, m), np.inf)
    s = np.cumsum(c[0])
    d[0] = s
    for i in range(1, n):
        prev = d[i - 1]
        diag = np.concatenate([[np.inf], prev[:-1]])
        a = c[i] + np.minimum(prev, diag)
        s = np.cumsum(c[i])
        d[i] = s + np.minimum.accumulate(a - s)
    i, j = n - 1, m - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            choices = (d[i - 1, j - 1], d[i - 1, j], d[i, j - 1])
            k = int(np.argmin(choices))
            i, j = (i - 1, j - 1) if k == 0 else (i - 1, j) if k == 1 else (i, j - 1)
        path.append((i, j))
    return np.array(path[::-1])


# -- mel-cepstra and MCD --------------------------------------------------------------------------


def world_analysis(audio: np.ndarray, sr: int, cfg: DistanceConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(F0 (F,) in Hz with 0 = unvoiced, mel-cepstra (F, n_ceps + 1) c_0..c_D) of one waveform, every
    hop_ms: WORLD DIO + StoneMask + CheapTrick, then SPTK's all-pass warped mel-cepstrum (sp2mc)."""
    from rrpo.system import require

    pyworld = require("pyworld")
    cfg = cfg or DistanceConfig()
    x = resample(np.asarray(audio, dtype=np.float32), sr, cfg.sample_rate).astype(np.float64)
    if len(x) < int(0.05 * cfg.sample_rate):  # WORLD needs a few frames' worth of signal
        x = np.pad(x, (0, int(0.05 * cfg.sample_rate) - len(x)))
    f0, t = pyworld.dio(x, cfg.sample_rate, f0_floor=cfg.f0_floor, f0_ceil=cfg.f0_ceil, frame_period=cfg.hop_ms)
    f0 = pyworld.stonemask(x, f0, t, cfg.sample_rate)
    sp = pyworld.cheaptrick(x, f0, t, cfg.sample_rate)
    return f0, _sp2mc(sp, cfg.n_ceps, cfg.alpha)


def _sp2mc(sp: np.ndarray, order: int, alpha: float) -> np.ndarray:
    from rrpo.system import require

    pysptk = require("pysptk")  # (require silences the pkg_resources notice pysptk raises on import)
    return pysptk.sp2mc(np.maximum(sp, 1e-16), order, alpha)


def mel_cepstra(audio: np.ndarray, sr: int, cfg: DistanceConfig | None = None) -> np.ndarray:
    """(F, n_ceps + 1) mel-cepstra c_0..c_D of a waveform (:func:`world_analysis`)."""
    return world_analysis(audio, sr, cfg)[1]


def mcd_from_cepstra(gen: np.ndarray, ref: np.ndarray) -> tuple[float, np.ndarray]:
    """MCD (dB) between (N, 1+D) and (M, 1+D) mel-cepstra with DTW on c_1..c_D; returns (mcd, path)."""
    a, b = np.asarray(gen, dtype=np.float64)[:, 1:], np.asarray(ref, dtype=np.float64)[:, 1:]
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # (N, M) Euclidean
    path = dtw_path(cost)
    return float(MCD_CONST * cost[path[:, 0], path[:, 1]].mean()), path


def mcd_dtw(gen: np.ndarray, gen_sr: int, ref: np.ndarray, ref_sr: int, cfg: DistanceConfig | None = None) -> float:
    """Mel-cepstral distortion (dB) of a generated waveform against its parallel reference."""
    cfg = cfg or DistanceConfig()
    return mcd_from_cepstra(mel_cepstra(gen, gen_sr, cfg), mel_cepstra(ref, ref_sr, cfg))[0]


# -- F0 -------------------------------------------------------------------------------------------


def world_f0(audio: np.ndarray, sr: int, cfg: DistanceConfig | None = None) -> np.ndarray:
    """(F,) F0 in Hz (0 = unvoiced) from WORLD DIO + StoneMask every hop_ms, on the mel-cepstra grid."""
    return world_analysis(audio, sr, cfg)[0]


def f0_errors_on_path(f0_gen: np.ndarray, f0_ref: np.ndarray, path: np.ndarray) -> dict:
    """F0 RMSE (cents) over path pairs voiced in both, and the voicing-decision error rate.

    ``f0_*`` (F,) in Hz with 0 for unvoiced; ``path`` (L, 2) index pairs (gen, ref).
    RMSE is NaN when no pair is voiced in both.
    """
    g = np.asarray(f0_gen, dtype=np.float64)[np.clip(path[:, 0], 0, len(f0_gen) - 1)]
    r = np.asarray(f0_ref, dtype=np.float64)[np.clip(path[:, 1], 0, len(f0_ref) - 1)]
    vg, vr = g > 0, r > 0
    both = vg & vr
    cents = 1200 * np.log2(g[both] / r[both])
    return {
        "f0_rmse_cents": float(np.sqrt(np.mean(cents**2))) if both.any() else float("nan"),
        "voicing_error": float(np.mean(vg != vr)),
        "voiced_pairs": int(both.sum()),
    }


def reference_distances(
    gen: np.ndarray, gen_sr: int, ref: np.ndarray, ref_sr: int, cfg: DistanceConfig | None = None
) -> dict:
    """MCD (dB), F0 RMSE (cents) and voicing error of a generated waveform against its parallel reference.

    Both are aligned once by DTW on mel-cepstra; the F0 tracks share the mel-cepstra frame grid (one
    WORLD analysis per waveform).
    """
    cfg = cfg or DistanceConfig()
    fg, cg = world_analysis(gen, gen_sr, cfg)
    fr, cr = world_analysis(ref, ref_sr, cfg)
    mcd, path = mcd_from_cepstra(cg, cr)
    return {"mcd_db": mcd, **f0_errors_on_path(fg, fr, path)}


# -- Fréchet distance -----------------------------------------------------------------------------


def frechet_from_stats(
    mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray, eps: float = 1e-6
) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½); ``eps``·I is added where the product is singular."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    import warnings

    with warnings.catch_warnings():  # few vectors in many dimensions give singular covariances
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov1 @ cov2)
        if not np.isfinite(covmean).all():
            off = eps * np.eye(len(mu1))
            covmean = linalg.sqrtm((cov1 + off) @ (cov2 + off))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(max(0.0, diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean)))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of (N, D) ``a`` and (M, D) ``b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Fréchet distance needs at least two vectors in each set")
    return frechet_from_stats(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def feature_frechet(gen: np.ndarray, ref: np.ndarray) -> float:
    """Fréchet distance after z-scoring both (N, D) sets: the reference set's mean, the standard
    deviation of both sets pooled (a feature constant in both contributes nothing)."""
    ref, gen = np.asarray(ref, dtype=np.float64), np.asarray(gen, dtype=np.float64)
    mu = ref.mean(0)
    sd = np.concatenate([gen, ref]).std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return frechet_distance((gen - mu) / sd, (ref - mu) / sd)


# -- WER ------------------------------------------------------------------------------------------


def normalise_words(text: str) -> list[str]:
    """Lower-case words: Unicode NFKC, punctuation (except apostrophes inside words) becomes space.

    ``"Hello, World -- it's  me!"`` → ``["hello", "world", "it's", "me"]``.
    """
    t = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    t = re.sub(r"[^\w']+", " ", t)
    t = re.sub(r"(?<!\w)'|'(?!\w)", " ", t)
    return t.split()


def edit_ops(ref: Sequence[str], hyp: Sequence[str]) -> dict:
    """Substitutions, deletions and insertions of the Levenshtein alignment of two word lists
    (:func:`rrpo.phones.inventory.edit_ops`, which phone error rates use too)."""
    from rrpo.phones.inventory import edit_ops as ops

    s, de, ins = ops(ref, hyp)
    return {"sub": s, "del": de, "ins": ins, "n_ref": len(ref)}


def word_error_rate(refs: str | Sequence[str], hyps: str | Sequence[str]) -> dict:
    """Corpus WER = Σ(S + D + I) / Σ N_ref over pairs of (reference, hypothesis) texts.

    Accepts one pair of strings or two equal-length lists. ``wer`` is NaN if no reference words.
    """
    if isinstance(refs, str):
        refs, hyps = [refs], [hyps]
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    tot = {"sub": 0, "del": 0, "ins": 0, "n_ref": 0}
    for r, h in zip(refs, hyps):
        for k, v in edit_ops(normalise_words(r), normalise_words(h)).items():
            tot[k] += v
    errors = tot["sub"] + tot["del"] + tot["ins"]
    return {"wer": errors / tot["n_ref"] if tot["n_ref"] else float("nan"), **tot}


class PocketsphinxRecognizer:
    """English speech recognition with the acoustic model, dictionary and LM pocketsphinx 5 ships."""

    RATE = 16000

    def __init__(self):
        from rrpo.errors import RrpoError
        from rrpo.system import pocketsphinx_model, require

        root = pocketsphinx_model()
        ps = require("pocketsphinx")
        config = ps.Config()
        config["loglevel"] = "FATAL"
        try:
            self._decoder = ps.Decoder(config)
        except (RuntimeError, ValueError, OSError) as e:
            raise RrpoError(
                f"pocketsphinx cannot load its English model ({e}); pip install --force-reinstall "
                "pocketsphinx, or audit with recognizer=false",
                root,
            ) from None

    def transcribe(self, audio: np.ndarray, sr: int) -> str:
        x = resample(np.asarray(audio, dtype=np.float32), sr, self.RATE)
        pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return hyp.hypstr if hyp is not None else ""
