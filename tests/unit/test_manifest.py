"""Manifests: round trip, validation on read and write (file and line named), select."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rrpo.data.manifest import FIELDS, Manifest, Utterance, read_manifest, write_manifest
from rrpo.errors import RrpoError


def utt(i: int, **kw) -> Utterance:
    base = dict(
        id=f"u{i}",
        audio=f"wav/u{i}.wav",
        sampling_rate=16000,
        duration=1.5 + i,
        text=f"句子 {i}",
        speaker=f"s{i % 2}",
        language="zh" if i % 2 else "en",
        emotion=("neutral", "happy", "angry")[i % 3],
        split=("train", "test")[i % 2],
        extra={"sentence": i},
    )
    base.update(kw)
    return Utterance(**base)


def record(**kw) -> dict:
    r = utt(0).to_json()
    r.update(kw)
    return r


def write_lines(path: Path, lines: list) -> Path:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n" for x in lines),
        encoding="utf-8",
    )
    return path


def test_round_trip(tmp_path):
    recs = [utt(i) for i in range(5)]
    out = tmp_path / "sub" / "m.jsonl"
    man = write_manifest(out, recs)
    assert man.path == out and list(man) == recs
    back = read_manifest(out)
    assert list(back) == recs and back.path == out
    # one JSON object per line, the fields in their documented order, non-ASCII kept readable
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5 and list(json.loads(lines[0])) == list(FIELDS) + ["extra"]
    assert "句子" in lines[0]
    # writing the same records again gives the same bytes
    first = out.read_bytes()
    write_manifest(out, back)
    assert out.read_bytes() == first


def test_audio_path_relative_to_manifest(tmp_path):
    man = write_manifest(tmp_path / "m.jsonl", [utt(1), utt(2, audio="/abs/x.wav")])
    assert man.audio_path(man[0]) == tmp_path / "wav" / "u1.wav"
    assert man.audio_path(man[1]) == Path("/abs/x.wav")
    assert Manifest([utt(1)]).audio_path(utt(1)) == Path("wav/u1.wav")
    assert set(man.by_id()) == {"u1", "u2"}


def test_blank_lines_and_bom_are_accepted(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(record()).encode() + b"\n\n  \n" + json.dumps(record(id="b")).encode())
    assert [u.id for u in read_manifest(p)] == ["u0", "b"]


@pytest.mark.parametrize(
    "bad,message",
    [
        (record(id=""), "field 'id' must be a non-empty string"),
        (record(audio=None), "field 'audio' must be a non-empty string"),
        (record(sampling_rate="16000"), "'sampling_rate' must be a positive integer"),
        (record(sampling_rate=16000.0), "'sampling_rate' must be a positive integer"),
        (record(sampling_rate=0), "'sampling_rate' must be a positive integer"),
        (record(duration=0), "'duration' must be a positive number"),
        (record(duration=-1.0), "'duration' must be a positive number"),
        (record(duration=True), "'duration' must be a positive number"),
        (
            '{"id": "u0", "audio": "a.wav", "sampling_rate": 16000, "duration": NaN, "text": "", "speaker": "s",'
            ' "language": "en", "emotion": "sad", "split": "train"}',
            "'duration' must be a positive number",
        ),
        (
            '{"id": "u0", "audio": "a.wav", "sampling_rate": 16000, "duration": Infinity, "text": "", "speaker": "s",'
            ' "language": "en", "emotion": "sad", "split": "train"}',
            "'duration' must be a positive number",
        ),
        (record(text=3), "field 'text' must be a string"),
        (record(emotion="bored"), "emotion 'bored' is not in the vocabulary"),
        (record(emotion="Happy"), "emotion 'Happy' is not in the vocabulary"),
        (record(extra=[1]), "field 'extra' must be a mapping"),
        ({k: v for k, v in record().items() if k not in ("speaker", "split")}, "missing field(s) speaker, split"),
        (record(gender="F"), "unknown field(s) gender (put free data under 'extra')"),
        ([1, 2], "a record must be a JSON object, got list"),
    ],
)
def test_invalid_record_names_file_and_line(tmp_path, bad, message):
    p = write_lines(tmp_path / "m.jsonl", [record(id="ok1"), "", bad])
    with pytest.raises(RrpoError) as e:
        read_manifest(p)
    assert (e.value.path, e.value.line) == (str(p), 3)
    assert e.value.reason.startswith("invalid record: ") and message in e.value.reason
    assert e.value.format().startswith(f"{p}:3: invalid record")


def test_malformed_line(tmp_path):
    p = write_lines(tmp_path / "m.jsonl", [record(), '{"id": "u1", "audio": '])
    with pytest.raises(RrpoError, match="malformed manifest line") as e:
        read_manifest(p)
    assert e.value.line == 2


def test_duplicate_id_names_both_lines(tmp_path):
    p = write_lines(tmp_path / "m.jsonl", [record(), record(id="x"), record()])
    with pytest.raises(RrpoError, match=r"duplicate id 'u0' \(first on line 1\)") as e:
        read_manifest(p)
    assert e.value.line == 3


def test_not_utf8_names_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(
        json.dumps(record()).encode()
        + b"\n"
        + json.dumps(record(id="x", text="文")).encode("gbk").replace(b"\\u6587", "文".encode("gbk"))
        + b"\n"
    )
    with pytest.raises(RrpoError, match="not UTF-8") as e:
        read_manifest(p)
    assert e.value.line == 2


def test_missing_folder_empty(tmp_path):
    with pytest.raises(RrpoError, match="manifest not found"):
        read_manifest(tmp_path / "none.jsonl")
    with pytest.raises(RrpoError, match="is a folder"):
        read_manifest(tmp_path)
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(RrpoError, match="holds no records"):
        read_manifest(tmp_path / "e.jsonl")


def test_write_validates_and_keeps_earlier_file(tmp_path):
    out = tmp_path / "m.jsonl"
    write_manifest(out, [utt(1)])
    before = out.read_bytes()
    with pytest.raises(RrpoError, match=r"record 2 \(u2\) is invalid: emotion 'joy'") as e:
        write_manifest(out, [utt(1), utt(2, emotion="joy")])
    assert e.value.path == str(out)
    with pytest.raises(RrpoError, match=r"duplicate id 'u1' \(record 2\)"):
        write_manifest(out, [utt(1), utt(1)])
    with pytest.raises(RrpoError, match="no records"):
        write_manifest(out, [])
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]


def test_select():
    man = Manifest([utt(i) for i in range(6)], "m.jsonl")
    # u0 en/train/neutral/s0, u1 zh/test/happy/s1, u2 en/train/angry/s0, u3 zh/test/neutral/s1, ...
    assert [u.id for u in man.select(split="train")] == ["u0", "u2", "u4"]
    assert [u.id for u in man.select(split=["train", "test"])] == [f"u{i}" for i in range(6)]
    assert [u.id for u in man.select(language="zh", emotions=["neutral", "happy"])] == ["u1", "u3"]
    assert [u.id for u in man.select(speakers={"s1"})] == ["u1", "u3", "u5"]
    assert [u.id for u in man.select(exclude_speakers=["s1"], emotions=("angry",))] == ["u2"]
    assert man.select(split="evaluation") == []
    sel = man.select(language="en")
    assert isinstance(sel, Manifest) and sel.path == Path("m.jsonl")
    assert len(man) == 6  # select does not modify the manifest


# ------------------------------------------------------------------------------------ emotions


def test_normalise_emotion():
    from rrpo.data.emotions import CORPUS_MAPPINGS, EMOTIONS, normalise_emotion

    assert normalise_emotion("Neutral", "esd") == "neutral" and normalise_emotion("惊喜", "esd") == "surprise"
    assert normalise_emotion("exc", "iemocap") == "happy" and normalise_emotion(" ANG ", "crema-d") == "angry"
    assert normalise_emotion("02", "ravdess") == "calm" and normalise_emotion("Joy") == "happy"
    with pytest.raises(RrpoError, match=r"emotion label 'fru' is not in the iemocap mapping") as e:
        normalise_emotion("fru", "iemocap", "x.txt")
    assert e.value.path == "x.txt"
    with pytest.raises(RrpoError, match="no emotion mapping for corpus 'tess'"):
        normalise_emotion("happy", "tess")
    for corpus, mapping in CORPUS_MAPPINGS.items():
        assert set(mapping.values()) <= set(EMOTIONS), corpus


def test_check_classes():
    from rrpo.data.emotions import ESD_CLASSES, check_classes
    from rrpo.errors import ConfigError

    assert check_classes(list(ESD_CLASSES)) == ESD_CLASSES
    for bad, msg in (
        (["happy", "joy"], "unknown emotion class"),
        (["sad", "sad"], "repeat"),
        (["sad"], "at least two"),
    ):
        with pytest.raises(RrpoError, match=msg):
            check_classes(bad)
    with pytest.raises(ConfigError, match=r"config key 'model.classes': unknown emotion class\(es\) \['joy'\]"):
        check_classes(["joy", "sad"], key="model.classes")
