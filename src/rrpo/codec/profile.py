"""Speaker profiles of the built-in codec: what tokens leave out about a speaker.

A profile holds a speaker's median F0 (in semitones re 1 Hz), level reference (the median over the
speaker's recordings of each recording's ``level_percentile`` frame level, in dB), and mean
level-removed log spectral envelope (on the codec's mel bands, used to normalise the clustering
features, and on the synthesis grid, used to put the timbre back when decoding). With
``reference=speaker`` every frame is encoded as a departure from its speaker's profile, and decoding
adds the profile back.

Fallback: a speaker with fewer than ``min_recordings`` recordings keeps its own F0 and level (a
median over a few recordings is already stable) but its mean envelope, which depends on what the
few recordings say, is shrunk toward the codec's pooled profile: ``w * own + (1 - w) * pooled`` with
``w = recordings / min_recordings``; a warning names the speaker. If such a speaker also has fewer
than ``MIN_VOICED_FRAMES`` voiced frames, its F0 median is the pooled one (warning); a speaker with
``min_recordings`` or more recordings and too few voiced frames is an error naming it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from rrpo.errors import RrpoError

log = logging.getLogger(__name__)

PROFILE_FORMAT = "rrpo-speaker-profile"
PROFILE_VERSION = 1
#: frames within this many dB of their recording's reference level enter the mean envelope
SPEECH_DB = 30.0
#: fewer voiced frames (0.4 s at 25 Hz) than this give no usable F0 median
MIN_VOICED_FRAMES = 10


@dataclass
class SpeakerProfile:
    speaker: str
    recordings: int
    voiced_frames: int
    f0_st: float  # median voiced F0, semitones re 1 Hz (12 log2 f0)
    level_db: float  # median over recordings of the recording's reference frame level (dB)
    env_mel: np.ndarray  # (M,) mean level-removed log mel envelope of speech frames
    env_log: np.ndarray  # (K,) mean level-removed log envelope on the synthesis grid
    own_weight: float = 1.0  # < 1: the envelope was shrunk toward the pooled profile (fallback)

    @property
    def f0_hz(self) -> float:
        return float(2.0 ** (self.f0_st / 12.0))

    def to_dict(self) -> dict:
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "speaker": self.speaker,
            "recordings": int(self.recordings),
            "voiced_frames": int(self.voiced_frames),
            "f0_st": round(float(self.f0_st), 5),
            "f0_hz": round(self.f0_hz, 3),
            "level_db": round(float(self.level_db), 5),
            "own_weight": round(float(self.own_weight), 5),
            "env_mel": [round(float(v), 5) for v in self.env_mel],
            "env_log": [round(float(v), 5) for v in self.env_log],
        }

    @classmethod
    def from_dict(cls, d, source, n_mel: int, n_log: int) -> SpeakerProfile:
        """Read a profile written by :meth:`to_dict`; one-line RrpoError naming ``source`` when it is
        of another format or version or its envelopes do not have the codec's shapes."""
        if not isinstance(d, dict) or d.get("format") != PROFILE_FORMAT:
            raise RrpoError("not a speaker profile (format is not 'rrpo-speaker-profile')", source)
        if d.get("version") != PROFILE_VERSION:
            raise RrpoError(
                f"speaker profile version {d.get('version')} cannot be read by this rrpo (reads "
                f"version {PROFILE_VERSION}); recompute it",
                source,
            )
        try:
            env_mel = np.asarray(d["env_mel"], dtype=np.float64)
            env_log = np.asarray(d["env_log"], dtype=np.float64)
            prof = cls(
                speaker=str(d["speaker"]),
                recordings=int(d["recordings"]),
                voiced_frames=int(d["voiced_frames"]),
                f0_st=float(d["f0_st"]),
                level_db=float(d["level_db"]),
                env_mel=env_mel,
                env_log=env_log,
                own_weight=float(d.get("own_weight", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RrpoError(f"speaker profile lacks or garbles a field ({e})", source) from None
        if env_mel.shape != (n_mel,) or env_log.shape != (n_log,):
            raise RrpoError(
                f"speaker profile '{prof.speaker}' has envelopes of shape {env_mel.shape} / "
                f"{env_log.shape}; this codec needs ({n_mel},) / ({n_log},)",
                source,
            )
        if not (
            np.isfinite(env_mel).all()
            and np.isfinite(env_log).all()
            and np.isfinite(prof.f0_st)
            and np.isfinite(prof.level_db)
        ):
            raise RrpoError(f"speaker profile '{prof.speaker}' holds non-finite values", source)
        return prof


class ProfileAccumulator:
    """Collects one speaker's statistics recording by recording (constant memory per recording)."""

    def __init__(self, level_percentile: float):
        self.level_percentile = level_percentile
        self.semitones: list[np.ndarray] = []
        self.refs: list[float] = []
        self.sum_mel = self.sum_log = None
        self.n_speech = 0

    def add(self, f0: np.ndarray, level_db: np.ndarray, shape_mel: np.ndarray, shape_log: np.ndarray) -> None:
        """One recording: F0 (T,) Hz (0 unvoiced), frame dB (T,), level-removed log envelopes
        (T, M) and (T, K)."""
        v = f0 > 0
        self.semitones.append(12.0 * np.log2(f0[v]))
        ref = float(np.percentile(level_db, self.level_percentile))
        self.refs.append(ref)
        speech = level_db >= ref - SPEECH_DB
        sm, sl = shape_mel[speech].sum(0), shape_log[speech].sum(0)
        self.sum_mel = sm if self.sum_mel is None else self.sum_mel + sm
        self.sum_log = sl if self.sum_log is None else self.sum_log + sl
        self.n_speech += int(speech.sum())

    def finish(
        self,
        speaker: str,
        pooled: SpeakerProfile | None = None,
        min_recordings: int = 10,
        source=None,
        min_voiced: int = MIN_VOICED_FRAMES,
    ) -> SpeakerProfile:
        """The profile; RrpoError naming the speaker when fewer than ``min_voiced`` of its frames
        are voiced."""
        st = np.concatenate(self.semitones) if self.semitones else np.zeros(0)
        n = len(self.refs)
        f0_st = float(np.median(st)) if len(st) else float("nan")
        if len(st) < min_voiced and pooled is not None and n < min_recordings:
            log.warning(
                "speaker '%s' has only %d voiced frame(s) in %d recording(s): its F0 median is the codec's pooled one",
                speaker,
                len(st),
                n,
            )
            f0_st = pooled.f0_st
        elif len(st) < min_voiced:
            raise RrpoError(
                f"speaker '{speaker}' has {len(st)} voiced frame(s) in its {len(self.refs)} recording(s) "
                f"(needs {min_voiced}): no speaker profile (F0 median) can be computed",
                source,
            )
        env_mel = self.sum_mel / self.n_speech
        env_log = self.sum_log / self.n_speech
        w = 1.0
        if pooled is not None and n < min_recordings:
            w = n / min_recordings
            env_mel = w * env_mel + (1 - w) * pooled.env_mel
            env_log = w * env_log + (1 - w) * pooled.env_log
            log.warning(
                "speaker '%s' has only %d recording(s) (< %d): its mean spectral envelope is shrunk "
                "toward the codec's pooled one (%.0f %% its own); F0 and level are its own",
                speaker,
                n,
                min_recordings,
                100 * w,
            )
        return SpeakerProfile(
            speaker=speaker,
            recordings=n,
            voiced_frames=int(len(st)),
            f0_st=f0_st,
            level_db=float(np.median(self.refs)),
            env_mel=np.asarray(env_mel, np.float64),
            env_log=np.asarray(env_log, np.float64),
            own_weight=w,
        )


def read_profile_file(path, n_mel: int, n_log: int, speaker: str | None = None) -> SpeakerProfile:
    """A profile from a JSON file: one profile, or a profiles file (``profiles.json`` of a codec
    folder or a shard folder's ``meta.json``) with ``speaker`` naming which."""
    from pathlib import Path

    from rrpo.io import read_json

    path = Path(path)
    if not path.exists():
        raise RrpoError("profile file not found", path)
    try:
        d = read_json(path)
    except Exception as e:
        raise RrpoError(f"not a readable JSON profile ({str(e)[:80]})", path) from None
    if isinstance(d, dict) and isinstance(d.get("profiles"), dict):
        if speaker is None:
            if len(d["profiles"]) != 1:
                raise RrpoError(f"this file holds {len(d['profiles'])} profiles: name one with --speaker", path)
            speaker = next(iter(d["profiles"]))
        if speaker not in d["profiles"]:
            raise RrpoError(
                f"no profile of speaker '{speaker}' here (has: {', '.join(sorted(d['profiles'])[:8])})", path
            )
        d = d["profiles"][speaker]
    return SpeakerProfile.from_dict(d, path, n_mel, n_log)
