"""A small ctypes binding to espeak-ng, as shipped by the ``espeakng-loader`` wheel.

The wheel bundles ``libespeak-ng`` and its data folder (Mandarin included) but no executable, so
this module talks to the C API of ``speak_lib.h`` directly:

- ``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, DONT_EXIT)`` with the wheel's data;
- a synth callback that copies each chunk of 16-bit samples into a Python list;
- ``espeak_SetVoiceByName("cmn+m3")`` (a language voice plus a variant from ``voices/!v``);
- ``espeak_SetParameter`` for rate (words/min), volume, pitch (0-100) and pitch range (0-100);
- ``espeak_ng_SetRandSeed`` before each utterance, for the synthesiser's noise sources;
- ``espeak_Synth`` on UTF-8 text, which returns once the whole text is synthesised;
- ``espeak_TextToPhonemes``, to see how a text is read.

espeak-ng keeps all of its state in C globals (voice, parameters, the callback, the wave
generator), so every call goes through one process-wide lock: the functions here are safe to call
from threads, but run one utterance at a time. Some of that state survives ``espeak_Terminate``;
see :class:`_Library` for how each utterance still gets a fresh engine (same arguments, same
samples, whatever was spoken before).

What the settings do: ``rate`` is in words per minute (80-450, 175 by default; for Mandarin a
"word" is a character); ``range`` r scales the intonation excursions by ``r / 50`` (espeak-ng also
lowers the base pitch a little as the range widens, to keep the mean in place); ``pitch`` p moves
the voice's base F0, 50 being the voice's own. The source (``pitch_adjust_tab``) suggests
``2 ** ((p - 50) / 50)``; measured on the bundled 1.52 build (median F0 with range 0, two English
and two Mandarin voices) the effect is smaller, about ``2 ** (0.82 (p - 50) / 50)``, and below
p = 20 low voices break up. :func:`pitch_value` inverts the measured table :data:`PITCH_F0_RATIO`.
"""

from __future__ import annotations

import _ctypes
import ctypes
import logging
import math
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rrpo.errors import RrpoError

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
# espeak_PARAMETER
RATE, VOLUME, PITCH, RANGE = 1, 2, 3, 4

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.RLock()
_dlclose = getattr(_ctypes, "dlclose", None) or _ctypes.FreeLibrary  # POSIX / Windows
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prosody:
    """espeak-ng settings for one utterance.

    ``pitch`` and ``range`` are espeak's 0-100 scales (50 = the voice's own), ``rate`` is words per
    minute (80-450), ``volume`` espeak's amplitude in percent (0-200, 100 = normal).
    """

    rate: int = 175
    pitch: int = 50
    range: int = 50
    volume: int = 100

    def __post_init__(self):
        for name, lo, hi in (("rate", 80, 450), ("pitch", 0, 100), ("range", 0, 100), ("volume", 0, 200)):
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"espeak {name} must be an integer in [{lo}, {hi}], got {v!r}")


#: Measured F0 ratio (to p = 50) for espeak pitch settings 20, 30, ..., 100 (median F0 of a
#: sentence at range 0, mean over the voices en-us, en-us+f2, cmn, cmn+m1; espeak-ng 1.52.0).
PITCH_SETTINGS: tuple[int, ...] = (20, 30, 40, 50, 60, 70, 80, 90, 100)
PITCH_F0_RATIO: tuple[float, ...] = (0.728, 0.808, 0.894, 1.0, 1.117, 1.254, 1.409, 1.589, 1.768)


def pitch_value(factor: float) -> int:
    """The espeak pitch setting (20-100) that scales the voice's base F0 by ``factor``.

    Interpolates :data:`PITCH_F0_RATIO` in log F0; factors outside 0.73-1.77 are clamped.
    """
    x = float(np.interp(math.log(max(factor, 1e-6)), np.log(PITCH_F0_RATIO), PITCH_SETTINGS))
    return int(round(x))


def range_value(factor: float) -> int:
    """The espeak range setting (0-100) that scales the pitch excursions by ``factor`` (0-2)."""
    return int(round(min(100.0, max(0.0, 50.0 * factor))))


