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
``cosyvoice`` package provides (FunAudioLLM/CosyVoice with its ``third_party/Matcha-TTS``, or
``cosyvoice-minicpmo`` from the package index, with the ``rrpo[cosyvoice]`` extra: README), and the
model directory's ``cosyvoice2.yaml``, ``flow.pt``, ``hift.pt`` and ``campplus.onnx``. The decoder
is upstream's ``CosyVoice2Model`` over the yaml's ``flow`` and ``hift``, built as upstream's
``CosyVoice2`` class builds them but without the LLM and the text frontend (decoding uses neither;
they would load the 0.5B Qwen weights and import openai-whisper and modelscope). Every missing piece
is a one-line error naming it (:meth:`CosyVoice2Tokenizer.decode_problem`).

The voice comes from a *profile* (:class:`CosyVoice2Profile`), what CosyVoice's zero-shot
frontend extracts from a prompt recording of the target speaker, built here without the package:

* ``embedding`` (192,): CAM++ (``campplus.onnx``, onnxruntime) on the 80-bin Kaldi fbank of the
  16 kHz audio (25 ms Povey windows every 10 ms, pre-emphasis 0.97, DC removed, no dither, power
  spectrum of a 512-point FFT, mel bins 20 Hz - 8 kHz, natural log), mean-subtracted over time;
  with several recordings, the mean of their embeddings;
* ``prompt_token`` (T,): the S3 tokens of the first recording (this tokenizer);
* ``prompt_feat`` (2T, 80): the flow model's 80-bin log-mel of that recording at 24 kHz (Matcha's
  ``mel_spectrogram``: 1920-point periodic-Hann STFT, hop 480, reflect padding of 720 without
  centring, magnitude ``sqrt(re² + im² + 1e-9)``, Slaney mel 0-8 kHz, ``log(max(x, 1e-5))``),
  cut with the tokens to exactly two frames per token, as CosyVoice does.

