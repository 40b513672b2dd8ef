"""The audit's anchor in real speech: what every judged figure is measured against.

A judge that z-scores each speaker's features needs that speaker's mean and spread. Taken from the
policy's own samples, a policy that exaggerates every emotion would move away from its own mean and
read as *more* emotional, so caricature would count as success. The anchor fixes them, before any
policy is scored, from the speaker's **real recordings that the audit's prompts do not use** (for a
held-out speaker: its recordings of other sentences; the judge never hears that speaker):

* ``real_stats``: the judge's per-speaker statistics of those recordings as recorded (they normalise
  the real-speech ceiling);
* ``codec_stats``: the same recordings passed through the codec (encoded and decoded with the
  speaker's profile), so that the codec's colouring is shared by everything generated through it:
  the starting policy, every checkpoint and the codec ceiling;
* ``typicality``: per speaker and emotion, where those codec-passed recordings lie in eGeMAPS space
  (:class:`Typicality`), so that speech unlike the speaker's real speech of that emotion has a cost.

:func:`anchor_recordings` chooses the recordings (a prompted text is never among them) and
:func:`stratified` spreads a capped choice evenly over the emotions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rrpo.config import check, option
from rrpo.data.manifest import stratified
from rrpo.errors import RrpoError

__all__ = ["AnchorConfig", "Typicality", "anchor_recordings", "check_anchor", "stratified"]


@dataclass
class AnchorConfig:
    """Which real recordings anchor the judge (see :mod:`rrpo.audit.anchor`)."""

    splits: list[str] = option(
        [], "splits of the prompts' manifest the anchor recordings come from ([] = all); a prompted text is never one"
    )
    max_recordings: int = option(100, "per speaker, spread evenly over the emotions (stratified, in id order)")

    def __post_init__(self):
        check(self.max_recordings >= 2, "anchor.max_recordings", "must be >= 2")
        if self.splits is None:
            check(False, "anchor.splits", "use [] for all splits")


def anchor_recordings(
    man, speaker: str, exclude_texts: set[str], emotions: Sequence[str], splits: Sequence[str], k: int
) -> list:
    """The speaker's recordings in ``man`` of the given emotions (and splits, [] = all) whose text is not
    in ``exclude_texts``, :func:`stratified` to at most ``k``. Records without an emotion label
    (``extra.emotion_labelled: false``) are no real speech of their placeholder emotion: left out."""
    recs = [
        u
        for u in man
        if u.speaker == speaker
        and u.emotion in emotions
        and u.emotion_labelled
        and u.text not in exclude_texts
        and (not splits or u.split in splits)
    ]
    return stratified(recs, k)


class Typicality:
    """How far an utterance lies from its speaker's real speech of the same emotion, in eGeMAPS space.

    For a speaker s and emotion e with reference features x_1..x_n (the anchor): mean M_se and a
    per-feature spread V_se shrunk towards the speaker's spread over all emotions S_s,
    V_se² = (n·v_se² + n0·S_s²) / (n + n0) (n0 = ``shrink``; the sample spread of a few recordings in
    88 dimensions is unstable). An utterance's *typicality distance* is the root mean square of
    (x − M_se) / V_se over the features, each term clipped to ±``clip`` (10) so that one degenerate
    feature (a near-silent or one-frame sample) cannot dominate: about 1 for a typical recording,
    more for an unusual one, at most ``clip``.
    It is *atypical* when its distance exceeds the speaker's threshold, the ``q`` quantile of the
    anchor recordings' own leave-one-out distances (so about 1 − q of real recordings are atypical).
    """

    def __init__(
        self,
        feats: np.ndarray,
        speakers: Sequence[str],
        emotions: Sequence[str],
        shrink: float = 5.0,
        q: float = 0.95,
        clip: float = 10.0,
    ):
        x = np.asarray(feats, dtype=np.float64)
        spk = np.asarray([str(s) for s in speakers], dtype=object)
        emo = np.asarray([str(e) for e in emotions], dtype=object)
        self.shrink, self.q, self.clip = float(shrink), float(q), float(clip)
        self.total: dict[str, np.ndarray] = {}
        self.ref: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.threshold: dict[str, float] = {}
        for s in dict.fromkeys(spk):
            ms = spk == s
            self.total[s] = np.maximum(x[ms].std(0), 1e-8)
            loo = []
            for e in dict.fromkeys(emo[ms]):
                idx = np.flatnonzero(ms & (emo == e))
                self.ref[(s, e)] = self._stats(x[idx], self.total[s])
                if len(idx) >= 3:  # leave-one-out distances need two others
                    for j in range(len(idx)):
                        m, v = self._stats(x[np.delete(idx, j)], self.total[s])
                        loo.append(self._dist(x[idx[j]], m, v))
            self.threshold[s] = float(np.quantile(loo, self.q)) if loo else math.inf

    def _stats(self, x: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(x)
        v2 = (n * x.var(0) + self.shrink * total**2) / (n + self.shrink)
        return x.mean(0), np.sqrt(v2)

    def _dist(self, x: np.ndarray, m: np.ndarray, v: np.ndarray) -> float:
        return float(np.sqrt(np.mean(np.clip((x - m) / v, -self.clip, self.clip) ** 2)))

    def distance(self, feats: np.ndarray, speakers: Sequence[str], emotions: Sequence[str]) -> np.ndarray:
        """(N,) typicality distances; NaN where the anchor has no recording of that speaker and emotion."""
        x = np.asarray(feats, dtype=np.float64)
        out = np.full(len(x), np.nan)
        for i, (s, e) in enumerate(zip(speakers, emotions)):
            r = self.ref.get((str(s), str(e)))
            if r is not None:
                out[i] = self._dist(x[i], *r)
        return out

    def atypical(self, dist: np.ndarray, speakers: Sequence[str]) -> np.ndarray:
        """(N,) 1.0 where a distance exceeds its speaker's threshold, 0.0 where not, NaN where unknown."""
        d = np.asarray(dist, dtype=np.float64)
        thr = np.array([self.threshold.get(str(s), np.nan) for s in speakers])
        return np.where(np.isfinite(d) & np.isfinite(thr), (d > thr).astype(np.float64), np.nan)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The reference as arrays (for a cache)."""
        keys = sorted(self.ref)
        return {
            "ref_keys": np.array([f"{s}\t{e}" for s, e in keys]),
            "ref_mean": np.stack([self.ref[k][0] for k in keys]) if keys else np.zeros((0, 0)),
            "ref_spread": np.stack([self.ref[k][1] for k in keys]) if keys else np.zeros((0, 0)),
            "thr_keys": np.array(sorted(self.threshold)),
            "thr": np.array([self.threshold[s] for s in sorted(self.threshold)]),
            "params": np.array([self.shrink, self.q, self.clip]),
        }

    @classmethod
    def from_arrays(cls, a: dict) -> Typicality:
        t = cls.__new__(cls)
        t.shrink, t.q, t.clip = (float(x) for x in a["params"][:3])
        t.total = {}
        t.ref = {
            tuple(str(k).split("\t", 1)): (np.asarray(m), np.asarray(v))
            for k, m, v in zip(a["ref_keys"], a["ref_mean"], a["ref_spread"])
        }
        t.threshold = {str(s): float(v) for s, v in zip(a["thr_keys"], a["thr"])}
        return t


def check_anchor(recs_by_speaker: dict[str, list], path) -> None:
    """A speaker without anchor recordings cannot be judged: one line naming it and the manifest."""
    empty = [s for s, r in recs_by_speaker.items() if len(r) < 2]
    if empty:
        raise RrpoError(
            f"speaker(s) {', '.join(empty)} have fewer than 2 real recordings outside the audit's prompts "
            "(anchor.splits) to anchor the judge; give the manifest more of their recordings",
            path,
        )
