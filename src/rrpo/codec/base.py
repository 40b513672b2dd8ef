"""The speech-codec interface every tokenizer implements.

A codec turns audio into discrete tokens at a fixed frame rate and, where it can, back into audio.
It also reports the energy of the audio behind each token, which energy-adaptive mixup in the
reward model needs, and optionally a per-token descriptor in its own feature space, which lets a
token model tie its embeddings to where each token lies (docs/method.md §7: tokens that sound alike
then start out close together).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class SpeechCodec(Protocol):
    #: number of distinct token ids; ids are 0 .. vocab_size - 1
    vocab_size: int
    #: tokens per second of audio
    frame_rate: float
    #: sampling rate the codec reads and writes
    sampling_rate: int
    #: whether :meth:`decode` works
    can_decode: bool

    def encode(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """(T_samples,) float audio at rate ``sr`` -> (T_tokens,) int64 token ids."""
        ...

    def encode_with_energy(self, audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids (T,) int64 and the energy of the audio behind each token (T,) float32,
        as mean squared amplitude of the token's frame (linear power, not dB)."""
        ...

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """(T,) token ids -> (T_samples,) float32 audio at ``sampling_rate``. Raises RrpoError
        where the codec encodes only."""
        ...

    def token_features(self) -> np.ndarray | None:
        """(vocab_size, F) float32 descriptor of every token in the codec's feature space, or None."""
        ...


def frame_energy(audio: np.ndarray, sr: int, frame_rate: float, n_frames: int) -> np.ndarray:
    """Mean squared amplitude of each of ``n_frames`` consecutive frames of 1/frame_rate seconds.

    Frames past the end of the audio get the energy of the last (partial) frame; the result is
    (n_frames,) float32. Example: a constant 0.5 signal gives 0.25 for every frame.
    """
    hop = sr / frame_rate
    audio = np.asarray(audio, dtype=np.float64)
    out = np.empty(n_frames, dtype=np.float32)
    last = 0.0
    for i in range(n_frames):
        a, b = int(round(i * hop)), int(round((i + 1) * hop))
        seg = audio[a:min(b, len(audio))]
        if len(seg):
            last = float(np.mean(seg * seg))
        out[i] = last
    return out
