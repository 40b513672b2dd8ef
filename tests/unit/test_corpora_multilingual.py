"""The pre-training corpora's preparers (ASED, nEMO, URDU) on small generated trees in each corpus'
own layout (short sine clips, WAV and FLAC), and on the real files in ../shared/data when present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rrpo.data.corpora import PREPARERS, prepare_corpus
from rrpo.data.manifest import read_manifest
from rrpo.errors import RrpoError


def clip(path: Path, seconds: float = 0.25, sr: int = 16000) -> Path:
    """Write a short sine; FLAC or WAV by the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, subtype="PCM_16")
    return path


def by_id(records):
    return {u.id: u for u in records}


# ---------------------------------------------------------------------------------------- ASED


def ased_tree(tmp: Path, suffix: str = ".flac") -> Path:
    base = tmp / "ASED_V1"
    clip(base / "01Neutral" / f"n1-01-01-01-01{suffix}")
    clip(base / "02Fearful" / f"f2-02-02-02-50{suffix}", seconds=0.5)
    clip(base / "05Angry" / f"a5-01-02-02-50{suffix}")
    (base / "README.md").parent.mkdir(parents=True, exist_ok=True)
    (base / "README.md").write_text("not audio")
    return base


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_ased_fake_tree(tmp_path, suffix):
    base = ased_tree(tmp_path, suffix)
    recs = by_id(PREPARERS["ased"](tmp_path, None))  # the root may be a parent of the corpus folder
    assert set(recs) == {"ased_n1-01-01-01-01", "ased_f2-02-02-02-50", "ased_a5-01-02-02-50"}
    u = recs["ased_f2-02-02-02-50"]
    assert (u.emotion, u.speaker, u.language, u.split, u.text) == ("fear", "ased50", "am", "train", "")
    assert u.extra == {"sentence": 2, "repetition": 2, "gender": "M"}
    assert u.duration == pytest.approx(0.5) and Path(u.audio) == base / "02Fearful" / f"f2-02-02-02-50{suffix}"
    assert recs["ased_n1-01-01-01-01"].extra["gender"] == "F"
    assert recs["ased_a5-01-02-02-50"].emotion == "angry" and recs["ased_n1-01-01-01-01"].emotion == "neutral"
    assert by_id(PREPARERS["ased"](base, None)) == recs


def test_ased_errors(tmp_path):
    base = ased_tree(tmp_path)
    bad = clip(base / "05Angry" / "h3-01-01-01-02.flac")
    with pytest.raises(RrpoError, match="file name says emotion 'h3' but the clip lies in '05Angry'"):
        PREPARERS["ased"](base, None)
    bad.unlink()
    clip(base / "06Bored" / "b6-01-01-01-02.flac")
    with pytest.raises(RrpoError, match="'Bored' is not in the ased mapping") as e:
        PREPARERS["ased"](base, None)
    assert e.value.path.endswith("06Bored")
    (base / "06Bored" / "b6-01-01-01-02.flac").unlink()
    (base / "06Bored").rmdir()
    clip(base / "05Angry" / "a5-01-01-01-03.wav")
    clip(base / "05Angry" / "a5-01-01-01-03.flac")
    with pytest.raises(RrpoError, match="clip stored twice"):
        PREPARERS["ased"](base, None)


# ---------------------------------------------------------------------------------------- nEMO

NEMO_HEADER = "file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n"


def nemo_tree(tmp: Path, suffix: str = ".flac") -> Path:
    base = tmp / "nEMO"
    clip(base / "samples" / f"EB0_anger_1{suffix}")
    clip(base / "samples" / f"KD0_surprised_3{suffix}")
    (base / "data.tsv").write_text(
        NEMO_HEADER
        + "EB0_anger_1.wav\tanger\tZdanie pierwsze.\tzdanie pierwsze\t        EB0\tmale\t23\n"
        + "KD0_surprised_3.wav\tsurprised\tZdanie drugie?\tzdanie drugie\t        KD0\tfemale\t28\n"
        + "KD0_fear_4.wav\tfear\tBez nagrania.\tbez nagrania\t        KD0\tfemale\t28\n",
        encoding="utf-8",
    )
    return base


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_nemo_fake_tree(tmp_path, suffix):
    base = nemo_tree(tmp_path, suffix)
    recs = by_id(PREPARERS["nemo"](tmp_path, None))
    assert set(recs) == {"nemo_EB0_anger_1", "nemo_KD0_surprised_3"}  # the row without a clip is skipped
    u = recs["nemo_KD0_surprised_3"]
    assert (u.emotion, u.speaker, u.language, u.text, u.split) == ("surprise", "KD0", "pl", "Zdanie drugie?", "train")
    assert u.extra == {"take": 3, "gender": "F", "age": 28}
    assert recs["nemo_EB0_anger_1"].emotion == "angry" and recs["nemo_EB0_anger_1"].extra["gender"] == "M"
    assert by_id(PREPARERS["nemo"](base, None)) == recs


def test_nemo_errors(tmp_path):
    base = nemo_tree(tmp_path)
    tsv = base / "data.tsv"
    tsv.write_text(tsv.read_text().replace("\tanger\t", "\tboredom\t"))
    with pytest.raises(RrpoError, match="'boredom' is not in the nemo mapping") as e:
        PREPARERS["nemo"](base, None)
    assert (e.value.path, e.value.line) == (str(tsv), 2)
    nemo_tree(tmp_path)
    clip(base / "samples" / "WR0_sadness_1.flac")
    with pytest.raises(RrpoError, match="clip has no row in data.tsv"):
        PREPARERS["nemo"](base, None)
    (base / "samples" / "WR0_sadness_1.flac").unlink()
    tsv.write_text(tsv.read_text().replace("        EB0", "        XX0"))
    with pytest.raises(RrpoError, match="row says speaker 'XX0'"):
        PREPARERS["nemo"](base, None)


