"""Bad input through the ``rrpo`` command: one line naming the file (and line) and the reason, exit
status 2, no traceback, and an earlier output left byte-identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rrpo.cli import main
from rrpo.data.manifest import Utterance, write_manifest


def tone(path: Path, x: np.ndarray | None = None, sr: int = 16000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if x is None:
        x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(sr // 4) / sr)).astype(np.float32)
    sf.write(str(path), x, sr, subtype=subtype)
    return path


@pytest.fixture
def earlier(tmp_path) -> Path:
    """An output manifest from an earlier, successful run."""
    audio = tone(tmp_path / "old" / "a.wav")
    return write_manifest(
        tmp_path / "out" / "manifest.jsonl",
        [
            Utterance(
                id="old",
                audio=str(audio),
                sampling_rate=16000,
                duration=0.25,
                text="t",
                speaker="s",
                language="en",
                emotion="sad",
                split="train",
            )
        ],
    ).path


def fails(capsys, argv: list[str], *fragments: str) -> str:
    """Run the CLI, expect exit 2 and exactly one stderr line holding every fragment; return it."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("rrpo: error: ")
    for frag in fragments:
        assert str(frag) in line, (frag, line)
    return line


def prepare_fails(capsys, earlier: Path, argv: list[str], *fragments: str) -> str:
    before = earlier.read_bytes()
    line = fails(capsys, ["prepare", *argv, f"out={earlier}"], *fragments)
    assert earlier.read_bytes() == before
    assert [p.name for p in earlier.parent.iterdir()] == [earlier.name]  # no temporary file left behind
    return line


def csv_list(tmp_path: Path, rows: list[str], header: str = "audio,text,speaker,emotion,language") -> Path:
    p = tmp_path / "list.csv"
    p.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return p


# ------------------------------------------------------------------------------ audio files


def test_missing_audio(tmp_path, capsys, earlier):
    lst = csv_list(tmp_path, ["clips/gone.wav,hello,s1,happy,en"])
    prepare_fails(
        capsys,
        earlier,
        ["corpus=csv", f"root={lst}"],
        tmp_path / "clips" / "gone.wav",
        "audio file not found",
        "line 2 of list.csv",
    )


def test_missing_corpus_root(tmp_path, capsys, earlier):
    prepare_fails(
        capsys, earlier, ["corpus=casia", f"root={tmp_path / 'nowhere'}"], tmp_path / "nowhere", "corpus root not found"
    )


def test_empty_audio(tmp_path, capsys, earlier):
    tone(tmp_path / "casia" / "spk" / "angry" / "201.wav")
    bad = tmp_path / "casia" / "spk" / "angry" / "202.wav"
    bad.write_bytes(b"")
    (tmp_path / "casia" / "相同的文本201--250.txt").write_bytes("201. 一。\n202. 二。\n".encode("gbk"))
    prepare_fails(
        capsys, earlier, ["corpus=casia", f"root={tmp_path / 'casia'}"], f"{bad}: audio file is empty (0 bytes)"
    )


def test_truncated_audio(tmp_path, capsys, earlier):
    good = tone(tmp_path / "Actor_01" / "03-01-05-01-01-01-01.wav")
    bad = tmp_path / "Actor_01" / "03-01-05-01-01-02-01.wav"
    bad.write_bytes(good.read_bytes()[:3000])
    prepare_fails(
        capsys, earlier, ["corpus=ravdess", f"root={tmp_path / 'Actor_01'}"], f"{bad}: audio file is truncated"
    )


