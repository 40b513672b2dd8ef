"""Corpus preparers: each on a small fake tree in the corpus' own layout (short generated WAVs),
CASIA and ESD also on the real files in ../shared/data, checked against their MANIFEST.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rrpo.data.corpora import PREPARERS, prepare_corpus
from rrpo.data.manifest import read_manifest
from rrpo.errors import RrpoError


def wav(path: Path, seconds: float = 0.25, sr: int = 16000, freq: float = 220.0) -> Path:
    """Write a short sine (mono, 16-bit) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, subtype="PCM_16")
    return path


def by_id(records):
    return {u.id: u for u in records}


def test_registry_names_every_preparer_module(tmp_path):
    """PREPARERS is the explicit list ``rrpo prepare`` offers: each entry is its module's function,
    and an unknown name is refused with the known ones listed."""
    from rrpo.data.corpora import (
        aishell,
        an4,
        ased,
        casia,
        cremad,
        esd,
        iemocap,
        librispeech,
        nemo,
        ravdess,
        tabular,
        urdu,
    )

    assert PREPARERS == {
        "aishell": aishell.prepare,
        "an4": an4.prepare,
        "ased": ased.prepare,
        "casia": casia.prepare,
        "crema-d": cremad.prepare,
        "csv": tabular.prepare_csv,
        "esd": esd.prepare,
        "iemocap": iemocap.prepare,
        "jsonl": tabular.prepare_jsonl,
        "librispeech": librispeech.prepare,
        "nemo": nemo.prepare,
        "ravdess": ravdess.prepare,
        "urdu": urdu.prepare,
    }
    with pytest.raises(RrpoError, match="unknown corpus 'nope' .*casia"):
        prepare_corpus("nope", tmp_path, tmp_path / "m.jsonl")


# --------------------------------------------------------------------------------------- CASIA


def casia_tree(tmp: Path) -> Path:
    base = tmp / "CASIA" / "casia"
    for spk in ("liuchanhg", "wangzhe"):
        for emo in ("angry", "neutral"):
            for sid in (201, 202):
                wav(base / spk / emo / f"{sid}.wav", seconds=0.2 if sid == 201 else 0.3)
    (base / "相同的文本201--250.txt").write_bytes("201. 就是这样。\n202. 我们走吧。 \n".encode("gbk"))
    return base


def test_casia_fake_tree(tmp_path):
    base = casia_tree(tmp_path)
    recs = by_id(PREPARERS["casia"](base, None))
    assert len(recs) == 8
    u = recs["casia_wangzhe_angry_202"]
    assert (u.text, u.speaker, u.language, u.emotion, u.split) == ("我们走吧。", "wangzhe", "zh", "angry", "train")
    assert u.extra == {"sentence": 202, "gender": "M"}
    assert u.sampling_rate == 16000 and u.duration == pytest.approx(0.3)
    assert Path(u.audio).is_absolute() and Path(u.audio) == base / "wangzhe" / "angry" / "202.wav"
    assert recs["casia_liuchanhg_neutral_201"].text == "就是这样。"
    # the root may be a parent of the speaker folders
    assert by_id(PREPARERS["casia"](tmp_path, None)) == recs


def test_casia_unnumbered_transcript_uses_range_in_name(tmp_path):
    base = casia_tree(tmp_path)
    (base / "相同的文本201--250.txt").write_bytes("就是这样。\n我们走吧。\n".encode("gbk"))
    recs = by_id(PREPARERS["casia"](base, None))
    assert recs["casia_liuchanhg_angry_202"].text == "我们走吧。"


def test_casia_errors(tmp_path):
    base = casia_tree(tmp_path)
    wav(base / "wangzhe" / "angry" / "207.wav")
    with pytest.raises(RrpoError, match="no transcript line for sentence 207"):
        PREPARERS["casia"](base, None)
    (base / "wangzhe" / "angry" / "207.wav").unlink()
    wav(base / "wangzhe" / "bored" / "201.wav")
    with pytest.raises(RrpoError, match="'bored' is not in the casia mapping") as e:
        PREPARERS["casia"](base, None)
    assert e.value.path.endswith("bored")
    with pytest.raises(RrpoError, match="no CASIA corpus folder"):
        PREPARERS["casia"](tmp_path / "CASIA" / "casia" / "wangzhe" / "angry", None)


