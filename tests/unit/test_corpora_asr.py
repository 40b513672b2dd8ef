"""The transcribed-speech corpora's preparers (LibriSpeech) on small generated trees
in each corpus' own layout (short sine clips): records field by field, and every error."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rrpo.data.corpora import PREPARERS, prepare_corpus
from rrpo.data.manifest import read_manifest
from rrpo.errors import RrpoError


def clip(path: Path, seconds: float = 0.25, sr: int = 16000, fmt: str | None = None) -> Path:
    """Write a short sine; the format from the suffix (or ``fmt``, e.g. NIST for .sph)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, subtype="PCM_16", format=fmt)
    return path


def by_id(records):
    return {u.id: u for u in records}


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


# ---------------------------------------------------------------------------------- LibriSpeech

SPEAKERS_TXT = """; comment lines start with a semicolon
;ID  |SEX| SUBSET           |MINUTES| NAME
19   | F | train-clean-100  | 25.19 | Kara Shallenberg
1089 | M | test-clean       | 8.05  | Peter Bobbe
"""


def libri_tree(tmp: Path) -> Path:
    base = tmp / "LibriSpeech"
    write(base / "SPEAKERS.TXT", SPEAKERS_TXT)
    ch = base / "test-clean" / "1089" / "134686"
    clip(ch / "1089-134686-0000.flac", seconds=0.5)
    clip(ch / "1089-134686-0001.flac")
    write(ch / "1089-134686.trans.txt", "1089-134686-0000 HE HOPED THERE WOULD BE STEW\n1089-134686-0001 STUFF IT\n")
    ch = base / "train-clean-5" / "7" / "11"  # a speaker SPEAKERS.TXT does not list
    clip(ch / "7-11-0003.flac", seconds=0.75)
    write(ch / "7-11.trans.txt", "7-11-0003 A LINE\n")
    return base


def test_librispeech_fake_tree(tmp_path):
    base = libri_tree(tmp_path)
    recs = by_id(PREPARERS["librispeech"](tmp_path, None))  # the root may be a parent of LibriSpeech/
    assert set(recs) == {"librispeech_1089-134686-0000", "librispeech_1089-134686-0001", "librispeech_7-11-0003"}
    u = recs["librispeech_1089-134686-0000"]
    assert Path(u.audio) == base / "test-clean" / "1089" / "134686" / "1089-134686-0000.flac"
    assert Path(u.audio).is_absolute() and u.sampling_rate == 16000 and u.duration == pytest.approx(0.5)
    assert (u.text, u.speaker, u.language, u.split) == ("HE HOPED THERE WOULD BE STEW", "libri1089", "en", "test-clean")
    assert u.emotion == "neutral" and not u.emotion_labelled
    assert u.extra == {"chapter": "134686", "emotion_labelled": False, "gender": "M"}
    v = recs["librispeech_7-11-0003"]
    assert (v.split, v.speaker, v.text, v.duration) == ("train-clean-5", "libri7", "A LINE", pytest.approx(0.75))
    assert v.extra == {"chapter": "11", "emotion_labelled": False}  # no SPEAKERS.TXT line: no gender
    # the LibriSpeech folder itself, and one subset folder (SPEAKERS.TXT is read from its parent)
    assert by_id(PREPARERS["librispeech"](base, None)) == recs
    one = by_id(PREPARERS["librispeech"](base / "test-clean", None))
    assert one == {k: r for k, r in recs.items() if r.split == "test-clean"}


def test_librispeech_manifest_and_wav_copies(tmp_path):
    base = libri_tree(tmp_path)
    (base / "train-clean-5" / "7" / "11" / "7-11-0003.flac").unlink()
    clip(base / "train-clean-5" / "7" / "11" / "7-11-0003.wav")  # a converted copy
    man = prepare_corpus("librispeech", base, tmp_path / "ls.jsonl", check_audio=True)
    assert [u.id for u in man] == sorted(u.id for u in man) and len(man) == 3
    assert read_manifest(tmp_path / "ls.jsonl") == man
    clip(base / "train-clean-5" / "7" / "11" / "7-11-0003.flac")
    with pytest.raises(RrpoError, match="clip stored twice"):
        PREPARERS["librispeech"](base, None)


def test_librispeech_transcript_line_without_audio_is_skipped_with_a_warning(tmp_path, caplog):
    base = libri_tree(tmp_path)
    (base / "test-clean" / "1089" / "134686" / "1089-134686-0001.flac").unlink()
    with caplog.at_level(logging.WARNING):
        recs = by_id(PREPARERS["librispeech"](base, None))
    assert "librispeech_1089-134686-0001" not in recs and len(recs) == 2
    assert "1 transcript lines have no audio file" in caplog.text


@pytest.mark.parametrize(
    "change, message, where",
    [
        ("no_transcript", "transcript 1089-134686.trans.txt not found beside the chapter's audio", "134686"),
        ("no_line", "clip has no line in 1089-134686.trans.txt", "1089-134686-0001.flac"),
        ("bad_line", r"transcript line is not '1089-134686-NNNN TRANSCRIPT'", "1089-134686.trans.txt:2"),
        ("other_chapter", "utterance '1089-999-0001' does not belong to chapter 1089-134686", "trans.txt:2"),
        ("twice", r"utterance '1089-134686-0000' appears twice \(first on line 1\)", "trans.txt:2"),
        ("bad_name", r"not a LibriSpeech clip name \(expected 1089-134686-NNNN.flac\)", "take2.flac"),
        ("bad_speakers", "speaker line is not 'ID | SEX | SUBSET | MINUTES | NAME'", "SPEAKERS.TXT:5"),
        ("not_audio", "not a readable audio file", "1089-134686-0001.flac"),
    ],
)
def test_librispeech_errors(tmp_path, change, message, where):
    base = libri_tree(tmp_path)
    ch = base / "test-clean" / "1089" / "134686"
    trans = ch / "1089-134686.trans.txt"
    if change == "no_transcript":
        trans.unlink()
    elif change == "no_line":
        write(trans, "1089-134686-0000 HE HOPED\n")
    elif change == "bad_line":
        write(trans, "1089-134686-0000 HE HOPED\n1089_134686_0001 STUFF IT\n")
    elif change == "other_chapter":
        write(trans, "1089-134686-0000 HE HOPED\n1089-999-0001 STUFF IT\n")
    elif change == "twice":
        write(trans, "1089-134686-0000 HE HOPED\n1089-134686-0000 AGAIN\n1089-134686-0001 STUFF IT\n")
    elif change == "bad_name":
        clip(ch / "take2.flac")
    elif change == "bad_speakers":
        write(base / "SPEAKERS.TXT", SPEAKERS_TXT.replace("Bobbe", "Bobbe\n1090 | X | test-clean | 1 | Y"))
    elif change == "not_audio":
        (ch / "1089-134686-0001.flac").write_bytes(b"not audio at all")
    with pytest.raises(RrpoError, match=message) as e:
        PREPARERS["librispeech"](base, None)
    assert str(e.value).split(": ")[0].endswith(where), str(e.value)


def test_librispeech_wrong_root_is_one_line(tmp_path):
    clip(tmp_path / "somewhere" / "a.flac")
    with pytest.raises(RrpoError, match=r"no LibriSpeech folder \(<subset>/<spk>/<chapter>/\) found here"):
        PREPARERS["librispeech"](tmp_path, None)
