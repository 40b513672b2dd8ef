"""Adapter for CosyVoice2's S3 speech tokenizer (``speech_tokenizer_v2.onnx``; 25 Hz, 6,561 tokens).

The ONNX graph takes a Whisper-style log-mel spectrogram and returns token ids:

* input ``feats``: float32 ``(1, 128, T_mel)``, 128-bin log-mel at 100 frames/s of 16 kHz audio;
* input ``feats_length``: int32 ``(1,)``, ``T_mel``;
* output ``indices``: integer ``(1, T_tok)`` (some exports ``(1, 1, T_tok)``), ``T_tok ≈ T_mel / 4``.

The mel recipe is Whisper's ``log_mel_spectrogram(audio, n_mels=128)``: 400-point STFT with a
periodic Hann window, hop 160, centred (reflect padding), the last frame dropped; power spectrum;
Slaney-normalised mel filters (``librosa.filters.mel(sr=16000, n_fft=400, n_mels=128)``);
``log10(max(x, 1e-10))``, floored at (max - 8), then ``(x + 4) / 4``. CosyVoice refuses audio
longer than 30 s for this tokenizer; so does this adapter.

Decoding tokens to audio needs CosyVoice2's flow-matching model and HiFT vocoder, which only the
``cosyvoice`` package provides; without it (or without ``flow.pt``/``hift.pt`` beside the ONNX
file) ``can_decode`` is False and :meth:`CosyVoice2Tokenizer.decode` raises.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rrpo.codec.base import frame_energy
from rrpo.errors import RrpoError

KIND = "cosyvoice2"
VERSION = 1
SAMPLING_RATE = 16000
FRAME_RATE = 25.0
VOCAB_SIZE = 6561
N_MELS = 128
N_FFT = 400
HOP = 160
MAX_SECONDS = 30.0
INPUTS = (("feats", "float", 3), ("feats_length", "int32", 1))
OUTPUT = "indices"


def whisper_log_mel(audio: np.ndarray, n_mels: int = N_MELS) -> np.ndarray:
    """(T,) float audio at 16 kHz -> (n_mels, T // 160) float32 Whisper log-mel."""
    import librosa

    x = np.asarray(audio, dtype=np.float64)
    pad = N_FFT // 2
    if len(x) <= pad:
        raise RrpoError(f"audio is {len(x)} samples, too short for one 25 ms mel frame")
    x = np.pad(x, (pad, pad), mode="reflect")
    n_frames = 1 + (len(x) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n_frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)          # periodic Hann
    spec = np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2                     # (frames, 201)
    spec = spec[:-1]                                                             # Whisper drops the last frame
    mel = librosa.filters.mel(sr=SAMPLING_RATE, n_fft=N_FFT, n_mels=n_mels)    # (n_mels, 201), Slaney
    log_spec = np.log10(np.maximum(mel @ spec.T, 1e-10))                         # (n_mels, frames)
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


class CosyVoice2Tokenizer:
    """``SpeechCodec`` over a user's ``speech_tokenizer_v2.onnx``."""

    vocab_size = VOCAB_SIZE
    frame_rate = FRAME_RATE
    sampling_rate = SAMPLING_RATE

    def __init__(self, onnx_path: str | os.PathLike):
        import onnxruntime as ort

        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise RrpoError("CosyVoice2 tokenizer not found (expected speech_tokenizer_v2.onnx)", self.onnx_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            msg = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
            raise RrpoError(f"not a loadable ONNX model ({msg})", self.onnx_path) from None
        self._check_signature()
        self._decoder = None

    def _check_signature(self) -> None:
        ins = self.session.get_inputs()
        outs = self.session.get_outputs()
        got = ", ".join(f"{i.name}{list(i.shape)}:{i.type}" for i in ins) + " -> " + \
            ", ".join(f"{o.name}{list(o.shape)}:{o.type}" for o in outs)
        want = "feats(1, 128, T):float, feats_length(1,):int32 -> indices(1, T'):int"
        ok = len(ins) == 2 and len(outs) >= 1
        if ok:
            f, fl = ins
            ok = (f.name == "feats" and f.type == "tensor(float)" and len(f.shape) == 3
                  and (not isinstance(f.shape[1], int) or f.shape[1] == N_MELS)
                  and fl.name == "feats_length" and fl.type == "tensor(int32)" and len(fl.shape) == 1
                  and outs[0].type in ("tensor(int32)", "tensor(int64)"))
        if not ok:
            raise RrpoError(f"not a CosyVoice2 speech tokenizer: signature {got}, expected {want}",
                            self.onnx_path)

    @property
    def can_decode(self) -> bool:
        return _cosyvoice_available() and all((self.onnx_path.parent / f).exists() for f in ("flow.pt", "hift.pt"))

    def encode_with_energy(self, audio: np.ndarray, sr: int, profile=None) -> tuple[np.ndarray, np.ndarray]:
        # CosyVoice2's tokens do not depend on the speaker's profile: ``profile`` is accepted and unused
        from rrpo.data.audio import resample

        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise RrpoError(f"expected mono audio of shape (T,), got {audio.shape}")
        if sr != SAMPLING_RATE:
            audio = resample(audio, sr, SAMPLING_RATE)
        if len(audio) < SAMPLING_RATE / FRAME_RATE:
            raise RrpoError(f"audio is {len(audio)} samples ({1000 * len(audio) / SAMPLING_RATE:.1f} ms), "
                            f"shorter than one token frame (40 ms)")
        if len(audio) / SAMPLING_RATE > MAX_SECONDS:
            raise RrpoError(f"audio is {len(audio) / SAMPLING_RATE:.1f} s; the CosyVoice2 tokenizer takes at most 30 s")
        feats = whisper_log_mel(audio)[None]                                           # (1, 128, T_mel)
        try:
            out = self.session.run(None, {"feats": feats, "feats_length": np.array([feats.shape[2]], np.int32)})[0]
        except Exception as e:
            raise RrpoError(f"the tokenizer failed on this input ({str(e).strip()[:120]})", self.onnx_path) from None
        tokens = np.asarray(out).reshape(-1).astype(np.int64)
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= VOCAB_SIZE):
            raise RrpoError(f"the tokenizer returned ids outside [0, {VOCAB_SIZE})", self.onnx_path)
        return tokens, frame_energy(audio, SAMPLING_RATE, FRAME_RATE, len(tokens))

    def encode(self, audio: np.ndarray, sr: int, profile=None) -> np.ndarray:
        return self.encode_with_energy(audio, sr)[0]

    def profile_from_audio(self, audios, speaker: str = ""):
        # CosyVoice2's equivalent of a profile is a prompt recording and its speaker embedding
        raise RrpoError("the CosyVoice2 adapter cannot build a speaker profile from reference audio yet",
                        self.onnx_path)

    def speaker_profile(self, speaker: str):
        raise RrpoError(f"the CosyVoice2 adapter stores no speaker profiles (speaker '{speaker}')", self.onnx_path)

    def decode(self, tokens: np.ndarray, profile=None) -> np.ndarray:
        t = np.asarray(tokens).astype(np.int64).reshape(-1)
        if len(t) == 0:
            raise RrpoError("no tokens to decode")
        bad = (t < 0) | (t >= VOCAB_SIZE)
        if bad.any():
            i = int(np.argmax(bad))
            raise RrpoError(f"token id {int(t[i])} at position {i} is out of range [0, {VOCAB_SIZE})")
        if profile is not None:
            raise RrpoError("the CosyVoice2 adapter cannot decode with a speaker profile yet", self.onnx_path)
        if not self.can_decode:
            raise RrpoError("this CosyVoice2 codec encodes only: decoding needs the `cosyvoice` package and "
                            "flow.pt + hift.pt beside the tokenizer", self.onnx_path)
        return self._cosyvoice_decode(t)

    def _cosyvoice_decode(self, t: np.ndarray) -> np.ndarray:  # pragma: no cover - needs cosyvoice
        import torch

        if self._decoder is None:
            from cosyvoice.cli.cosyvoice import CosyVoice2

            self._decoder = CosyVoice2(str(self.onnx_path.parent))
        model = self._decoder.model
        try:
            speech = model.token2wav(token=torch.tensor(t[None], dtype=torch.int32),
                                     prompt_token=torch.zeros(1, 0, dtype=torch.int32),
                                     prompt_feat=torch.zeros(1, 0, 80), embedding=torch.zeros(1, 192),
                                     uuid="rrpo", finalize=True)
        except Exception as e:
            raise RrpoError(f"cosyvoice token2wav failed ({str(e)[:120]})", self.onnx_path) from None
        y = speech.reshape(-1).float().cpu().numpy()
        sr = int(getattr(self._decoder, "sample_rate", 24000))
        if sr != SAMPLING_RATE:
            from rrpo.data.audio import resample

            y = resample(y, sr, SAMPLING_RATE)
        return y.astype(np.float32)

    def token_features(self) -> None:
        return None

    def describe(self) -> dict:
        return {"kind": KIND, "version": VERSION, "vocab_size": VOCAB_SIZE, "frame_rate": FRAME_RATE,
                "onnx": self.onnx_path.name, "onnx_bytes": self.onnx_path.stat().st_size}


def _cosyvoice_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("cosyvoice") is not None