``decode(ids, profile)`` calls ``CosyVoice2Model.token2wav`` once, non-streaming: with
``token_offset=0``, ``finalize=True``, a session id registered in ``hift_cache_dict`` for the call
and removed after, and ``stream=False`` where the signature has it. The signature is read with
:func:`inspect.signature`: the current upstream (ace7c47) is ``token2wav(token, prompt_token,
prompt_feat, embedding, token_offset, uuid, stream=False, finalize=False, speed=1.0)``, the
release-era one (77d8cf13) ``token2wav(token, prompt_token, prompt_feat, embedding, uuid,
token_offset, finalize=False, speed=1.0)``; both are called by keyword. The 24 kHz output is
resampled to 16 kHz (``sampling_rate``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
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
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    spec = np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2  # (frames, 201)
    spec = spec[:-1]  # Whisper drops the last frame
    mel = librosa.filters.mel(sr=SAMPLING_RATE, n_fft=N_FFT, n_mels=n_mels)  # (n_mels, 201), Slaney
    log_spec = np.log10(np.maximum(mel @ spec.T, 1e-10))  # (n_mels, frames)
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


FLOW_SR, FLOW_N_FFT, FLOW_HOP, FLOW_MELS, FLOW_FMAX = 24000, 1920, 480, 80, 8000.0
SPK_DIM = 192
DECODE_FILES = ("cosyvoice2.yaml", "flow.pt", "hift.pt", "campplus.onnx")


def _kaldi_mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def kaldi_fbank(audio: np.ndarray, sr: int = SAMPLING_RATE, n_mels: int = 80) -> np.ndarray:
    """(T,) float audio (in [-1, 1]) -> (frames, n_mels) float32 Kaldi log-mel filterbank, with
    Kaldi's defaults as ``torchaudio.compliance.kaldi.fbank(x, num_mel_bins=80, dither=0)`` uses
    them: 25 ms frames every 10 ms without edge padding (``1 + (T - 400) // 160`` frames at 16 kHz),
    DC removed, pre-emphasis 0.97 (first sample against itself), Povey window
    ``(0.5 - 0.5 cos(2πn/(N-1)))^0.85``, zero-padded to 512, power spectrum, triangular mel filters
    equally spaced on ``1127 ln(1 + f/700)`` from 20 Hz to Nyquist, ``log(max(x, 1.19e-7))``."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    flen, shift = int(round(sr * 0.025)), int(round(sr * 0.010))
    if len(x) < flen:
        raise RrpoError(f"audio is {len(x)} samples, shorter than one 25 ms fbank frame")
    n = 1 + (len(x) - flen) // shift
    frames = x[np.arange(flen)[None, :] + shift * np.arange(n)[:, None]]
    frames = frames - frames.mean(1, keepdims=True)
    frames = frames - 0.97 * np.concatenate([frames[:, :1], frames[:, :-1]], 1)
    k = np.arange(flen)
    frames = frames * (0.5 - 0.5 * np.cos(2 * np.pi * k / (flen - 1))) ** 0.85
    n_fft = 1 << (flen - 1).bit_length()
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2  # (n, n_fft/2 + 1)
    lo, hi = _kaldi_mel(20.0), _kaldi_mel(sr / 2)
    delta = (hi - lo) / (n_mels + 1)
    m = _kaldi_mel(np.arange(n_fft // 2) * sr / n_fft)[None]  # (1, n_fft/2)
    left = lo + delta * np.arange(n_mels)[:, None]
    up, down = (m - left) / delta, (left + 2 * delta - m) / delta
    banks = np.maximum(0.0, np.minimum(up, down))  # (n_mels, n_fft/2)
    mel = power[:, : n_fft // 2] @ banks.T
    return np.log(np.maximum(mel, np.finfo(np.float32).eps)).astype(np.float32)


def flow_log_mel(audio_24k: np.ndarray) -> np.ndarray:
    """(T,) float audio at 24 kHz -> (frames, 80) float32, the flow model's prompt features
    (Matcha's ``mel_spectrogram`` with CosyVoice2's settings; see the module docstring):
    ``1 + (T + 1440 - 1920) // 480`` frames, 50 per second."""
    import librosa

    x = np.asarray(audio_24k, dtype=np.float64).reshape(-1)
    pad = (FLOW_N_FFT - FLOW_HOP) // 2
    if len(x) <= pad:
        raise RrpoError(f"audio is {len(x)} samples at 24 kHz, too short for a prompt")
    x = np.pad(x, (pad, pad), mode="reflect")
    n = 1 + (len(x) - FLOW_N_FFT) // FLOW_HOP
    idx = np.arange(FLOW_N_FFT)[None, :] + FLOW_HOP * np.arange(n)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FLOW_N_FFT) / FLOW_N_FFT)
    spec = np.fft.rfft(x[idx] * window, axis=1)
    mag = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    basis = librosa.filters.mel(sr=FLOW_SR, n_fft=FLOW_N_FFT, n_mels=FLOW_MELS, fmin=0.0, fmax=FLOW_FMAX)
    return np.log(np.maximum(mag @ basis.T, 1e-5)).astype(np.float32)


@dataclass
class CosyVoice2Profile:
    """What CosyVoice2's flow decoder needs to speak as a speaker (see the module docstring)."""

    speaker: str
    embedding: np.ndarray  # (192,) float32, CAM++
    prompt_token: np.ndarray  # (T,) int64, S3 tokens of the prompt recording
    prompt_feat: np.ndarray  # (2T, 80) float32, 24 kHz log-mel of the same
    sources: list = field(default_factory=list)


