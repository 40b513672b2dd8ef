"""The speech-codec interface every tokenizer implements.

A codec turns audio into discrete tokens at a fixed frame rate and, where it can, back into audio.
It also reports the energy of the audio behind each token, which energy-adaptive mixup in the
reward model needs, and optionally a per-token descriptor in its own feature space, which lets a
token model tie its embeddings to where each token lies (docs/method.md §7: tokens that sound alike
then start out close together).

Speakers. A token sequence need not say *who* speaks: the built-in codec encodes every frame relative
to its speaker (register, level, timbre), and decoding puts a speaker back. What describes a speaker
is a *profile*, an object the codec itself builds (``profile_from_audio``) or has stored for the
speakers it was trained on (``speaker_profile``); callers pass it through unchanged:

    profile = codec.speaker_profile("spk1")                       # or
    profile = codec.profile_from_audio([(a, sr), (b, sr)], speaker="new")
    tokens = codec.encode(audio, sr, profile=profile)
    audio = codec.decode(tokens, profile=profile)

``profile=None`` means the codec's own default speaker. A codec whose *tokens* depend on the
speaker's profile says so with ``profile_in_tokens = True`` (``rrpo tokenize`` then computes one
profile per speaker of the manifest and encodes with it). A codec that cannot use a profile raises a
one-line :class:`rrpo.errors.RrpoError` when given one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

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

    def encode(self, audio: np.ndarray, sr: int, profile: Any = None) -> np.ndarray:
        """(T_samples,) float audio at rate ``sr`` -> (T_tokens,) int64 token ids, relative to
        ``profile``'s speaker where the codec encodes relative to a speaker."""
        ...

    def encode_with_energy(self, audio: np.ndarray, sr: int, profile: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Token ids (T,) int64 and the energy of the audio behind each token (T,) float32,
        as mean squared amplitude of the token's frame (linear power, not dB)."""
        ...

    def decode(self, tokens: np.ndarray, profile: Any = None) -> np.ndarray:
        """(T,) token ids -> (T_samples,) float32 audio at ``sampling_rate``, spoken as
        ``profile``'s speaker (None: the codec's default). Raises RrpoError where the codec
        encodes only."""
        ...

    def profile_from_audio(self, audios: Sequence[tuple[np.ndarray, int]], speaker: str = "") -> Any:
        """A profile of the speaker of these ``(audio, sr)`` recordings, for :meth:`encode` and
        :meth:`decode`. Raises RrpoError where the codec has no use for one."""
        ...

    def speaker_profile(self, speaker: str) -> Any:
        """The stored profile of a speaker the codec knows; RrpoError naming it otherwise."""
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
        seg = audio[a : min(b, len(audio))]
        if len(seg):
            last = float(np.mean(seg * seg))
        out[i] = last
    return out
