"""The audit's anchor in real speech: choice of recordings, the decoding profile, typicality, MCD's scale."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from rrpo.audit.anchor import Typicality, anchor_recordings
from rrpo.codec import profile_from_manifest
from rrpo.data.manifest import Utterance, stratified, write_manifest

SR = 16000


def _utt(i, emo, spk="s", text=None, split="train"):
    return Utterance(f"{spk}_{emo}_{i:02d}", "x.wav", SR, 1.0, text or f"text {i}", spk, "zh", emo, split)


def test_stratified_worked_by_hand():
    """ids a1 a2 a3 (angry) and n1 (neutral), k = 3 → a1, n1, a2 (one per emotion in turn, id order)."""
    us = [_utt(3, "angry"), _utt(1, "angry"), _utt(1, "neutral"), _utt(2, "angry")]
    assert [u.id for u in stratified(us, 3)] == ["s_angry_01", "s_neutral_01", "s_angry_02"]
    assert len(stratified(us, 10)) == 4 and stratified([], 3) == []


def test_anchor_recordings_leave_out_prompted_texts_and_other_splits():
    us = [_utt(i, e, text=f"t{i}", split="test" if i == 9 else "train") for i in range(10) for e in ("angry", "sad")]
    got = anchor_recordings(us, "s", {"t0", "t1"}, ["angry", "sad"], ["train"], 100)
    texts = {u.text for u in got}
    assert "t0" not in texts and "t1" not in texts and "t9" not in texts and len(got) == 14
    assert [u.emotion for u in got[:4]] == ["angry", "sad", "angry", "sad"]  # spread over the emotions
    assert anchor_recordings(us, "other", set(), ["angry"], [], 100) == []


class _RecordingCodec:
    """A codec that takes profiles and remembers which recordings (by their length) made one."""

    uses_profiles = True
    profiles: dict = {}

    def profile_from_audio(self, refs, speaker=""):
        return sorted(len(a) for a, _ in refs)


def test_profile_of_a_speaker_whose_first_recordings_are_one_emotion(tmp_path):
    """The speaker's 10 angry recordings come first in id order (as CASIA's do); the old profile took
    the first 10 and heard only anger. Now 4 recordings are 2 angry + 2 neutral, and a prompted text
    is never one. Each recording's length encodes it: angry i → 1000 + i samples, neutral i → 2000 + i."""
    recs = []
    for emo, base in (("angry", 1000), ("neutral", 2000)):
        for i in range(10):
            p = tmp_path / f"{emo}_{i}.wav"
            sf.write(p, 0.1 * np.sin(np.arange(base + i, dtype=np.float32)), SR)
            recs.append(
                Utterance(f"s_{emo}_{i:02d}", str(p), SR, (base + i) / SR, f"text {i}", "s", "zh", emo, "train")
            )
    man = write_manifest(tmp_path / "m.jsonl", recs)
    prof = profile_from_manifest(_RecordingCodec(), man, "s", 4)
    assert prof == [1000, 1001, 2000, 2001]
    prof = profile_from_manifest(_RecordingCodec(), man, "s", 4, exclude_texts={"text 0"})
    assert prof == [1001, 1002, 2001, 2002]


def test_typicality_worked_by_hand():
    """One feature; the speaker's real angry recordings read 0, 2 and 4 (no shrinkage): mean 2, spread
    sqrt(8/3) = 1.633. Leave-one-out distances: without 0 → |0 − 3| / 1 = 3, without 2 → 0, without 4
    → 3; the median (q = 0.5) is the threshold, 3. An utterance at 5 is 3 / 1.633 = 1.837 from the
    reference (typical); at 8, 6 / 1.633 = 3.674 (atypical). No sad reference: NaN."""
    t = Typicality(np.array([[0.0], [2.0], [4.0]]), ["s"] * 3, ["angry"] * 3, shrink=0.0, q=0.5)
    assert t.threshold["s"] == pytest.approx(3.0)
    d = t.distance(np.array([[5.0], [8.0], [1.0]]), ["s", "s", "s"], ["angry", "angry", "sad"])
    assert d[0] == pytest.approx(3 / math.sqrt(8 / 3)) and d[1] == pytest.approx(6 / math.sqrt(8 / 3))
    assert math.isnan(d[2])
    a = t.atypical(d, ["s"] * 3)
    assert a[0] == 0.0 and a[1] == 1.0 and math.isnan(a[2])
    # the cached form gives the same answers
    u = Typicality.from_arrays(t.to_arrays())
    assert np.allclose(u.distance(np.array([[5.0]]), ["s"], ["angry"]), d[:1])


def test_typicality_clips_one_degenerate_feature():
    """Two features, reference (0, 0), (2, 2), (4, 4) (spread 1.633 each, no shrinkage): an utterance at
    (2, 2000) is 0 away on the first and 1224.7 spreads away on the second, clipped to 10:
    sqrt((0² + 10²) / 2) = 7.071, not 866."""
    x = np.array([[0.0, 0.0], [2.0, 2.0], [4.0, 4.0]])
    t = Typicality(x, ["s"] * 3, ["angry"] * 3, shrink=0.0)
    assert t.distance(np.array([[2.0, 2000.0]]), ["s"], ["angry"])[0] == pytest.approx(math.sqrt(50))


def test_typicality_shrinks_a_small_spread_towards_the_speakers():
    """n0 = 1: angry 1, 1 (spread 0) in a speaker whose recordings 1, 1, 5, 5 spread 2 overall:
    V² = (2·0 + 1·4) / 3 = 4/3, so an angry utterance at 3 is 2 / 1.155 = 1.732 away (not infinite)."""
    t = Typicality(np.array([[1.0], [1.0], [5.0], [5.0]]), ["s"] * 4, ["angry", "angry", "sad", "sad"], shrink=1.0)
    assert t.distance(np.array([[3.0]]), ["s"], ["angry"])[0] == pytest.approx(2 / math.sqrt(4 / 3))


def test_mcd_reads_a_few_db_between_renditions_and_zero_for_a_gain_change():
    """The field's MCD (WORLD envelope, SPTK mel-cepstra α 0.42, c0 excluded, DTW): one synthetic
    voiced sound against itself at half the gain reads 0 (c0 carries the level); against the same
    sound a fifth higher it reads a few dB, not 30+."""
    from rrpo.audit.distances import mcd_dtw

    t = np.arange(int(0.6 * SR)) / SR
    rng = np.random.default_rng(0)

    def voice(f0):  # harmonics plus a little breath noise (a noiseless tone leaves WORLD's floor in the gaps)
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 30))
        return (0.1 * x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)

    a = voice(150.0)
    assert mcd_dtw(a, SR, 0.5 * a, SR) == pytest.approx(0.0, abs=1e-6)
    d = mcd_dtw(a, SR, voice(180.0), SR)
    assert 0.5 < d < 15
