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
    # no phone judge: PER is said to be absent, and no point, ceiling or flag carries it
    from rrpo.audit.summary import PER_ABSENT

    assert audit["phone_judge"] is None and final["per"] == {"n": 0, "per": None, "absent": PER_ABSENT}
    assert "per" not in final["flags"]["naturalness"]["signals"] and "per" not in final["intervals"]
    assert not any("per" in r for r in final["utterances"] + real_rows)

    assert main(["report", f"runs=[{root / 'opt'}]", "names=[toy DiffRO]", f"out={root / 'report'}"]) == 0
    page = (root / "report" / "index.html").read_text(encoding="utf-8")
    assert "toy DiffRO" in page and "<th>PER</th>" not in page  # no phone judge, no PER column
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


def _phone_model(path, seed: int, texts) -> None:
    """A tiny phone recogniser with random weights over the texts' phonemes (``seed``: its weights)."""
    import torch

    from rrpo.phones.inventory import phonemise
    from rrpo.phones.model import NetShape, PhoneModel, PhoneNet

    symbols = sorted({p for t in texts for p in phonemise(t, "zh")})
    shape = NetShape(channels=16, blocks=1, n_phones=len(symbols) + 1)
    torch.manual_seed(seed)
    PhoneModel(shape, symbols, PhoneNet(shape).state_dict()).save(path)