def test_prepare_is_idempotent_and_sorted(tmp_path):
    casia_tree(tmp_path)
    out = tmp_path / "m.jsonl"
    prepare_corpus("casia", tmp_path, out)
    first = out.read_bytes()
    prepare_corpus("casia", tmp_path, out)
    assert out.read_bytes() == first
    ids = [u.id for u in read_manifest(out)]
    assert ids == sorted(ids) and len(ids) == 8


# ----------------------------------------------------------------------------------------- ESD

ESD_ZH = {"Neutral": "中立", "Angry": "生气", "Happy": "快乐", "Sad": "伤心", "Surprise": "惊喜"}
ESD_OFFSET = {"Neutral": 0, "Angry": 350, "Happy": 700, "Sad": 1050, "Surprise": 1400}


def esd_transcript(spk: str, zh: bool) -> str:
    lines = []
    for emo, off in ESD_OFFSET.items():
        for k in range(1, 351):
            label = ESD_ZH[emo] if zh else emo
            lines.append(f"{spk}_{off + k:06d}\t{'句子' if zh else 'Sentence'} {k}\t{label}")
    return "\n".join(lines) + "\n"


def esd_tree(tmp: Path) -> Path:
    base = tmp / "Emotion Speech Dataset"
    # Mandarin speaker, flat layout, transcript in UTF-16 with a BOM
    (base / "0001").mkdir(parents=True)
    (base / "0001" / "0001.txt").write_bytes(esd_transcript("0001", True).encode("utf-16"))
    wav(base / "0001" / "Neutral" / "0001_000001.wav")  # k=1   evaluation
    wav(base / "0001" / "Angry" / "0001_000371.wav")  # k=21  test
    wav(base / "0001" / "Sad" / "0001_001100.wav")  # k=50  test
    # English speaker, split sub-folders, transcript in UTF-8 with a BOM and CRLF line ends
    (base / "0011").mkdir(parents=True)
    (base / "0011" / "0011.txt").write_bytes(esd_transcript("0011", False).replace("\n", "\r\n").encode("utf-8-sig"))
    wav(base / "0011" / "Happy" / "train" / "0011_000751.wav")  # k=51  train
    wav(base / "0011" / "Surprise" / "evaluation" / "0011_001420.wav")  # k=20  evaluation
    wav(base / "0011" / "Neutral" / "train" / "0011_000350.wav")  # k=350 train
    # a Mandarin speaker with a GBK transcript and no audio: no records
    (base / "0005").mkdir(parents=True)
    (base / "0005" / "0005.txt").write_bytes(esd_transcript("0005", True).encode("gbk"))
    return base


def test_esd_fake_tree(tmp_path):
    base = esd_tree(tmp_path)
    recs = by_id(PREPARERS["esd"](tmp_path, None))
    expect = {
        "esd_0001_000001": ("neutral", "evaluation", 1, "zh", "句子 1"),
        "esd_0001_000371": ("angry", "test", 21, "zh", "句子 21"),
        "esd_0001_001100": ("sad", "test", 50, "zh", "句子 50"),
        "esd_0011_000751": ("happy", "train", 51, "en", "Sentence 51"),
        "esd_0011_001420": ("surprise", "evaluation", 20, "en", "Sentence 20"),
        "esd_0011_000350": ("neutral", "train", 350, "en", "Sentence 350"),
    }
    assert set(recs) == set(expect)
    for uid, (emo, split, k, lang, text) in expect.items():
        u = recs[uid]
        assert (u.emotion, u.split, u.extra["sentence"], u.language, u.text) == (emo, split, k, lang, text), uid
    assert recs["esd_0001_000001"].extra["gender"] == "F" and recs["esd_0011_000751"].extra["gender"] == "M"
    assert recs["esd_0001_000371"].extra["esd_label"] == "生气"
    assert by_id(PREPARERS["esd"](base, None)) == recs