# ---------------------------------------------------------------------------------------- URDU


def urdu_tree(tmp: Path, suffix: str = ".flac") -> Path:
    base = tmp / "URDU-Dataset"
    clip(base / "Angry" / f"SM1_F10_A010{suffix}")
    clip(base / "Sad" / f"SF6_F2_S02{suffix}", sr=44100)
    clip(base / "Neutral" / f"SM1_F3_N03{suffix}")
    return base


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_urdu_fake_tree(tmp_path, suffix):
    base = urdu_tree(tmp_path, suffix)
    recs = by_id(PREPARERS["urdu"](tmp_path, None))
    assert set(recs) == {"urdu_SM1_F10_A010", "urdu_SF6_F2_S02", "urdu_SM1_F3_N03"}
    u = recs["urdu_SF6_F2_S02"]
    assert (u.emotion, u.speaker, u.language, u.sampling_rate, u.text) == ("sad", "SF6", "ur", 44100, "")
    assert u.extra == {"gender": "F", "take": "F2"}
    assert recs["urdu_SM1_F10_A010"].emotion == "angry" and recs["urdu_SM1_F10_A010"].extra["gender"] == "M"
    assert by_id(PREPARERS["urdu"](base, None)) == recs


def test_urdu_errors(tmp_path):
    base = urdu_tree(tmp_path)
    clip(base / "Happy" / "SM1_F4_A04.flac")
    with pytest.raises(RrpoError, match="file name says emotion 'A' but the clip lies in 'Happy'"):
        PREPARERS["urdu"](base, None)
    (base / "Happy" / "SM1_F4_A04.flac").unlink()
    clip(base / "Bored" / "SM1_F4_B04.flac")
    with pytest.raises(RrpoError, match="'Bored' is not in the urdu mapping"):
        PREPARERS["urdu"](base, None)
    (base / "Bored" / "SM1_F4_B04.flac").unlink()
    clip(base / "Happy" / "talkshow-4.flac")
    with pytest.raises(RrpoError, match="file name is not S<M|F><n>_F<m>_<E><k>"):
        PREPARERS["urdu"](base, None)


# ------------------------------------------------------------------------------ common behaviour

TREES = {"ased": ased_tree, "nemo": nemo_tree, "urdu": urdu_tree}


@pytest.mark.parametrize("corpus", sorted(TREES))
def test_wrong_root_is_one_line_error(tmp_path, corpus):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(RrpoError, match="corpus folder") as e:
        prepare_corpus(corpus, tmp_path / "empty", tmp_path / "m.jsonl")
    assert "\n" not in e.value.format() and not (tmp_path / "m.jsonl").exists()


@pytest.mark.parametrize("corpus", sorted(TREES))
def test_unreadable_clip_names_file_and_writes_nothing(tmp_path, corpus):
    base = TREES[corpus](tmp_path)
    out = tmp_path / "m.jsonl"
    prepare_corpus(corpus, base, out)
    first = out.read_bytes()
    victim = sorted(base.rglob("*.flac"))[0]
    victim.write_bytes(b"this is not audio at all")
    with pytest.raises(RrpoError, match="not a readable audio file") as e:
        prepare_corpus(corpus, base, out)
    assert e.value.path == str(victim)
    assert out.read_bytes() == first  # the earlier manifest stays whole
    victim.write_bytes(b"")
    with pytest.raises(RrpoError, match="empty"):
        prepare_corpus(corpus, base, out)


@pytest.mark.parametrize("corpus", sorted(TREES))
def test_prepare_is_idempotent(tmp_path, corpus):
    base = TREES[corpus](tmp_path)
    out = tmp_path / "m.jsonl"
    prepare_corpus(corpus, base, out)
    first = out.read_bytes()
    prepare_corpus(corpus, base, out)
    assert out.read_bytes() == first
    ids = [u.id for u in read_manifest(out)]
    assert ids == sorted(ids)


# ------------------------------------------------------------------------- shared real data

EXPECT = {  # clips, speakers, emotions: from ../shared/data/README.md
    "ased": (624, 47, {"neutral", "fear", "happy", "sad", "angry"}, "am"),
    "nemo": (424, 9, {"neutral", "fear", "happy", "sad", "angry", "surprise"}, "pl"),
    "urdu": (400, 29, {"neutral", "happy", "sad", "angry"}, "ur"),
}


@pytest.mark.shared_data
@pytest.mark.parametrize("corpus", sorted(EXPECT))
def test_on_shared_data(shared_data, tmp_path, corpus):
    root = shared_data / corpus
    if not root.is_dir():
        pytest.skip(f"{root} absent")
    man = prepare_corpus(corpus, root, tmp_path / f"{corpus}.jsonl")
    n, speakers, emotions, lang = EXPECT[corpus]
    assert len(man) == n and len({u.speaker for u in man}) == speakers
    assert {u.emotion for u in man} == emotions and {u.language for u in man} == {lang}
    prov = [json.loads(line) for line in (root / "PROVENANCE.jsonl").read_text().splitlines()]
    assert {str(Path(u.audio).relative_to(root)) for u in man} == {p["path"] for p in prov}
    assert all(u.sampling_rate == 16000 for u in man)