def test_non_audio_file(tmp_path, capsys, earlier):
    tone(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    bad = tmp_path / "AudioWAV" / "1001_IEO_HAP_HI.wav"
    bad.write_text("<html>this download failed</html>\n")
    prepare_fails(capsys, earlier, ["corpus=crema-d", f"root={tmp_path}"], f"{bad}: not a readable audio file")


def test_nan_audio_with_check_audio(tmp_path, capsys, earlier):
    x = np.full(4000, 0.1, np.float32)
    x[10] = np.nan
    tone(tmp_path / "nan.wav", x, subtype="FLOAT")
    lst = csv_list(tmp_path, ["nan.wav,hello,s1,happy,en"])
    # the header is fine, so only --check-audio opens the samples
    assert main(["prepare", "corpus=csv", f"root={lst}", f"out={tmp_path / 'ok.jsonl'}"]) == 0
    capsys.readouterr()
    prepare_fails(
        capsys,
        earlier,
        ["corpus=csv", f"root={lst}", "check_audio=true"],
        f"{tmp_path / 'nan.wav'}: audio holds NaN or infinite samples",
    )
    fails(
        capsys,
        ["manifest", f"manifest={tmp_path / 'ok.jsonl'}", "check_audio=true"],
        f"{tmp_path / 'nan.wav'}: audio holds NaN",
    )


def test_silent_audio_with_check_audio(tmp_path, capsys, earlier):
    tone(tmp_path / "quiet.wav", np.zeros(4000, np.float32))
    lst = csv_list(tmp_path, ["quiet.wav,hello,s1,happy,en"])
    prepare_fails(
        capsys, earlier, ["corpus=csv", f"root={lst}", "check_audio=true"], f"{tmp_path / 'quiet.wav'}: audio is silent"
    )
    assert main(["prepare", "corpus=csv", f"root={lst}", f"out={tmp_path / 'ok.jsonl'}"]) == 0
    capsys.readouterr()
    fails(
        capsys,
        ["manifest", f"manifest={tmp_path / 'ok.jsonl'}", "check_audio=true"],
        f"{tmp_path / 'quiet.wav'}: audio is silent",
    )


def test_manifest_check_audio_truncated_flac(tmp_path, capsys, earlier):
    flac = tmp_path / "a.flac"
    sf.write(str(flac), (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000)
    man = write_manifest(
        tmp_path / "m.jsonl",
        [
            Utterance(
                id="a",
                audio="a.flac",
                sampling_rate=16000,
                duration=1.0,
                text="",
                speaker="s",
                language="en",
                emotion="calm",
                split="train",
            )
        ],
    )
    flac.write_bytes(flac.read_bytes()[:2000])
    fails(
        capsys,
        ["manifest", f"manifest={man.path}", "check_audio=true"],
        f"{flac}: not a readable audio file, or truncated",
    )


# ----------------------------------------------------------------------------- labels, ids


def test_label_outside_mapping_in_folder_name(tmp_path, capsys, earlier):
    tone(tmp_path / "casia" / "spk" / "angry" / "201.wav")
    tone(tmp_path / "casia" / "spk" / "bored" / "201.wav")
    (tmp_path / "casia" / "相同的文本201--250.txt").write_bytes("201. 一。\n".encode("gbk"))
    prepare_fails(
        capsys,
        earlier,
        ["corpus=casia", f"root={tmp_path}"],
        f"{tmp_path / 'casia' / 'spk' / 'bored'}: emotion label 'bored' is not in the casia mapping",
    )


def test_label_outside_mapping_in_list(tmp_path, capsys, earlier):
    tone(tmp_path / "a.wav")
    lst = csv_list(
        tmp_path,
        ["u1,a.wav,hi,s1,happy,en", "u2,a.wav,hi,s1,bored,en"],
        header="id,audio,text,speaker,emotion,language",
    )
    prepare_fails(
        capsys, earlier, ["corpus=csv", f"root={lst}"], f"{lst}:3: emotion label 'bored' is not in the generic mapping"
    )


def test_duplicate_id_in_list(tmp_path, capsys, earlier):
    tone(tmp_path / "a.wav")
    lst = tmp_path / "list.jsonl"
    row = {"id": "x", "audio": "a.wav", "text": "hi", "speaker": "s", "emotion": "sad", "language": "en"}
    lst.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    prepare_fails(capsys, earlier, ["corpus=jsonl", f"root={lst}"], f"{lst}:2: duplicate id 'x' (first on line 1)")


def test_duplicate_id_in_manifest(tmp_path, capsys, earlier):
    bad = tmp_path / "dup.jsonl"
    line = earlier.read_text().strip()
    bad.write_text(line + "\n" + line.replace('"old"', '"new"') + "\n" + line + "\n")
    fails(capsys, ["manifest", f"manifest={bad}"], f"{bad}:3: duplicate id 'old' (first on line 1)")


def test_malformed_manifest_line(tmp_path, capsys, earlier):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(earlier.read_text() + '{"id": "x", "audio": \n')
    fails(capsys, ["manifest", f"manifest={bad}"], f"{bad}:2: malformed manifest line")
    lst = tmp_path / "list.jsonl"
    lst.write_text('{"audio": "a.wav"\n')
    prepare_fails(capsys, earlier, ["corpus=jsonl", f"root={lst}"], f"{lst}:1: malformed JSON line")


def test_invalid_manifest_record(tmp_path, capsys, earlier):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(earlier.read_text().replace('"sad"', '"melancholy"'))
    fails(
        capsys,
        ["manifest", f"manifest={bad}"],
        f"{bad}:1: invalid record: emotion 'melancholy' is not in the vocabulary",
    )
    fails(capsys, ["manifest", f"manifest={tmp_path / 'none.jsonl'}"], f"{tmp_path / 'none.jsonl'}: manifest not found")


def test_good_manifest_prints_stats(capsys, earlier):
    assert main(["manifest", f"manifest={earlier}", "check_audio=true"]) == 0
    out, err = capsys.readouterr()
    stats = json.loads(out)
    assert stats["utterances"] == 1 and stats["emotions"] == {"sad": 1} and err == ""


# ----------------------------------------------------------------------------------- config


def test_unknown_config_key_through_cli(tmp_path, capsys):
    """``rrpo synth`` takes --config; a key no config has is refused before anything is written."""
    cfg = tmp_path / "synth.yaml"
    cfg.write_text("no_such_key_anywhere: 1\n")
    out = tmp_path / "corpus"
    fails(capsys, ["synth", f"out={out}", "--config", cfg], f"{cfg}: unknown config key 'no_such_key_anywhere'")
    fails(capsys, ["synth", f"out={out}", "no_such_section.key=1"], "unknown config key 'no_such_section'")
    assert not out.exists()


def test_config_errors_through_load_config(tmp_path):
    """Unknown key and wrong type, as the CLI would print them (config of the train loop)."""
    from rrpo.config import load_config
    from rrpo.errors import ConfigError
    from rrpo.train.loop import TrainConfig

    cfg = tmp_path / "train.yaml"
    cfg.write_text("steps: 10\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, cfg)
    assert e.value.format().startswith(f"{cfg}: unknown config key 'learning_rate'")
    cfg.write_text("steps: ten\n")
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, cfg)
    assert e.value.format() == f"{cfg}: config key 'steps': expected an integer, got 'ten'"