def test_esd_errors(tmp_path):
    base = esd_tree(tmp_path)
    bad = wav(base / "0011" / "Angry" / "0011_000100.wav")  # number 100 belongs to the Neutral block
    with pytest.raises(RrpoError, match="transcript labels '0011_000100' 'Neutral' but its audio lies in 'Angry'"):
        PREPARERS["esd"](base, None)
    bad.unlink()
    wav(base / "0011" / "Angry" / "0011_009999.wav")
    with pytest.raises(RrpoError, match="'0011_009999' has no line in 0011.txt"):
        PREPARERS["esd"](base, None)


@pytest.mark.parametrize(
    "k,split", [(1, "evaluation"), (20, "evaluation"), (21, "test"), (50, "test"), (51, "train"), (350, "train")]
)
def test_esd_official_split(k, split):
    from rrpo.data.corpora.esd import official_split

    assert official_split(k) == split


# ------------------------------------------------------------------------------------- RAVDESS


def test_ravdess_fake_tree(tmp_path):
    wav(tmp_path / "Actor_01" / "03-01-05-02-01-01-01.wav", sr=48000)
    wav(tmp_path / "Actor_02" / "03-01-01-01-02-02-02.wav", sr=48000)
    wav(tmp_path / "song" / "Actor_02" / "03-02-03-01-01-01-02.wav", sr=48000)
    (tmp_path / "Actor_01" / "notes.txt").write_text("not audio")
    recs = by_id(PREPARERS["ravdess"](tmp_path, None))
    assert set(recs) == {"ravdess_03-01-05-02-01-01-01", "ravdess_03-01-01-01-02-02-02", "ravdess_03-02-03-01-01-01-02"}
    u = recs["ravdess_03-01-05-02-01-01-01"]
    assert (u.emotion, u.text, u.speaker, u.language, u.sampling_rate) == (
        "angry",
        "Kids are talking by the door.",
        "Actor_01",
        "en",
        48000,
    )
    assert u.extra == {
        "intensity": "strong",
        "statement": 1,
        "repetition": 1,
        "vocal_channel": "speech",
        "modality": "audio-only",
        "gender": "M",
    }
    v = recs["ravdess_03-01-01-01-02-02-02"]
    assert (v.emotion, v.text, v.speaker, v.extra["gender"], v.extra["repetition"]) == (
        "neutral",
        "Dogs are sitting by the door.",
        "Actor_02",
        "F",
        2,
    )
    assert recs["ravdess_03-02-03-01-01-01-02"].extra["vocal_channel"] == "song"
    assert recs["ravdess_03-02-03-01-01-01-02"].emotion == "happy"


@pytest.mark.parametrize(
    "name,message",
    [
        ("03-01-09-01-01-01-01.wav", "'09' is not in the ravdess mapping"),
        ("03-01-05-03-01-01-01.wav", "intensity code '03'"),
        ("03-01-05-01-01-01-25.wav", "actor number 25"),
        ("angry_take1.wav", "not a RAVDESS identifier"),
    ],
)
def test_ravdess_bad_names(tmp_path, name, message):
    wav(tmp_path / "Actor_01" / name)
    with pytest.raises(RrpoError, match=message):
        PREPARERS["ravdess"](tmp_path, None)


# -------------------------------------------------------------------------------------- CREMA-D


