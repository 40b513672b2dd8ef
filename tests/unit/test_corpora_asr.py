"""The transcribed-speech corpora's preparers (LibriSpeech, AN4, AISHELL-1) on small generated trees
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


# ------------------------------------------------------------------------------------------ AN4

AN4_TRAIN = "<s> YES </s> (an251-fash-b)\n<s> R O B E R T </s> (cen1-fash-b)\n<s> TWO </s> (an1-mblw-b)\n"
AN4_TEST = "\nNO (an416-fjlp-b)\n"  # the test file has no <s> tags and a blank first line


def an4_tree(tmp: Path) -> Path:
    base = tmp / "an4"
    write(base / "etc" / "an4_train.transcription", AN4_TRAIN)
    write(base / "etc" / "an4_test.transcription", AN4_TEST)
    clip(base / "wav" / "an4_clstk" / "fash" / "an251-fash-b.sph", seconds=0.5, fmt="NIST")
    clip(base / "wav" / "an4_clstk" / "fash" / "cen1-fash-b.sph", fmt="NIST")
    clip(base / "wav" / "an4_clstk" / "mblw" / "an1-mblw-b.wav")  # a converted copy
    clip(base / "wav" / "an4test_clstk" / "fjlp" / "an416-fjlp-b.sph", seconds=0.75, fmt="NIST")
    return base


def test_an4_fake_tree(tmp_path):
    base = an4_tree(tmp_path)
    recs = by_id(PREPARERS["an4"](tmp_path, None))
    assert set(recs) == {"an4_an251-fash-b", "an4_cen1-fash-b", "an4_an1-mblw-b", "an4_an416-fjlp-b"}
    u = recs["an4_an251-fash-b"]
    assert Path(u.audio) == base / "wav" / "an4_clstk" / "fash" / "an251-fash-b.sph" and Path(u.audio).is_absolute()
    assert (u.text, u.speaker, u.language, u.split, u.emotion) == ("YES", "fash", "en", "train", "neutral")
    assert u.sampling_rate == 16000 and u.duration == pytest.approx(0.5)
    assert u.extra == {"emotion_labelled": False} and not u.emotion_labelled
    assert recs["an4_cen1-fash-b"].text == "R O B E R T" and recs["an4_an1-mblw-b"].speaker == "mblw"
    t = recs["an4_an416-fjlp-b"]
    assert (t.text, t.split, t.speaker, t.duration) == ("NO", "test", "fjlp", pytest.approx(0.75))
    assert by_id(PREPARERS["an4"](base, None)) == recs
    man = prepare_corpus("an4", base, tmp_path / "an4.jsonl", check_audio=True)
    assert len(read_manifest(man.path)) == 4


def test_an4_unmatched_clips_and_lines_are_skipped_with_a_warning(tmp_path, caplog):
    base = an4_tree(tmp_path)
    clip(base / "wav" / "an4test_clstk" / "fcaw" / "an406-fcaw-b.sph", fmt="NIST")  # listed nowhere
    (base / "wav" / "an4_clstk" / "fash" / "cen1-fash-b.sph").unlink()  # listed, no clip
    clip(base / "wav" / "an4_clstk" / "zzzz" / "an9-zzzz-b.sph", fmt="NIST")
    clip(base / "wav" / "an4_clstk" / "zzzz" / "an9-zzzz-b.wav")  # unlisted, stored twice: no matter
    with caplog.at_level(logging.WARNING):
        recs = by_id(PREPARERS["an4"](base, None))
    assert set(recs) == {"an4_an251-fash-b", "an4_an1-mblw-b", "an4_an416-fjlp-b"}
    assert "an4: 1 transcription lines have no audio file" in caplog.text
    assert "an4: 3 clips have no transcription line" in caplog.text


def test_an4_a_part_without_audio_is_left_out(tmp_path):
    base = an4_tree(tmp_path)
    for p in (base / "wav" / "an4test_clstk").rglob("*.sph"):
        p.unlink()
    assert {u.split for u in PREPARERS["an4"](base, None)} == {"train"}
    import shutil

    shutil.rmtree(base / "wav" / "an4test_clstk")
    (base / "etc" / "an4_test.transcription").unlink()
    assert len(PREPARERS["an4"](base, None)) == 3


@pytest.mark.parametrize(
    "change, message, where",
    [
        (
            "no_test_transcription",
            r"transcription file not found \(needed for the audio of wav/an4test_clstk\)",
            "an4_test.transcription",
        ),
        ("no_transcriptions", r"no AN4 folder \(etc/an4_\*.transcription beside wav/\) found", "tmp"),
        ("bad_line", r"transcription line is not '<s> WORDS </s> \(<utt>-<speaker>-<mic>\)'", "transcription:2"),
        ("twice", r"utterance 'an251-fash-b' appears twice \(first on line 1\)", "an4_train.transcription:4"),
        ("wrong_folder", "file id 'an251-fash-b' names another speaker than its folder 'mblw'", "an251-fash-b.sph"),
        ("stored_twice", r"clip stored twice \(an251-fash-b.sph and an251-fash-b.wav\)", "an251-fash-b.wav"),
        ("raw", r"headerless .raw audio \(the an4_raw release\)", "an1-mblw-b.raw"),
        ("not_audio", "not a readable audio file", "cen1-fash-b.sph"),
    ],
)
def test_an4_errors(tmp_path, change, message, where):
    base = an4_tree(tmp_path)
    train = base / "etc" / "an4_train.transcription"
    fash = base / "wav" / "an4_clstk" / "fash"
    if change == "no_test_transcription":
        (base / "etc" / "an4_test.transcription").unlink()
    elif change == "no_transcriptions":
        train.unlink()
        (base / "etc" / "an4_test.transcription").unlink()
    elif change == "bad_line":
        write(train, "<s> YES </s> (an251-fash-b)\n<s> NO </s> an1-mblw-b\n")
    elif change == "twice":
        write(train, AN4_TRAIN + "<s> AGAIN </s> (an251-fash-b)\n")
    elif change == "wrong_folder":
        (fash / "an251-fash-b.sph").rename(base / "wav" / "an4_clstk" / "mblw" / "an251-fash-b.sph")
    elif change == "stored_twice":
        clip(fash / "an251-fash-b.wav")
    elif change == "raw":
        (base / "wav" / "an4_clstk" / "mblw" / "an1-mblw-b.wav").rename(
            base / "wav" / "an4_clstk" / "mblw" / "an1-mblw-b.raw"
        )
    elif change == "not_audio":
        (fash / "cen1-fash-b.sph").write_bytes(b"NIST_1A but not really")
    with pytest.raises(RrpoError, match=message) as e:
        PREPARERS["an4"](tmp_path if change == "no_transcriptions" else base, None)
    path = str(e.value).split(": ")[0]
    assert (path == str(tmp_path)) if where == "tmp" else path.endswith(where), str(e.value)


# ------------------------------------------------------------------------------------ AISHELL-1

AISHELL_TRANSCRIPT = (
    "BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购\n"
    "BAC009S0724W0121 广州市 房地产 中介 协会 分析\n"
    "BAC009S0764W0121 甚至 出现 用 APP iphone 抢购\n"
    "BAC009S0002W0999 这 条 没有 音频\n"
)


def aishell_tree(tmp: Path) -> Path:
    base = tmp / "data_aishell"
    write(base / "transcript" / "aishell_transcript_v0.8.txt", AISHELL_TRANSCRIPT)
    clip(base / "wav" / "train" / "S0002" / "BAC009S0002W0122.wav", seconds=0.5)
    clip(base / "wav" / "dev" / "S0724" / "BAC009S0724W0121.wav")
    clip(base / "wav" / "test" / "S0764" / "BAC009S0764W0121.wav", seconds=0.75)
    return base


def test_aishell_fake_tree(tmp_path, caplog):
    base = aishell_tree(tmp_path)
    with caplog.at_level(logging.WARNING):
        recs = by_id(PREPARERS["aishell"](tmp_path, None))
    assert set(recs) == {"aishell_BAC009S0002W0122", "aishell_BAC009S0724W0121", "aishell_BAC009S0764W0121"}
    assert "aishell: 1 transcript lines have no audio file" in caplog.text
    u = recs["aishell_BAC009S0002W0122"]
    assert Path(u.audio) == base / "wav" / "train" / "S0002" / "BAC009S0002W0122.wav" and Path(u.audio).is_absolute()
    assert (u.text, u.speaker, u.language, u.split, u.emotion) == (
        "而对楼市成交抑制作用最大的限购",
        "S0002",
        "zh",
        "train",
        "neutral",
    )
    assert u.sampling_rate == 16000 and u.duration == pytest.approx(0.5)
    assert u.extra == {"emotion_labelled": False} and not u.emotion_labelled
    assert (recs["aishell_BAC009S0724W0121"].split, recs["aishell_BAC009S0724W0121"].text) == (
        "dev",
        "广州市房地产中介协会分析",
    )
    t = recs["aishell_BAC009S0764W0121"]
    assert (t.split, t.speaker, t.text) == ("test", "S0764", "甚至出现用APP iphone抢购")  # Latin words keep a space
    assert by_id(PREPARERS["aishell"](base, None)) == recs
    man = prepare_corpus("aishell", base, tmp_path / "a.jsonl", check_audio=True)
    assert [u.id for u in read_manifest(man.path)] == sorted(recs)


def test_aishell_transcript_decoded_by_its_bytes(tmp_path):
    base = aishell_tree(tmp_path)
    write(base / "transcript" / "aishell_transcript_v0.8.txt", AISHELL_TRANSCRIPT, encoding="gb18030")
    assert by_id(PREPARERS["aishell"](base, None))["aishell_BAC009S0724W0121"].text == "广州市房地产中介协会分析"


def test_aishell_flat_layout(tmp_path, caplog):
    """A folder of <uttid>.wav beside <uttid>.txt (a sample copy): split from the speaker number."""
    flat = tmp_path / "AISHELL_Sample_data"
    for uid, text in [
        ("BAC009S0150W0001", "设定二十九度"),
        ("BAC009S0763W0002", "开 空调\n"),
        ("BAC009S0916W0003", "好"),
    ]:
        clip(flat / f"{uid}.wav")
        write(flat / f"{uid}.txt", text)
    clip(flat / "BAC009S0150W0009.wav")  # no .txt
    with caplog.at_level(logging.WARNING):
        recs = by_id(PREPARERS["aishell"](tmp_path, None))
    assert {k: (u.split, u.speaker, u.text) for k, u in recs.items()} == {
        "aishell_BAC009S0150W0001": ("train", "S0150", "设定二十九度"),
        "aishell_BAC009S0763W0002": ("dev", "S0763", "开空调"),
        "aishell_BAC009S0916W0003": ("test", "S0916", "好"),
    }
    assert "aishell: 1 clips have no transcript line" in caplog.text
    u = recs["aishell_BAC009S0150W0001"]
    assert (
        Path(u.audio) == flat / "BAC009S0150W0001.wav" and u.language == "zh" and u.extra == {"emotion_labelled": False}
    )


def test_aishell_clip_without_line_is_skipped_with_a_warning(tmp_path, caplog):
    base = aishell_tree(tmp_path)
    clip(base / "wav" / "train" / "S0002" / "BAC009S0002W0123.wav")
    with caplog.at_level(logging.WARNING):
        recs = PREPARERS["aishell"](base, None)
    assert len(recs) == 3 and "aishell: 1 clips have no transcript line" in caplog.text
    assert "BAC009S0002W0123.wav" in caplog.text


@pytest.mark.parametrize(
    "change, message, where",
    [
        ("no_transcript", "transcript file not found", "aishell_transcript_v0.8.txt"),
        ("bad_line", r"transcript line is not '<uttid> <words ...>'", "aishell_transcript_v0.8.txt:2"),
        ("no_text", r"transcript line is not '<uttid> <words ...>'", "aishell_transcript_v0.8.txt:5"),
        ("twice", r"utterance 'BAC009S0002W0122' appears twice \(first on line 1\)", "v0.8.txt:5"),
        ("bad_split", r"not an AISHELL-1 split folder \(train, dev, test\)", "wav/eval"),
        ("bad_name", r"not an AISHELL-1 clip name \(expected e.g. BAC009S0002W0122.wav\)", "take1.wav"),
        ("wrong_speaker", "clip of speaker S0002 lies in the folder of 'S0724'", "BAC009S0002W0122.wav"),
        ("archives", "the speaker archives are not extracted", "data_aishell/wav"),
        ("not_audio", "not a readable audio file", "BAC009S0724W0121.wav"),
    ],
)
def test_aishell_errors(tmp_path, change, message, where):
    import shutil

    base = aishell_tree(tmp_path)
    tpath = base / "transcript" / "aishell_transcript_v0.8.txt"
    if change == "no_transcript":
        tpath.unlink()
    elif change == "bad_line":
        write(tpath, AISHELL_TRANSCRIPT.replace("BAC009S0724W0121", "S0724_0121"))
    elif change == "no_text":
        write(tpath, AISHELL_TRANSCRIPT + "BAC009S0002W0124\n")
    elif change == "twice":
        write(tpath, AISHELL_TRANSCRIPT + "BAC009S0002W0122 又 一 次\n")
    elif change == "bad_split":
        clip(base / "wav" / "eval" / "S0002" / "BAC009S0002W0122.wav")
    elif change == "bad_name":
        clip(base / "wav" / "train" / "S0002" / "take1.wav")
    elif change == "wrong_speaker":
        (base / "wav" / "train" / "S0002" / "BAC009S0002W0122.wav").rename(
            base / "wav" / "dev" / "S0724" / "BAC009S0002W0122.wav"
        )
    elif change == "archives":
        for d in ("train", "dev", "test"):
            shutil.rmtree(base / "wav" / d)
        write(base / "wav" / "S0002.tar.gz", "archive")
    elif change == "not_audio":
        (base / "wav" / "dev" / "S0724" / "BAC009S0724W0121.wav").write_bytes(b"RIFF")
    with pytest.raises(RrpoError, match=message) as e:
        PREPARERS["aishell"](base, None)
    assert str(e.value).split(": ")[0].endswith(where), str(e.value)
