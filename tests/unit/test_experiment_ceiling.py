"""The experiment's codec ceiling: real speech decoded from its tokens as the audit decodes a policy's
samples, and the pooling of the judge's evaluations over folds (values worked by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from rrpo.cli import main
from rrpo.data.manifest import read_manifest
from rrpo.errors import RrpoError
from rrpo.experiment_judges import pooled_judge_eval, resynthesise_speaker

from tests.unit.test_codec_builtin import codec_dir, corpus  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def shards(corpus, codec_dir, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("tok") / "t"
    assert main(["tokenize", f"codec={codec_dir}", f"manifest={corpus.path}", f"out={out}"]) == 0
    return out


def test_resynthesis_decodes_each_recording_with_the_speakers_profile(corpus, codec_dir, shards, tmp_path):  # noqa: F811
    from rrpo.codec import load_codec, profile_for
    from rrpo.codec.shards import TokenShards

    man = resynthesise_speaker(codec_dir, corpus.path, shards, "lo", ["neutral"], tmp_path / "cc")
    rows = list(read_manifest(man))
    assert [u.id for u in rows] == ["u0", "u2", "u4"]  # the speaker's recordings, in manifest order
    codec = load_codec(codec_dir)
    prof = profile_for(codec, "lo")
    for u in rows:
        assert u.speaker == "lo" and u.emotion == "neutral" and u.sampling_rate == codec.sampling_rate
        audio, sr = sf.read(u.audio, dtype="float32")
        want = codec.decode(TokenShards(shards).get(u.id)[0], prof)
        assert sr == codec.sampling_rate and len(audio) == len(want)
        assert u.duration == pytest.approx(len(want) / sr)
        assert np.allclose(audio, np.clip(want, -1, 1), atol=1e-4)  # up to 16-bit rounding (3.05e-5)


def test_resynthesis_errors_name_the_speaker_or_the_missing_tokens(corpus, codec_dir, shards, tmp_path):  # noqa: F811
    with pytest.raises(RrpoError, match="no recordings of speaker 'nobody'"):
        resynthesise_speaker(codec_dir, corpus.path, shards, "nobody", ["neutral"], tmp_path / "a")
    with pytest.raises(RrpoError, match="no recordings of speaker 'lo'"):
        resynthesise_speaker(codec_dir, corpus.path, shards, "lo", ["angry"], tmp_path / "b")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "meta.json").write_text((shards / "meta.json").read_text())
    with pytest.raises(RrpoError, match="3 of 'lo''s recordings are not tokenised"):
        resynthesise_speaker(codec_dir, corpus.path, empty, "lo", ["neutral"], tmp_path / "c")
    assert not (tmp_path / "c" / "resynth.jsonl").exists()


def test_pooled_judge_eval_sums_the_folds_confusions():
    """Confusions [[2, 0], [1, 1]] and [[1, 1], [0, 2]] pool to [[3, 1], [1, 3]]: accuracy 6 / 8 =
    0.75; recall a 3 / 4, b 3 / 4. A fold without an evaluation is left out; none at all gives None.
    A class never asked for has a NaN recall: [[1, 0], [0, 0]] alone gives a 1.0, b NaN."""
    ev = {
        "f1": {"classes": ["a", "b"], "n": 4, "wa": 0.75, "ua": 0.75, "confusion": [[2, 0], [1, 1]]},
        "f2": {"classes": ["a", "b"], "n": 4, "wa": 0.75, "ua": 0.75, "confusion": [[1, 1], [0, 2]]},
        "f3": None,
    }
    p = pooled_judge_eval(ev)
    assert p["n"] == 8 and p["accuracy"] == 0.75 and p["confusion"] == [[3, 1], [1, 3]]
    assert p["recall"] == {"a": 0.75, "b": 0.75} and list(p["folds"]) == ["f1", "f2"]
    assert pooled_judge_eval({"f": None}) is None and pooled_judge_eval({}) is None
    one = pooled_judge_eval({"f": {"classes": ["a", "b"], "confusion": [[1, 0], [0, 0]]}})
    assert one["recall"]["a"] == 1.0 and math.isnan(one["recall"]["b"])


def test_recall_table_lists_each_system_and_the_lowest_recall():
    """SFT recall neutral .5, happy .25, angry .1, sad 1, surprise .75: lowest 10; the real-speech row
    pools the folds' confusions (one fold, all correct but one angry heard as surprise: angry 50)."""
    from rrpo.experiment import recall_markdown

    classes = ["neutral", "happy", "angry", "sad", "surprise"]
    conf = np.eye(5, dtype=int) * 2
    conf[2, 2], conf[2, 4] = 1, 1
    res = {
        "recall": {"sft": {"neutral": 0.5, "happy": 0.25, "angry": 0.1, "sad": 1.0, "surprise": 0.75}, "diffro": {}},
        "judge": {"h": {"casia_heldout": {"classes": classes, "confusion": conf.tolist()}}},
    }
    lines = recall_markdown(res, {"sft": "SFT (start)", "diffro": "DiffRO"})
    assert "| SFT (start) | 50 | 25 | 10 | 100 | 75 | 10 |" in lines
    assert "| judge on real held-out speech | 100 | 100 | 50 | 100 | 100 | 50 |" in lines
    assert not any(line.startswith("| DiffRO") for line in lines)  # no audited utterances: no row
    assert recall_markdown({"recall": {}}, {}) == []


def test_resynthesis_leaves_records_without_emotion_labels_out(corpus, codec_dir, shards, tmp_path):  # noqa: F811
    """The ceiling judges the recordings by their labels: a record whose 'neutral' is a placeholder
    (extra.emotion_labelled: false) is not one of them."""
    from rrpo.data.manifest import write_manifest

    man = read_manifest(corpus.path)
    for u in man:
        u.audio = str(man.audio_path(u))
        if u.id == "u0":
            u.extra["emotion_labelled"] = False
    path = write_manifest(tmp_path / "m.jsonl", man).path
    out = resynthesise_speaker(codec_dir, path, shards, "lo", ["neutral"], tmp_path / "cc")
    assert [u.id for u in read_manifest(out)] == ["u2", "u4"]
