"""``rrpo policy ...`` end to end on tiny data, and bad input as one line with exit status 2."""

from __future__ import annotations

import json

import pytest

from rrpo.cli import main

from tests.unit.policy_fixtures import TEXTS, make_corpus, sft_overrides


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("policy_cli")
    make_corpus(tmp / "data")
    rc = main(["policy", "sft"] + sft_overrides(tmp / "data", tmp / "run", steps=3))
    assert rc == 0
    return tmp


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rrpo: error: "), err
    return err[0]


def test_sft_then_generate(trained, capsys):
    capsys.readouterr()
    out = trained / "gen"
    rc = main(
        [
            "policy",
            "generate",
            f"policy={trained / 'run'}",
            f"out={out}",
            f"texts=[{TEXTS[-1]}]",
            "speaker=s2",
            "sampling.max_ratio=4",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == 2  # the held-out sentence in both trained emotions
    recs = [json.loads(l) for l in (out / "tokens.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["emotion"] for r in recs] == ["angry", "happy"]
    assert all(0 < r["n_tokens"] <= 4 * len(TEXTS[-1]) and all(0 <= t < 16 for t in r["tokens"]) for r in recs)
    assert (out / "config.yaml").exists() and (out / "command.txt").exists()


def test_untrained_emotion_is_one_line(trained, capsys):
    rc = main(
        [
            "policy",
            "generate",
            f"policy={trained / 'run'}",
            f"out={trained / 'g2'}",
            f"texts=[{TEXTS[0]}]",
            "emotions=[sad]",
        ]
    )
    assert rc == 2
    line = _one_error_line(capsys)
    assert "not trained on emotion 'sad'" in line and "angry, happy" in line
    assert not (trained / "g2").exists()  # nothing written before the check


def test_out_of_vocabulary_text_is_one_line(trained, capsys):
    rc = main(["policy", "generate", f"policy={trained / 'run'}", f"out={trained / 'g3'}", "texts=[hello 你好]"])
    assert rc == 2
    line = _one_error_line(capsys)
    assert "outside the policy's vocabulary" in line and "'hel" in line


@pytest.mark.parametrize(
    "drop,reshape,msg",
    [
        ("llm_embedding.weight", None, "lacks 1 tensor(s) the model needs: llm_embedding.weight"),
        (None, "llm_decoder.bias", "tensor 'llm_decoder.bias' has shape [32], the model expects [33]"),
    ],
)
def test_bad_cosyvoice2_dir_is_one_line(tmp_path, capsys, drop, reshape, msg):
    from tests.unit.test_policy import make_cosyvoice2_dir

    src = make_cosyvoice2_dir(tmp_path / "cv2", drop=drop, reshape=reshape)
    rc = main(["policy", "export", f"policy={src}", f"out={tmp_path / 'o'}"])
    assert rc == 2
    line = _one_error_line(capsys)
    assert msg in line and "llm.pt" in line


def test_missing_data_config_is_one_line(tmp_path, capsys):
    rc = main(["policy", "sft", f"out={tmp_path / 'r'}"])
    assert rc == 2
    assert "data.manifest" in _one_error_line(capsys)


def test_generate_writes_wavs_through_a_decoding_codec(trained, capsys, monkeypatch):
    """A stand-in codec (160 samples of 0.1 per token at 4 kHz): WAV length = 160 x tokens."""
    import numpy as np
    import soundfile as sf

    import rrpo.policy.commands as commands

    seen = []

    class ToyCodec:
        can_decode, sampling_rate, vocab_size, frame_rate = True, 4000, 16, 25.0
        uses_profiles, profiles = True, {"s2": "profile of s2"}

        def speaker_profile(self, speaker):
            return self.profiles[speaker]

        def decode(self, tokens, profile=None):
            seen.append(profile)
            return np.full(160 * len(tokens), 0.1, dtype=np.float32)

    monkeypatch.setattr(commands, "_load_codec", lambda path: ToyCodec())
    out = trained / "gen_wav"
    rc = main(
        [
            "policy",
            "generate",
            f"policy={trained / 'run'}",
            f"out={out}",
            f"texts=[{TEXTS[0]}]",
            "emotions=[happy]",
            "codec=toy",
            "sampling.max_ratio=3",
            "speaker=s2",
        ]
    )
    assert rc == 0
    assert seen == ["profile of s2"]  # decoded as the speaker asked for
    rec = json.loads((out / "tokens.jsonl").read_text(encoding="utf-8"))
    audio, sr = sf.read(out / rec["wav"])
    assert sr == 4000 and len(audio) == 160 * rec["n_tokens"]
    assert rec["seconds"] == round(160 * rec["n_tokens"] / 4000, 3)