def test_cremad_fake_tree(tmp_path):
    wav(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    wav(tmp_path / "AudioWAV" / "1002_IEO_HAP_HI.wav")
    wav(tmp_path / "AudioWAV" / "1002_TSI_DIS_LO.wav")
    (tmp_path / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n1002,21,Female,Caucasian,Not Hispanic\n"
    )
    recs = by_id(PREPARERS["crema-d"](tmp_path, None))
    assert set(recs) == {"cremad_1001_DFA_ANG_XX", "cremad_1002_IEO_HAP_HI", "cremad_1002_TSI_DIS_LO"}
    u = recs["cremad_1002_IEO_HAP_HI"]
    assert (u.emotion, u.text, u.speaker, u.language, u.split) == (
        "happy",
        "It's eleven o'clock.",
        "1002",
        "en",
        "train",
    )
    assert u.extra == {"sentence": "IEO", "level": "HI", "intensity": "high", "gender": "F", "age": 21}
    assert recs["cremad_1001_DFA_ANG_XX"].extra["intensity"] == "unspecified"
    assert recs["cremad_1001_DFA_ANG_XX"].extra["gender"] == "M"
    assert recs["cremad_1002_TSI_DIS_LO"].emotion == "disgust"
    # --root may be the AudioWAV folder itself (no demographics then)
    assert set(by_id(PREPARERS["crema-d"](tmp_path / "AudioWAV", None))) == set(recs)


@pytest.mark.parametrize(
    "name,message",
    [
        ("1001_XYZ_ANG_XX.wav", "sentence code 'XYZ'"),
        ("1001_DFA_BOR_XX.wav", "'BOR' is not in the crema-d mapping"),
        ("1001_DFA_ANG_ZZ.wav", "level 'ZZ'"),
        ("1001-DFA-ANG-XX.wav", "not <actor>_<sentence>_<EMO>_<level>"),
    ],
)
def test_cremad_bad_names(tmp_path, name, message):
    wav(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    wav(tmp_path / "AudioWAV" / name)
    with pytest.raises(RrpoError, match=message):
        PREPARERS["crema-d"](tmp_path, None)


# -------------------------------------------------------------------------------------- IEMOCAP

EVAL_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def iemocap_tree(tmp: Path) -> Path:
    root = tmp / "IEMOCAP_full_release"
    s1 = root / "Session1"
    (s1 / "dialog" / "EmoEvaluation" / "Categorical").mkdir(parents=True)
    (s1 / "dialog" / "transcriptions").mkdir(parents=True)
    (s1 / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(
        EVAL_HEADER
        + "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
        + "C-E2:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"
        + "[10.0100 - 11.3925]\tSes01F_impro01_M001\texc\t[3.5000, 3.5000, 3.0000]\n"
        + "[14.8872 - 18.0175]\tSes01F_impro01_F002\tfru\t[2.0000, 3.0000, 3.0000]\n"
        + "[19.2900 - 20.7875]\tSes01F_impro01_M003\txxx\t[2.5000, 3.0000, 3.0000]\n"
    )
    (s1 / "dialog" / "EmoEvaluation" / "Categorical" / "Ses01F_impro01_e1_cat.txt").write_text("ignored\n")
    (s1 / "dialog" / "transcriptions" / "Ses01F_impro01.txt").write_text(
        "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"
        "Ses01F_impro01_M001 [010.0100-011.3925]: Do you have your forms?\n"
        "Ses01F_impro01_F002 [014.8872-018.0175]: Yeah.\n"
        "Ses01F_impro01_M003 [019.2900-020.7875]: Let me see them.\n"
        "M: [LAUGHTER]\n"
    )
    for utt in ("Ses01F_impro01_F000", "Ses01F_impro01_M001", "Ses01F_impro01_F002", "Ses01F_impro01_M003"):
        wav(s1 / "sentences" / "wav" / "Ses01F_impro01" / f"{utt}.wav")
    s2 = root / "Session2"
    (s2 / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (s2 / "dialog" / "transcriptions").mkdir(parents=True)
    (s2 / "dialog" / "EmoEvaluation" / "Ses02M_script01_1.txt").write_text(
        EVAL_HEADER
        + "[1.0000 - 2.5000]\tSes02M_script01_1_F003\tang\t[1.5000, 4.0000, 4.0000]\n"
        + "[3.0000 - 4.5000]\tSes02M_script01_1_M004\tsad\t[1.5000, 2.0000, 2.0000]\n"
    )
    (s2 / "dialog" / "transcriptions" / "Ses02M_script01_1.txt").write_text(
        "Ses02M_script01_1_F003 [001.0000-002.5000]: What is it?\n"
        "Ses02M_script01_1_M004 [003.0000-004.5000]: Nothing.\n"
    )
    wav(s2 / "sentences" / "wav" / "Ses02M_script01_1" / "Ses02M_script01_1_F003.wav")
    wav(s2 / "sentences" / "wav" / "Ses02M_script01_1" / "Ses02M_script01_1_M004.wav")
    return root


def test_iemocap_fake_tree(tmp_path):
    iemocap_tree(tmp_path)
    recs = by_id(PREPARERS["iemocap"](tmp_path, None))
    # frustrated and unlabelled (xxx) utterances are left out; excited becomes happy
    assert set(recs) == {
        "iemocap_Ses01F_impro01_F000",
        "iemocap_Ses01F_impro01_M001",
        "iemocap_Ses02M_script01_1_F003",
        "iemocap_Ses02M_script01_1_M004",
    }
    u = recs["iemocap_Ses01F_impro01_M001"]
    assert (u.emotion, u.text, u.speaker, u.language) == ("happy", "Do you have your forms?", "Ses01M", "en")
    assert u.extra == {
        "fold": 1,
        "dialog": "Ses01F_impro01",
        "label": "exc",
        "start": 10.01,
        "end": 11.3925,
        "vad": [3.5, 3.5, 3.0],
        "improvised": True,
        "gender": "M",
    }
    f = recs["iemocap_Ses02M_script01_1_F003"]
    assert (f.emotion, f.speaker, f.extra["fold"], f.extra["improvised"], f.text) == (
        "angry",
        "Ses02F",
        2,
        False,
        "What is it?",
    )
    assert recs["iemocap_Ses01F_impro01_F000"].emotion == "neutral"
    assert recs["iemocap_Ses02M_script01_1_M004"].emotion == "sad"


def test_iemocap_unknown_label_names_line(tmp_path):
    root = iemocap_tree(tmp_path)
    ev = root / "Session2" / "dialog" / "EmoEvaluation" / "Ses02M_script01_1.txt"
    ev.write_text(ev.read_text().replace("\tsad\t", "\tbor\t"))
    with pytest.raises(RrpoError, match="'bor' is not in the iemocap mapping") as e:
        PREPARERS["iemocap"](root, None)
    assert e.value.path == str(ev) and e.value.line == 4


# ------------------------------------------------------------------------------ csv / jsonl


def test_csv_import(tmp_path):
    wav(tmp_path / "clips" / "a.wav", sr=22050)
    wav(tmp_path / "clips" / "b.wav")
    (tmp_path / "list.csv").write_text(
        "audio,text,speaker,emotion,split,gender\n"
        'clips/a.wav,"Hello, there.",s1,joy,test,F\n'
        "clips/b.wav,,s2,Neutral,,\n",
        encoding="utf-8-sig",
    )
    recs = by_id(PREPARERS["csv"](tmp_path / "list.csv", "en"))
    a, b = recs["clips/a"], recs["clips/b"]
    assert (a.text, a.speaker, a.emotion, a.split, a.language, a.sampling_rate) == (
        "Hello, there.",
        "s1",
        "happy",
        "test",
        "en",
        22050,
    )
    assert a.extra == {"gender": "F"} and b.extra == {}
    assert (b.text, b.emotion, b.split) == ("", "neutral", "train")
    assert a.audio == str(tmp_path / "clips" / "a.wav")


def test_tsv_and_jsonl_import(tmp_path):
    wav(tmp_path / "a.wav")
    (tmp_path / "list.tsv").write_text("id\taudio\ttext\tspeaker\temotion\tlanguage\nu1\ta.wav\t你好\tzh1\tanger\tzh\n")
    (u,) = PREPARERS["csv"](tmp_path / "list.tsv", None)
    assert (u.id, u.text, u.emotion, u.language) == ("u1", "你好", "angry", "zh")
    (tmp_path / "list.jsonl").write_text(
        json.dumps(
            {
                "id": "u2",
                "audio": str(tmp_path / "a.wav"),
                "text": "hi",
                "speaker": "x",
                "emotion": "sadness",
                "language": "en",
                "extra": {"take": 3},
                "mood": "low",
            }
        )
        + "\n\n"
    )
    (v,) = PREPARERS["jsonl"](tmp_path / "list.jsonl", None)
    assert (v.id, v.emotion, v.language, v.extra) == ("u2", "sad", "en", {"mood": "low", "take": 3})


@pytest.mark.parametrize(
    "rows,message,line",
    [
        ("audio,text,speaker\n", "missing column(s) emotion", 1),
        ("audio,text,speaker,emotion\na.wav,x,s,happy\n", "no language", 2),
        (
            "audio,text,speaker,emotion,language\na.wav,x,s,happy,en\na.wav,y,s,sad,en\n",
            "duplicate id 'a' (first on line 2)",
            3,
        ),
        ("audio,text,speaker,emotion,language\na.wav,x,s,bored,en\n", "'bored' is not in the generic mapping", 2),
        ("audio,text,speaker,emotion,language\na.wav,x,,happy,en\n", "'speaker' must be a non-empty string", 2),
        ("audio,text,speaker,emotion,language\na.wav,x,s,happy,en,extra\n", "row has 6 fields, the header 5", 2),
    ],
)
def test_csv_errors_name_line(tmp_path, rows, message, line):
    wav(tmp_path / "a.wav")
    (tmp_path / "list.csv").write_text(rows)
    with pytest.raises(RrpoError) as e:
        PREPARERS["csv"](tmp_path / "list.csv", None)
    assert message in e.value.reason
    assert (e.value.path, e.value.line) == (str(tmp_path / "list.csv"), line)


def test_csv_missing_audio_names_both_files(tmp_path):
    (tmp_path / "list.csv").write_text("audio,text,speaker,emotion,language\nnone.wav,x,s,happy,en\n")
    with pytest.raises(RrpoError, match=r"none\.wav: audio file not found \(listed on line 2 of list\.csv\)"):
        PREPARERS["csv"](tmp_path / "list.csv", None)


# ------------------------------------------------------------------------- shared real data


def _reference(path: Path) -> dict[str, dict]:
    return {json.loads(line)["path"]: json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()}


@pytest.mark.shared_data
def test_casia_on_shared_data(shared_data, tmp_path):
    man = prepare_corpus("casia", shared_data / "casia", tmp_path / "casia.jsonl")
    assert len(man) == 1200
    ref = _reference(shared_data / "casia" / "MANIFEST.jsonl")
    assert len(ref) == 1200
    got = {str(Path(u.audio).relative_to(shared_data / "casia")): u for u in man}
    assert set(got) == set(ref)
    for path, r in ref.items():
        u = got[path]
        assert (u.text, u.emotion, u.speaker, u.language) == (r["text"], r["emotion"], r["speaker"], r["language"]), (
            path
        )
        assert u.sampling_rate == r["sample_rate"] and u.duration == pytest.approx(r["duration_s"], abs=1e-3)
        assert u.extra["gender"] == r["gender"]
    assert {u.speaker for u in man} == {"ZhaoZuoxiang", "liuchanhg", "wangzhe", "zhaoquanyin"}
    assert len({u.text for u in man}) == 50


@pytest.mark.shared_data
def test_esd_on_shared_data(shared_data, tmp_path):
    man = prepare_corpus("esd", shared_data / "esd", tmp_path / "esd.jsonl")
    assert len(man) == 350
    ref = _reference(shared_data / "esd" / "MANIFEST.jsonl")
    got = {str(Path(u.audio).relative_to(shared_data / "esd")): u for u in man}
    assert set(got) == set(ref)
    for path, r in ref.items():
        u = got[path]
        assert (u.text, u.emotion, u.speaker, u.language) == (r["text"], r["emotion"], r["speaker"], r["language"]), (
            path
        )
        assert (u.split, u.extra["sentence"]) == (r["esd_official_split"], r["sentence_index"]), path
        assert u.duration == pytest.approx(r["duration_s"], abs=1e-3)


@pytest.mark.shared_data
def test_esd_transcripts_of_all_speakers_parse(shared_data):
    """The transcripts of all 20 speakers decode, and their labels map to the five ESD emotions."""
    from rrpo.data.corpora.esd import read_transcript
    from rrpo.data.emotions import ESD_CLASSES, normalise_emotion

    base = shared_data / "esd" / "Emotion Speech Dataset"
    for n in range(1, 21):
        spk = f"{n:04d}"
        t = read_transcript(base / spk / f"{spk}.txt")
        assert len(t) == 1750, spk
        emotions = [normalise_emotion(label, "esd") for _, label, _ in t.values()]
        assert sorted(set(emotions)) == sorted(ESD_CLASSES)
        assert all(text.strip() for text, _, _ in t.values())
