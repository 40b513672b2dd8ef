"""Utterance-level acoustic features for the audit: eGeMAPS functionals from openSMILE.

eGeMAPS v02 (Eyben et al., 2016) is a fixed set of 88 functionals (means, percentiles, slopes of
pitch, loudness, spectral slope, formants, jitter, shimmer, voiced/unvoiced segment lengths). It is
a knowledge-based feature set, unrelated to the codec tokens the reward model reads, which is why
the independent judge and the Fréchet distance use it. openSMILE ships its configs inside the
``opensmile`` package: nothing is downloaded.

Every waveform is resampled to :data:`FEATURE_RATE` first so that features of corpora and of
generated speech at other rates are comparable.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rrpo.data.audio import resample

#: Rate every waveform is brought to before feature extraction.
FEATURE_RATE = 16000
#: Number of eGeMAPS v02 functionals.
EGEMAPS_DIM = 88
#: Shorter input is zero-padded (symmetrically) to this many seconds: openSMILE's functionals
#: need a few analysis frames, and an empty result would break the (N, 88) contract.
MIN_SECONDS = 0.25

_SMILE = None


def _smile():
    global _SMILE
    if _SMILE is None:
        from rrpo.system import require

        opensmile = require("opensmile")
        _SMILE = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                 feature_level=opensmile.FeatureLevel.Functionals)
    return _SMILE


def egemaps_feature_names() -> list[str]:
    """The 88 eGeMAPS v02 functional names, in column order."""
    return list(_smile().feature_names)


def egemaps_functionals(items: Sequence[tuple[np.ndarray, int]], progress: bool = False) -> np.ndarray:
    """eGeMAPS v02 functionals of each ``(audio (T,), sampling_rate)``: returns ``(N, 88)`` float64.

    Non-finite values (openSMILE reports NaN for a few functionals of unvoiced input) become 0.
    ``progress`` shows a progress bar (about 20 utterances per second on one CPU core).
    """
    smile = _smile()
    out = np.zeros((len(items), EGEMAPS_DIM), dtype=np.float64)
    it = enumerate(items)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(items), desc="eGeMAPS", unit="utt", leave=False)
    for i, (audio, sr) in it:
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        x = resample(x, int(sr), FEATURE_RATE)
        need = int(MIN_SECONDS * FEATURE_RATE)
        if len(x) < need:
            pad = need - len(x)
            x = np.pad(x, (pad // 2, pad - pad // 2))
        feats = smile.process_signal(x, FEATURE_RATE).to_numpy().reshape(-1)  # (88,)
        out[i] = np.nan_to_num(feats.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return out
