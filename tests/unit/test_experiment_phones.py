"""The experiment's phone stages: what is needed (one line when it is missing), which stages and
keys they add, and the cache that lets two experiments share their phone models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rrpo.cli import main
from rrpo.errors import RrpoError
from rrpo.experiment import ExperimentConfig, build_stages
from rrpo.experiment.phones import cached_phones


def _stages(tmp_path, **kw):
    return {s.name: s for s in build_stages(ExperimentConfig(seeds=[0], **kw), tmp_path, tmp_path / "o", main)}


def test_phonetic_content_without_transcribed_speech_is_one_line(tmp_path):
    with pytest.raises(RrpoError, match=r"content=phonetic needs transcribed speech.*transcribed=\{librispeech"):
        _stages(tmp_path, content="phonetic")


def test_a_missing_root_names_the_key_and_where_to_download(tmp_path):
    with pytest.raises(RrpoError, match=r"transcribed.librispeech: corpus root not found; download it from .*openslr"):
        _stages(tmp_path, transcribed={"librispeech": str(tmp_path / "nowhere")})
    # with spectral content the transcribed corpora train the phone judge alone
    st = _stages(tmp_path, transcribed={"librispeech": str(tmp_path)})
    assert "phones_judge" in st and "phones_content" not in st
    assert not any(a.startswith("content") for a in st["codec"].action)
    with pytest.raises(RrpoError, match=r"transcribed.timit: no such corpus preparer"):
        _stages(tmp_path, transcribed={"timit": str(tmp_path)})


def test_spectral_content_needs_no_transcribed_speech(tmp_path):
    st = _stages(tmp_path)  # the default
    assert ExperimentConfig().content == "spectral"
    assert not {"transcribed", "phones_content", "phones_judge"} & set(st)
    codec = st["codec"].action
    assert not any(a.startswith("content") for a in codec)
    assert not any(a.startswith("phone_judge=") for a in st["audit_diffro_s0@ZhaoZuoxiang"].action)


def test_phone_stages_feed_the_codec_and_every_audit(tmp_path):
    st = _stages(tmp_path, content="phonetic", transcribed={"librispeech": str(tmp_path)})
    names = list(st)
    assert names.index("transcribed") < names.index("phones_content") < names.index("codec")
    assert "phones_judge" in st
    o = (tmp_path / "o").resolve()
    codec = st["codec"].action
    assert "content=phonetic" in codec and f"content_model={o / 'phones' / 'content'}" in codec
    audits = [s for n, s in st.items() if n.startswith("audit_")]
    assert audits and all(f"phone_judge={o / 'phones' / 'judge'}" in s.action for s in audits)
    # a given judge folder is used as it is and no judge is trained
    judge = tmp_path / "pj"
    judge.mkdir()
    (judge / "phones.json").write_text("{}")
    st = _stages(tmp_path, content="phonetic", transcribed={"librispeech": str(tmp_path)}, phone_judge=str(judge))
    assert "phones_judge" not in st
    assert all(f"phone_judge={judge.resolve()}" in s.action for n, s in st.items() if n.startswith("audit_"))


def test_phone_models_are_cached_across_run_folders(tmp_path):
    calls = []

    def run_verb(argv):
        calls.append(argv)
        out = Path(next(a for a in argv if a.startswith("out="))[4:])
        out.mkdir(parents=True, exist_ok=True)
        (out / "phones.json").write_text("{}")
        return 0

    man = tmp_path / "m.jsonl"
    man.write_text('{"id": "a"}\n')
    cfg = ExperimentConfig(seeds=[0], content="spectral", cache=str(tmp_path / "cache"))
    cached_phones(cfg, tmp_path / "o1", "judge", [man], ["train.steps=5"], run_verb)
    cached_phones(cfg, tmp_path / "o2", "judge", [man], ["train.steps=5"], run_verb)
    assert len(calls) == 1 and calls[0][:2] == ["phones", "train"] and "train.steps=5" in calls[0]
    first = json.loads((tmp_path / "o1" / "phones" / "judge.json").read_text())
    again = json.loads((tmp_path / "o2" / "phones" / "judge.json").read_text())
    assert first["reused"] is False and again["reused"] is True and first["key"] == again["key"]
    assert (tmp_path / "o2" / "phones" / "judge" / "phones.json").exists()
    # other settings or other data: another model
    cached_phones(cfg, tmp_path / "o3", "judge", [man], ["train.steps=6"], run_verb)
    man.write_text('{"id": "b"}\n')
    cached_phones(cfg, tmp_path / "o4", "judge", [man], ["train.steps=5"], run_verb)
    assert len(calls) == 3


def test_transcribed_corpora_are_prepared(tmp_path):
    from rrpo.data.manifest import read_manifest
    from rrpo.experiment.phones import prepare_transcribed

    from tests.unit.asr_fixtures import espeak_librispeech

    espeak_librispeech(tmp_path / "ls", per_speaker=2)
    cfg = ExperimentConfig(seeds=[0], transcribed={"librispeech": str(tmp_path / "ls")})
    prepare_transcribed(tmp_path / "o", cfg)
    man = read_manifest(tmp_path / "o" / "data" / "transcribed" / "librispeech.jsonl")
    assert len(man) == 4 and {u.speaker for u in man} == {"libri11", "libri22"}
    assert all(u.text and u.language == "en" for u in man)


def test_draw_hours_by_hand():
    from types import SimpleNamespace

    from rrpo.experiment.phones import draw_hours

    recs = [SimpleNamespace(id=f"u{i}", duration=d) for i, d in enumerate([600.0, 1200.0, 300.0, 900.0])]
    assert draw_hours(recs, 1.0) == recs  # 3,000 s of 3,600: all, in their own order
    got = draw_hours(recs, 0.5)  # 1,800 s
    total = sum(r.duration for r in got)
    assert total <= 1800.0 and [r.id for r in got] == sorted(r.id for r in got)
    # every record left out would overflow what was kept
    assert all(total + r.duration > 1800.0 for r in recs if r not in got)
    assert draw_hours(recs, 0.5) == got and draw_hours(recs, 0.0) == []
    assert draw_hours(recs, 0.1) == [recs[2]]  # 360 s: only the 300 s one fits
    assert draw_hours(recs, 0.05) == []  # 180 s: none does


def test_codec_trains_on_a_draw_of_the_transcribed_corpora(tmp_path):
    from rrpo.data.manifest import read_manifest
    from rrpo.experiment.phones import prepare_transcribed

    from tests.unit.asr_fixtures import espeak_librispeech

    espeak_librispeech(tmp_path / "ls", per_speaker=3)
    o = (tmp_path / "o").resolve()
    st = _stages(tmp_path, transcribed={"librispeech": str(tmp_path / "ls")})
    assert "librispeech_codec" not in next(a for a in st["codec"].action if a.startswith("manifests="))  # 0 h
    kw = {"transcribed": {"librispeech": str(tmp_path / "ls")}, "codec_transcribed_hours": 0.001}
    st = _stages(tmp_path, **kw)
    mans = next(a for a in st["codec"].action if a.startswith("manifests="))
    assert str(o / "data" / "transcribed" / "librispeech_codec.jsonl") in mans and "casia_codec.jsonl" in mans
    prepare_transcribed(o, ExperimentConfig(seeds=[0], **kw))
    every = read_manifest(o / "data" / "transcribed" / "librispeech.jsonl")
    drawn = read_manifest(o / "data" / "transcribed" / "librispeech_codec.jsonl")
    assert 0 < len(drawn) < len(every) and sum(u.duration for u in drawn) <= 3.6
    assert all(drawn.audio_path(u).exists() for u in drawn)