class CosyVoice2Tokenizer:
    """``SpeechCodec`` over a user's ``speech_tokenizer_v2.onnx``."""

    vocab_size = VOCAB_SIZE
    frame_rate = FRAME_RATE
    sampling_rate = SAMPLING_RATE
    #: decoding needs a speaker profile (a reference recording); there is no default voice
    needs_profile = True
    #: takes profiles (built from reference recordings; none stored: ``profiles`` stays empty)
    uses_profiles = True
    profiles: dict = {}

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
        got = (
            ", ".join(f"{i.name}{list(i.shape)}:{i.type}" for i in ins)
            + " -> "
            + ", ".join(f"{o.name}{list(o.shape)}:{o.type}" for o in outs)
        )
        want = "feats(1, 128, T):float, feats_length(1,):int32 -> indices(1, T'):int"
        ok = len(ins) == 2 and len(outs) >= 1
        if ok:
            f, fl = ins
            ok = (
                f.name == "feats"
                and f.type == "tensor(float)"
                and len(f.shape) == 3
                and (not isinstance(f.shape[1], int) or f.shape[1] == N_MELS)
                and fl.name == "feats_length"
                and fl.type == "tensor(int32)"
                and len(fl.shape) == 1
                and outs[0].type in ("tensor(int32)", "tensor(int64)")
            )
        if not ok:
            raise RrpoError(f"not a CosyVoice2 speech tokenizer: signature {got}, expected {want}", self.onnx_path)

    @property
    def can_decode(self) -> bool:
        return self.decode_problem() is None

    def decode_problem(self) -> str | None:
        """None where decoding can be tried; else one line naming the first missing piece."""
        d = self.onnx_path.parent
        for f in DECODE_FILES:
            if not (d / f).exists():
                return f"decoding needs {f} in {d}"
        if not _cosyvoice_available():
            return "decoding needs the `cosyvoice` package (FunAudioLLM/CosyVoice, with third_party/Matcha-TTS)"
        return None

    def encode_with_energy(self, audio: np.ndarray, sr: int, profile=None) -> tuple[np.ndarray, np.ndarray]:
        # CosyVoice2's tokens do not depend on the speaker's profile: ``profile`` is accepted and unused
        from rrpo.data.audio import resample

        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise RrpoError(f"expected mono audio of shape (T,), got {audio.shape}")
        if sr != SAMPLING_RATE:
            audio = resample(audio, sr, SAMPLING_RATE)
        if len(audio) < SAMPLING_RATE / FRAME_RATE:
            raise RrpoError(
                f"audio is {len(audio)} samples ({1000 * len(audio) / SAMPLING_RATE:.1f} ms), "
                f"shorter than one token frame (40 ms)"
            )
        if len(audio) / SAMPLING_RATE > MAX_SECONDS:
            raise RrpoError(f"audio is {len(audio) / SAMPLING_RATE:.1f} s; the CosyVoice2 tokenizer takes at most 30 s")
        feats = whisper_log_mel(audio)[None]  # (1, 128, T_mel)
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

    def profile_from_audio(self, audios, speaker: str = "") -> CosyVoice2Profile:
        """A :class:`CosyVoice2Profile` from ``[(audio, sr), ...]`` recordings of one speaker: CAM++
        embedding (mean over the recordings), prompt tokens and prompt features of the first."""
        from rrpo.data.audio import resample

        audios = list(audios)
        if not audios:
            raise RrpoError("no reference recording to build a CosyVoice2 speaker profile from")
        embs = [self.speaker_embedding(a, sr) for a, sr in audios]
        a, sr = audios[0]
        a = np.asarray(a, dtype=np.float32).reshape(-1)
        tokens = self.encode(a, sr)
        feat = flow_log_mel(resample(a, sr, FLOW_SR))
        n = min(len(feat) // 2, len(tokens))  # two 24 kHz mel frames per token, as CosyVoice cuts
        if n == 0:
            raise RrpoError("the reference recording is too short for a CosyVoice2 prompt")
        return CosyVoice2Profile(
            speaker,
            np.mean(embs, 0).astype(np.float32),
            tokens[:n].astype(np.int64),
            feat[: 2 * n],
            [len(x) / s for x, s in audios],
        )

    def speaker_profile(self, speaker: str):
        raise RrpoError(
            f"the CosyVoice2 adapter stores no speaker profiles (speaker '{speaker}'); build one "
            "from a reference recording (profile_from_audio; `policy generate reference=[WAV]`)",
            self.onnx_path,
        )

    def speaker_embedding(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """(192,) CAM++ embedding of a recording: ``campplus.onnx`` on its mean-subtracted fbank."""
        from rrpo.data.audio import resample

        x = resample(np.asarray(audio, dtype=np.float32).reshape(-1), sr, SAMPLING_RATE)
        feat = kaldi_fbank(x)
        feat = feat - feat.mean(0, keepdims=True)
        sess = self._campplus()
        try:
            out = sess.run(None, {sess.get_inputs()[0].name: feat[None].astype(np.float32)})[0]
        except Exception as e:
            raise RrpoError(
                f"campplus.onnx failed on this input ({str(e).strip()[:120]})", self.onnx_path.parent / "campplus.onnx"
            ) from None
        emb = np.asarray(out, dtype=np.float32).reshape(-1)
        if emb.shape != (SPK_DIM,):
            raise RrpoError(
                f"campplus.onnx returned {emb.size} values, expected a {SPK_DIM}-dim embedding",
                self.onnx_path.parent / "campplus.onnx",
            )
        return emb

    def _campplus(self):
        if getattr(self, "_campplus_session", None) is None:
            import onnxruntime as ort

            path = self.onnx_path.parent / "campplus.onnx"
            if not path.exists():
                raise RrpoError("speaker embeddings need CAM++ (campplus.onnx) beside the tokenizer", path)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.log_severity_level = 3
            try:
                self._campplus_session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            except Exception as e:
                msg = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
                raise RrpoError(f"not a loadable ONNX model ({msg})", path) from None
        return self._campplus_session

    def decode(self, tokens: np.ndarray, profile: CosyVoice2Profile | None = None) -> np.ndarray:
        """Tokens -> 16 kHz audio in ``profile``'s voice, through the ``cosyvoice`` package."""
        t = np.asarray(tokens).astype(np.int64).reshape(-1)
        if len(t) == 0:
            raise RrpoError("no tokens to decode")
        bad = (t < 0) | (t >= VOCAB_SIZE)
        if bad.any():
            i = int(np.argmax(bad))
            raise RrpoError(f"token id {int(t[i])} at position {i} is out of range [0, {VOCAB_SIZE})")
        problem = self.decode_problem()
        if problem is not None:
            raise RrpoError(f"this CosyVoice2 codec encodes only: {problem}", self.onnx_path)
        if profile is None:
            raise RrpoError(
                "CosyVoice2 speaks in the voice of a reference recording: give a speaker profile "
                "(codec.profile_from_audio; `policy generate reference=[WAV]`)",
                self.onnx_path,
            )
        if not isinstance(profile, CosyVoice2Profile):
            raise RrpoError(f"not a CosyVoice2 speaker profile ({type(profile).__name__})", self.onnx_path)
        return self._cosyvoice_decode(t, profile)

    def _load_decoder(self):
        """Upstream's ``CosyVoice2Model`` over the flow and vocoder of ``cosyvoice2.yaml``, built as
        ``cosyvoice.cli.cosyvoice.CosyVoice2`` builds them (hyperpyyaml, ``qwen_pretrain_path`` =
        ``CosyVoice-BlankEN``) but without the LLM and the text frontend, which decoding does not use
        (and which need the 0.5B Qwen weights, openai-whisper and modelscope). ``flow.pt`` and
        ``hift.pt`` load as upstream's ``CosyVoiceModel.load`` loads them: strictly, the vocoder's
        ``generator.`` prefix removed."""
        if self._decoder is None:
            d = self.onnx_path.parent
            try:
                import pydoc

                import torch
                from cosyvoice.cli.model import CosyVoice2Model
                from hyperpyyaml import load_hyperpyyaml

                overrides = {"qwen_pretrain_path": str(d / "CosyVoice-BlankEN"), "llm": None, "get_tokenizer": None}
                try:
                    # upstream's modules warn about deprecated diffusers and torch APIs on import and use
                    with open(d / "cosyvoice2.yaml", encoding="utf-8") as f, warnings.catch_warnings():
                        warnings.simplefilter("ignore", FutureWarning)
                        configs = load_hyperpyyaml(f, overrides=overrides)
                except pydoc.ErrorDuringImport as e:  # a class of the yaml whose module does not import
                    raise e.value from None
                model = CosyVoice2Model(None, configs["flow"], configs["hift"], False)
                flow = torch.load(d / "flow.pt", map_location="cpu", weights_only=True)
                model.flow.load_state_dict(flow, strict=True)
                hift = torch.load(d / "hift.pt", map_location="cpu", weights_only=True)
                model.hift.load_state_dict({k.replace("generator.", ""): v for k, v in hift.items()}, strict=True)
                model.flow.to(model.device).eval()
                model.hift.to(model.device).eval()
                self._decoder = _Decoder(model, int(configs.get("sample_rate", FLOW_SR)))
            except ModuleNotFoundError as e:
                name = (e.name or str(e)).split(".")[0]
                hint = " (CosyVoice's third_party/Matcha-TTS on PYTHONPATH)" if name == "matcha" else ""
                raise RrpoError(f"decoding needs the `{name}` package{hint}", d) from None
            except Exception as e:
                msg = " ".join(str(e).split())[:160] or type(e).__name__
                raise RrpoError(f"cosyvoice could not load this model directory ({msg})", d) from None
        return self._decoder

    def _cosyvoice_decode(self, t: np.ndarray, profile: CosyVoice2Profile) -> np.ndarray:
        import inspect
        import uuid as uuidlib

        import torch

        cv = self._load_decoder()
        model = cv.model
        params = inspect.signature(model.token2wav).parameters
        if "token_offset" not in params or "uuid" not in params:
            raise RrpoError(f"unknown cosyvoice token2wav signature ({', '.join(params)})", self.onnx_path.parent)
        kw = dict(
            token=torch.tensor(t[None], dtype=torch.int32),
            prompt_token=torch.tensor(profile.prompt_token[None], dtype=torch.int32),
            prompt_feat=torch.tensor(profile.prompt_feat[None], dtype=torch.float32),
            embedding=torch.tensor(profile.embedding[None], dtype=torch.float32),
            token_offset=0,
            finalize=True,
        )
        if "stream" in params:  # current upstream (ace7c47); absent in the release era (77d8cf13)
            kw["stream"] = False
        session = f"rrpo-{uuidlib.uuid4().hex}"
        model.hift_cache_dict[session] = None
        kw["uuid"] = session
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # upstream's torch.cuda.amp.autocast
                speech = model.token2wav(**kw)
        except Exception as e:
            raise RrpoError(f"cosyvoice token2wav failed ({' '.join(str(e).split())[:120]})", self.onnx_path) from None
        finally:
            model.hift_cache_dict.pop(session, None)
        y = speech.reshape(-1).float().cpu().numpy()
        sr = int(getattr(cv, "sample_rate", FLOW_SR))
        if sr != SAMPLING_RATE:
            from rrpo.data.audio import resample

            y = resample(y, sr, SAMPLING_RATE)
        return y.astype(np.float32)

    def token_features(self) -> None:
        return None

    def describe(self) -> dict:
        return {
            "kind": KIND,
            "version": VERSION,
            "vocab_size": VOCAB_SIZE,
            "frame_rate": FRAME_RATE,
            "onnx": self.onnx_path.name,
            "onnx_bytes": self.onnx_path.stat().st_size,
        }


@dataclass
class _Decoder:
    """Upstream's ``CosyVoice2Model`` (flow + HiFT) and its output rate."""

    model: object
    sample_rate: int


def _cosyvoice_available() -> bool:
    import importlib.util
    import sys

    if "cosyvoice" in sys.modules:
        return sys.modules["cosyvoice"] is not None
    try:
        return importlib.util.find_spec("cosyvoice") is not None
    except (ImportError, ValueError):
        return False
