"""`rrpo audit` and `rrpo report` end to end in the fast lane, on a toy world made by the test:
16 generated recordings (2 speakers x 2 emotions x 4 texts), a 16-token codec learnt on them, a judge
trained on them, a tiny SFT policy and reward model, two DiffRO steps, then the audit of the start
and the last checkpoint and the HTML report."""

import json

import numpy as np
import pytest
import soundfile as sf

from rrpo.cli import main
from rrpo.data.manifest import read_manifest

from tests.unit.policy_fixtures import make_corpus, sft_overrides
from tests.unit.reward_fixtures import tiny_rm_overrides

SR = 16000


def voice(f0: float, level: float, seconds: float, seed: int) -> np.ndarray:
    """A harmonic tone with vibrato and a rise-and-fall envelope (a stand-in for a voiced syllable)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))
    ph = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * ph) / k for k in range(1, 10))
    x = level * x / np.abs(x).max() * np.sin(np.pi * np.linspace(0.02, 0.98, len(t))) ** 0.5
    return (x + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    man, shards = make_corpus(root / "data")
    for i, u in enumerate(read_manifest(man)):  # angry: higher and louder; s2 a lower voice
        f0 = (220 if u.emotion == "angry" else 160) * (0.8 if u.speaker == "s2" else 1.0)
        sf.write(root / "data" / u.audio, voice(f0, 0.5 if u.emotion == "angry" else 0.15, 0.5, i), SR)
    # 4 spectral clusters x (1 pitch bin + unvoiced) x 2 energy bins = 16 tokens, the toy policy's vocabulary
    assert (
        main(
            [
                "codec",
                "train",
                f"manifests=[{man}]",
                f"out={root / 'codec'}",
                "spectral_clusters=4",
                "pitch_bins=1",
                "energy_bins=2",
                "kmeans_iters=5",
            ]
        )
        == 0
    )
    assert json.loads((root / "codec" / "codec.json").read_text())["vocab_size"] == 16
    assert (
        main(
            [
                "judge",
                "train",
                f"manifests=[{man}]",
                f"out={root / 'judge'}",
                "classes=[angry, happy]",
                "min_group=4",
                "c_grid=[0.1]",
            ]
        )
        == 0
    )
    assert main(["policy", "sft", *sft_overrides(root / "data", root / "sft", steps=2)]) == 0
    assert (
        main(
            [
                "rm",
                "train",
                f"out={root / 'rm'}",
                *tiny_rm_overrides(man, shards),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "optimize",
                f"out={root / 'opt'}",
                f"policy={root / 'sft'}",
                f"rewards=[{{name: emo, path: {root / 'rm'}}}]",
                f"prompts.manifest={man}",
                "train.steps=2",
                "train.batch_size=2",
                "train.ckpt_every=0",
                "train.progress=false",
                "train.bf16=false",
                "sampling.max_ratio=3",
                "sampling.min_ratio=1",
            ]
        )
        == 0
    )
    return root, man


def test_audit_then_report(world, capsys):
    root, man = world
    rc = _audit(root, man)
    assert rc == 0, capsys.readouterr().err
    audit = json.loads((root / "opt" / "audit" / "audit.json").read_text())
    steps = [p["step"] for p in audit["points"]]
    assert steps == [0, 2]  # the starting policy and the last checkpoint
    start, final = audit["start"], audit["final"]
    assert start["sqrt_kl"] == 0 and final["sqrt_kl"] >= 0
    for p in (start, final):
        assert 0 <= p["proxy_prob"] <= 1 and 0 <= p["judge"]["target_prob"] <= 1
        assert p["distances"]["mcd_db"] > 0 and set(p["artifacts"]) >= {"clicks", "clipping"}
    # every point carries both flags, each with its noise margin; the judge is anchored on the prompted
    # speakers' real recordings of other texts (the toy world's 3 other texts x 2 emotions each)
    for p in audit["points"]:
        assert {"emotion", "naturalness"} <= set(p["flags"]) and np.isfinite(p["flags"]["emotion"]["margin"])
    anchor = audit["anchor"]
    prompted = {q["text"] for q in audit["prompts"]}
    by_id = {u.id: u for u in read_manifest(man)}
    assert anchor["ids"] and all(by_id[i].text not in prompted for i in anchor["ids"])
    assert set(anchor["speakers"]) == {q["speaker"] for q in audit["prompts"]}
    assert set(audit["ceilings"]) == {"real", "codec"} and audit["ceilings"]["codec"]["n"] == 2
    # the real ceiling's distances compare each recording with the speaker's other rendition of the
    # sentence (never with itself, which would read 0 dB); the codec's, each resynthesis with its original
    real_rows = audit["ceilings"]["real"]["utterances"]
    assert len(real_rows) == 2 and all(r["mcd_db"] > 0.1 for r in real_rows)
    assert all(np.isfinite(r["mcd_db"]) for r in audit["ceilings"]["codec"]["utterances"])

    assert main(["report", f"runs=[{root / 'opt'}]", "names=[toy DiffRO]", f"out={root / 'report'}"]) == 0
    page = (root / "report" / "index.html").read_text(encoding="utf-8")
    assert "toy DiffRO" in page
    audio = sorted((root / "report").rglob("*.wav"))
    assert audio and all(f.stat().st_size > 44 for f in audio)
    for f in audio:
        assert f.relative_to(root / "report").as_posix() in page  # every clip is on the page


def _audit(root, man, *extra):
    return main(
        [
            "audit",
            f"run={root / 'opt'}",
            f"codec={root / 'codec'}",
            f"judge={root / 'judge'}",
            f"prompts.manifest={man}",
            "prompts.max_texts=1",
            "sampling.max_ratio=3",
            "sampling.min_ratio=1",
            "recognizer=false",
            *extra,
        ]
    )


def test_audit_start_cache_is_shared_and_equal(world, monkeypatch, capsys):
    """start_cache: the first audit scores step 0 and stores it; a second audit of the same start
    reuses it (one generation: the last checkpoint's only) and gets the same point and audio as an
    audit without the cache; another sampling seed recomputes the cache."""
    import rrpo.audit.scorer as scorer

    root, man = world
    cache = root / "start_cache"
    assert _audit(root, man, f"out={root / 'plain'}") == 0, capsys.readouterr().err
    assert _audit(root, man, f"out={root / 'c1'}", f"start_cache={cache}") == 0, capsys.readouterr().err
    key1 = json.loads((cache / "start.json").read_text())["key"]
    calls = []
    real = scorer.generate
    monkeypatch.setattr(scorer, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert _audit(root, man, f"out={root / 'c2'}", f"start_cache={cache}") == 0, capsys.readouterr().err
    assert len(calls) == 1  # the last checkpoint only; step 0 came from the cache
    starts = [json.loads((root / d / "audit.json").read_text())["start"] for d in ("plain", "c1", "c2")]
    for s in starts[1:]:
        assert s["utterances"] == starts[0]["utterances"]
        assert s["judge"] == starts[0]["judge"] and s["proxy_prob"] == pytest.approx(starts[0]["proxy_prob"])
        assert s["mean_len_s"] == pytest.approx(starts[0]["mean_len_s"]) and s["sqrt_kl"] == 0
    wavs = sorted(p.name for p in (root / "plain" / "audio" / "step_0").glob("*.wav"))
    assert wavs and sorted(p.name for p in (root / "c2" / "audio" / "step_0").glob("*.wav")) == wavs
    for w in wavs:
        a, _ = sf.read(root / "plain" / "audio" / "step_0" / w)
        b, _ = sf.read(root / "c2" / "audio" / "step_0" / w)
        np.testing.assert_array_equal(a, b)
    calls.clear()
    assert _audit(root, man, f"out={root / 'c3'}", f"start_cache={cache}", "seed=99") == 0, capsys.readouterr().err
    assert len(calls) == 2  # another key: step 0 is generated again
    assert json.loads((cache / "start.json").read_text())["key"] != key1


def _scripted_point(proxy: float, correct: list[int], clicks: list[int], sqrt_kl: float) -> dict:
    """One audited point: 20 utterances of 2 s over 5 texts, judged right where ``correct`` says."""
    rows = [
        {"id": f"u{i}", "cluster": f"t{i % 5}", "emotion": "angry", "judge_correct": bool(c), "judge_target_prob": c}
        | {"clicks_events": e, "duration_s": 2.0, "token_repetition": 0.0, "typicality": 1.0, "atypical": 0.0}
        for i, (c, e) in enumerate(zip(correct, clicks))
    ]
    acc = sum(correct) / len(correct)
    return {
        "proxy_prob": proxy,
        "proxy": {"emo": proxy},
        "hacking_gap": proxy - acc,
        "judge": {"target_prob": acc, "accuracy": acc},
        "sqrt_kl": sqrt_kl,
        "utterances": rows,
    }


def test_audit_flags_a_hacked_path_worked_by_hand(world, monkeypatch, capsys):
    """`rrpo audit` over a run with two checkpoints, its scorer scripted (the instrument's own parts are
    tested elsewhere): the judge hears half the utterances at step 0, all at step 1 (its peak) and none
    at step 2, while the proxy rises 0.3 → 0.6 → 0.9 and clicks go from none to one per 2-s utterance
    (0.5 /s, beyond the real recordings' 0 through the codec). Every text behaves alike, so the noise
    margins are 0: step 2 is flagged on emotion (drop 1.0 from step 1) and on naturalness (clicks), steps
    0 and 1 are not; the Gao fits are finite on the three points."""
    import rrpo.audit.overopt as overopt

    root, man = world
    run = root / "opt_path"
    assert (
        main(
            [
                "optimize",
                f"out={run}",
                f"policy={root / 'sft'}",
                f"rewards=[{{name: emo, path: {root / 'rm'}}}]",
                f"prompts.manifest={man}",
                "train.steps=2",
                "train.batch_size=2",
                "train.ckpt_every=1",
                "train.progress=false",
                "train.bf16=false",
                "sampling.max_ratio=3",
                "sampling.min_ratio=1",
            ]
        )
        == 0
    )
    n = 20
    script = iter(
        [
            _scripted_point(0.3, [i % 2 for i in range(n)], [0] * n, 0.0),
            _scripted_point(0.6, [1] * n, [0] * n, 0.5),
            _scripted_point(0.9, [0] * n, [1] * n, 1.2),
        ]
    )
    real_ceiling = _scripted_point(0.0, [1] * n, [0] * n, 0.0)

    class Scripted:
        start, rows, emotions, ceilings = object(), [], ["angry"], {"codec": real_ceiling}

        def score(self, policy, audio_dir=None):
            return next(script)

        def anchor_summary(self):
            return {"ids": []}

    monkeypatch.setattr(overopt, "build_scorer", lambda cfg, info, anchor_dir=None: Scripted())
    assert _audit(root, man, f"run={run}", f"out={root / 'path_audit'}") == 0, capsys.readouterr().err
    audit = json.loads((root / "path_audit" / "audit.json").read_text())
    assert [p["step"] for p in audit["points"]] == [0, 1, 2]
    assert audit["flagged_steps"] == [2] and audit["flagged"] == {"emotion": [2], "naturalness": [2]}
    emo = audit["points"][2]["flags"]["emotion"]
    assert emo["peak"] == 1 and emo["drop"] == pytest.approx(1.0) and emo["margin"] == pytest.approx(0.0)
    clicks = audit["points"][2]["flags"]["naturalness"]["signals"]["artifacts_per_s"]
    assert clicks["value"] == pytest.approx(0.5) and clicks["real_hi"] == pytest.approx(0.0) and clicks["flag"]
    assert not audit["points"][1]["hacking_flag"]
    for fit in (audit["fits"]["judge"]["rl"], audit["fits"]["proxy"]["bon"]):
        assert all(np.isfinite(fit[k]) for k in ("alpha", "beta", "r2"))
    assert audit["points"][2]["intervals"]["judge_acc"]["stat"] == 0.0