class _Library:
    """A private copy of ``libespeak-ng``, loaded fresh for every utterance.

    espeak-ng keeps synthesis state in C statics that neither ``espeak_Terminate`` nor a voice
    change resets (such as the pitch-flutter phase ``Flutter_ix`` in ``wavegen.c``), so the same
    call gives slightly different samples depending on what was spoken before. To make each
    utterance depend on its own arguments only, the library is ``dlopen``-ed, initialised, used for
    one utterance, terminated and ``dlclose``-d. It is a copy in a private temporary folder, so that
    another user of the wheel's library in this process (a phonemiser, say) neither shares nor pins
    its state. Loading costs about 10 ms.
    """

    def __init__(self):
        from rrpo.system import espeak_data_dir, require

        espeakng_loader = require("espeakng_loader")
        src = Path(espeakng_loader.get_library_path())
        self.data_path = str(espeak_data_dir(espeakng_loader.get_data_path()))
        if not src.exists():
            raise RrpoError(
                "the espeak-ng library is missing from the espeakng-loader package; reinstall it: "
                "pip install --force-reinstall espeakng-loader",
                src,
            )
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._on_samples)  # keep a reference: C holds the pointer
        self._tmp = tempfile.TemporaryDirectory(prefix="rrpo-espeak-")
        self.path = Path(self._tmp.name) / src.name
        shutil.copyfile(src, self.path)
        try:
            lib = self._open()
        except RrpoError:
            # e.g. a temporary folder mounted noexec: use the wheel's own file (still reloaded per
            # utterance; only another user of that file in this process could then share state)
            log.warning("cannot load a private copy of espeak-ng from %s; using %s", self.path, src)
            self.path = src
            lib = self._open()
        try:
            self.sample_rate = int(self._init(lib))
            self.version = lib.espeak_Info(None).decode()
        finally:
            self._close(lib)

    def _open(self):
        try:
            lib = ctypes.CDLL(str(self.path))
        except OSError as e:
            raise RrpoError(f"cannot load the espeak-ng library ({e})", self.path) from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_Terminate.argtypes = []
        lib.espeak_Terminate.restype = ctypes.c_int
        return lib

    def _init(self, lib) -> int:
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise RrpoError(f"espeak-ng failed to initialise (status {rate})", self.data_path)
        lib.espeak_SetSynthCallback(self._callback)
        return rate

    @staticmethod
    def _close(lib) -> None:
        lib.espeak_Terminate()
        _dlclose(lib._handle)

    def _on_samples(self, wav, n, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = continue synthesis

    @staticmethod
    def _set_voice(lib, voice: str) -> None:
        if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise RrpoError(
                f"espeak-ng has no voice '{voice}' (a language such as 'cmn' or 'en-us', "
                f"optionally with a variant such as '+m3')"
            )

    def synth(self, text: str, voice: str, prosody: Prosody, seed: int) -> np.ndarray:
        lib = self._open()
        try:
            self._init(lib)
            self._set_voice(lib, voice)
            for param, value in (
                (RATE, prosody.rate),
                (VOLUME, prosody.volume),
                (PITCH, prosody.pitch),
                (RANGE, prosody.range),
            ):
                if lib.espeak_SetParameter(param, value, 0) != _EE_OK:
                    raise RuntimeError(f"espeak_SetParameter({param}, {value}) failed")
            lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
            data = text.encode("utf-8") + b"\0"
            buf = ctypes.create_string_buffer(data, len(data))
            self._chunks = []
            status = lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if status != _EE_OK:
                raise RuntimeError(f"espeak_Synth failed with status {status}")
            chunks, self._chunks = self._chunks, []
        finally:
            self._close(lib)
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    def phonemes(self, text: str, voice: str, separator: str = "") -> str:
        # phonememode: bits 8-23 hold a character put between the phonemes of a word
        mode = (ord(separator) << 8) if separator else 0
        lib = self._open()
        try:
            self._init(lib)
            self._set_voice(lib, voice)
            buf = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
            ptr = ctypes.c_void_p(ctypes.addressof(buf))
            out = []
            while ptr.value:  # one clause per call; the pointer advances, NULL at the end
                res = lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, mode)
                if res:
                    out.append(res.decode("utf-8", "replace").strip())
        finally:
            self._close(lib)
        return " ".join(o for o in out if o)


_library: _Library | None = None


def _get() -> _Library:
    global _library
    with _lock:
        if _library is None:
            _library = _Library()
        return _library


def sample_rate() -> int:
    """The rate espeak-ng synthesises at (22050 Hz for the bundled data)."""
    return _get().sample_rate


def version() -> str:
    """espeak-ng's version string, e.g. ``'1.52.0'``."""
    return _get().version


def phonemes(text: str, voice: str, separator: str = "") -> str:
    """espeak-ng's phoneme transcription of ``text`` in its ASCII phoneme names, words separated by
    spaces; with ``separator`` (one character, e.g. ``"|"``) also between the phonemes of a word."""
    if len(separator) > 1:
        raise ValueError("separator must be one character")
    with _lock:
        return _get().phonemes(text, voice, separator)


def synthesize(text: str, voice: str, prosody: Prosody = Prosody(), seed: int = 0) -> tuple[np.ndarray, int]:
    """Speak ``text`` with ``voice`` (e.g. ``"cmn+f2"``, ``"en-us+m3"``).

    Returns ``(samples, rate)``: int16 samples ``(T,)`` at espeak's own rate. The same arguments
    give the same samples. Thread-safe (serialised by a process-wide lock).
    """
    if not text.strip():
        raise ValueError("nothing to say: empty text")
    with _lock:
        return _get().synth(text, voice, prosody, seed), _get().sample_rate