def test_audit_with_a_phone_judge_scores_per_everywhere(world, monkeypatch, capsys):
    """phone_judge=DIR: the judge is loaded once; every utterance of every point and of both ceilings
    has its PER = edits / reference phonemes (edits = sub + del + ins), every summary the pooled Σ edits /
    Σ phonemes with its interval (in the prompts' one language, zh) and the same figure among its
    cluster-bootstrap intervals; the naturalness flag reads PER against the codec ceiling's upper end.
    Another judge (other weights) changes the start cache's and the anchor's keys: both are scored anew."""
    import rrpo.audit.scorer as scorer
    import rrpo.phones.judge as phones_judge

    root, man = world
    texts = {u.text for u in read_manifest(man)}
    _phone_model(root / "phones_a", 0, texts)
    _phone_model(root / "phones_b", 1, texts)
    loads = []
    load = phones_judge.PhoneJudge.load.__func__
    monkeypatch.setattr(phones_judge.PhoneJudge, "load", classmethod(lambda c, p: loads.append(p) or load(c, p)))
    cache = root / "per_cache"
    args = (f"start_cache={cache}", "n_boot=200")
    assert _audit(root, man, f"out={root / 'per_a'}", f"phone_judge={root / 'phones_a'}", *args) == 0, (
        capsys.readouterr().err
    )
    assert len(loads) == 1
    audit = json.loads((root / "per_a" / "audit.json").read_text())
    assert audit["phone_judge"]["path"] == str((root / "phones_a").resolve())
    summaries = audit["points"] + [audit["ceilings"]["real"], audit["ceilings"]["codec"]]
    assert len(summaries) == 4
    for p in summaries:
        rows = p["utterances"]
        assert len(rows) == 2
        for r in rows:
            assert r["phones"] > 0 and r["phone_edits"] == r["phone_sub"] + r["phone_del"] + r["phone_ins"]
            assert r["per"] == pytest.approx(r["phone_edits"] / r["phones"])
        pooled = sum(r["phone_edits"] for r in rows) / sum(r["phones"] for r in rows)
        per = p["per"]
        assert per["n"] == 2 and per["per"]["stat"] == pytest.approx(pooled)
        assert per["per"]["lo"] <= pooled <= per["per"]["hi"] and set(per["languages"]) == {"zh"}
        assert p["intervals"]["per"]["stat"] == pytest.approx(pooled)
    codec_hi = audit["ceilings"]["codec"]["intervals"]["per"]["hi"]
    for p in audit["points"]:
        assert p["flags"]["naturalness"]["signals"]["per"]["real_hi"] == pytest.approx(codec_hi)
    # the report: a PER column with each row's interval (the audit's folder as a run's audit/)
    import shutil

    shutil.copytree(root / "per_a", root / "per_run" / "audit")
    assert main(["report", f"runs=[{root / 'per_run'}]", "names=[toy]", f"out={root / 'per_report'}"]) == 0
    page = (root / "per_report" / "index.html").read_text(encoding="utf-8")
    fin = audit["final"]["per"]["per"]
    assert "<th>PER</th>" in page and f"{fin['stat']:.3f} [{fin['lo']:.3f}, {fin['hi']:.3f}]" in page
    start_a = json.loads((cache / "start.json").read_text())
    anchor_a = json.loads((cache / "anchor" / "anchor.json").read_text())
    assert (
        start_a["what"]["phone_judge"]
        == anchor_a["what"]["phone_judge"]
        == phones_judge.PhoneJudge.load(root / "phones_a").identity()
    )
    calls = []
    real = scorer.generate
    monkeypatch.setattr(scorer, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert _audit(root, man, f"out={root / 'per_b'}", f"phone_judge={root / 'phones_b'}", *args) == 0, (
        capsys.readouterr().err
    )
    assert len(calls) == 2  # step 0 is generated again: the cached one was scored by another judge
    start_b = json.loads((cache / "start.json").read_text())
    anchor_b = json.loads((cache / "anchor" / "anchor.json").read_text())
    assert start_b["key"] != start_a["key"] and anchor_b["key"] != anchor_a["key"]
    assert start_b["what"]["phone_judge"]["path"] == str((root / "phones_b").resolve())
    assert anchor_b["what"]["phone_judge"]["weights"] != anchor_a["what"]["phone_judge"]["weights"]


def _scripted_point(proxy: float, correct: list[int], clicks: list[int], sqrt_kl: float, edits: int = 1) -> dict:
    """One audited point: 20 utterances of 2 s over 5 texts, judged right where ``correct`` says, each
    with ``edits`` phone edits of 10 reference phonemes."""
    rows = [
        {"id": f"u{i}", "cluster": f"t{i % 5}", "emotion": "angry", "judge_correct": bool(c), "judge_target_prob": c}
        | {"clicks_events": e, "duration_s": 2.0, "token_repetition": 0.0, "typicality": 1.0, "atypical": 0.0}
        | {"phone_edits": edits, "phones": 10, "per": edits / 10}
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
    (0.5 /s, beyond the real recordings' 0 through the codec), and the phone error rate 0.1 → 0.2 → 0.6
    against the codec ceiling's 0.3. Every text behaves alike, so the noise margins are 0: step 2 is
    flagged on emotion (drop 1.0 from step 1) and on naturalness (clicks and PER), steps 0 and 1 are not
    (PER rose at step 1 but stayed within the ceiling); the Gao fits are finite on the three points."""
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
            _scripted_point(0.3, [i % 2 for i in range(n)], [0] * n, 0.0, edits=1),
            _scripted_point(0.6, [1] * n, [0] * n, 0.5, edits=2),
            _scripted_point(0.9, [0] * n, [1] * n, 1.2, edits=6),
        ]
    )
    real_ceiling = _scripted_point(0.0, [1] * n, [0] * n, 0.0, edits=3)

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
    per = audit["points"][2]["flags"]["naturalness"]["signals"]["per"]
    assert per["value"] == pytest.approx(0.6) and per["real_hi"] == pytest.approx(0.3) and per["flag"]
    per1 = audit["points"][1]["flags"]["naturalness"]["signals"]["per"]
    assert per1["rise"] == pytest.approx(0.1) and not per1["flag"]
    assert not audit["points"][1]["hacking_flag"]
    for fit in (audit["fits"]["judge"]["rl"], audit["fits"]["proxy"]["bon"]):
        assert all(np.isfinite(fit[k]) for k in ("alpha", "beta", "r2"))
    assert audit["points"][2]["intervals"]["judge_acc"]["stat"] == 0.0
