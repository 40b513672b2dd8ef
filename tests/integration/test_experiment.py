"""``rrpo experiment`` end to end on the real CASIA and ESD files, with every model shrunk to a few
steps, every system of the comparison and the policy's pre-training (cached), then a rerun that skips
every finished stage and reuses the cached pre-trained policy."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rrpo.cli import main

TINY = """
seeds: [0]
jobs: 2
heldout_speakers: [ZhaoZuoxiang]
synth: [sentences_per_language=4, voices_per_language=2]
codec: [spectral_clusters=16, pitch_bins=4, energy_bins=2, kmeans_iters=5, max_train_frames=20000]
rm_pretrain: [train.steps=4, train.batch_size=8, model.d_model=32, model.n_layers=1, model.d_ff=64,
              model.embedding=free+features]
rm_finetune: [train.steps=4, train.batch_size=8]
judge: ["c_grid=[0.1]", small_groups=drop, min_group_classes=5]
second_judge_stats: ["c_grid=[0.1]"]
n_boot: 200
n_perm: 200
sft: [model.hidden_size=32, model.layers=1, model.heads=2, model.kv_heads=1, model.intermediate_size=64,
      train.steps=4, train.batch_size=8, data.drop_emotion=0.2]
optimize: [train.steps=2, train.batch_size=2, train.ckpt_every=1, sampling.max_ratio=4]
audit: [prompts.max_texts=1, prompts.samples=2, sampling.max_ratio=4]
rm_ensemble_seeds: [1]
watch: [watch.every=1, "watch.splits=[train]", watch.max_texts=1, watch.stop_on_flag=true]
content: phonetic
phones_content: [channels=16, blocks=1, batch_seconds=10, train.steps=3, train.warmup_steps=0, train.progress=false]
phones_judge: [channels=16, blocks=1, batch_seconds=10, train.steps=3, train.warmup_steps=0, train.progress=false]
policy_synth: [sentences=generated, sentences_per_language=6, renditions=2, voices_per_language=2]
policy_pretrain: [model.hidden_size=32, model.layers=1, model.heads=2, model.kv_heads=1, model.intermediate_size=64,
                  train.steps=3, train.batch_size=8, data.max_speech_tokens=400]
"""


@pytest.mark.slow
def test_tiny_experiment_on_real_data_then_skips(shared_data, tmp_path, capsys):
    from tests.unit.asr_fixtures import espeak_librispeech

    cfg = tmp_path / "tiny.yaml"
    espeak_librispeech(tmp_path / "ls", per_speaker=3)
    cfg.write_text(TINY + f"cache: {tmp_path / 'cache'}\ntranscribed: {{librispeech: {tmp_path / 'ls'}}}\n")
    out = tmp_path / "exp"
    args = ["experiment", "--config", str(cfg), f"data={shared_data}", f"out={out}"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| SFT (start) |" in printed and "| ceiling: real held-out speech |" in printed
    res = json.loads((out / "results" / "results.json").read_text())
    assert set(res["per_seed"]) == {"sft", "diffro", "rrpo", "rrpo_ensemble", "grpo", "diffro_watch"}
    assert len(res["per_seed"]["rrpo"]) == 1
    assert res["per_seed"]["diffro"][0]["step"] == 2 and res["per_seed"]["grpo"][0]["step"] == 2
    assert res["per_seed"]["diffro_watch"][0]["step"] <= 2  # where the watch stopped it (or the end)
    for label in ("RRPO (robust RM ensemble)", "GRPO (vanilla RM)", "judge-watch stop"):
        assert label in printed
    pre = res["policy_pretrain"]
    assert pre["reused"] is False and pre["corpora"] == ["synth", "esd", "nemo", "casia"] and pre["seconds_to_make"] > 0
    assert Path(pre["cache"]).parent == tmp_path / "cache" / "policy_pretrain"
    sft_cfg = (out / "sft" / "config.yaml").read_text()
    assert "policy_pretrain/run" in sft_cfg
    # the judge never heard the held-out speaker; its accuracy on that speaker's real speech is the ceiling
    assert res["folds"] == ["ZhaoZuoxiang"]
    judged = res["judge"]["ZhaoZuoxiang"]["casia_heldout"]
    assert judged["speakers"] == ["ZhaoZuoxiang"] and judged["n"] == 250
    # the judge trained on every labelled corpus but ESD English, speakers covering all five classes
    judge_info = json.loads((out / "judge" / "judge.json").read_text())["training"]
    assert set(judge_info["corpora"]) == {"casia", "nemo"} and "ZhaoZuoxiang" not in str(judge_info["train_speakers"])
    # the ceilings: the audit's references (1 held-out sentence x 5 emotions), as recorded and through
    # the codec, judged with the anchor's statistics, with intervals; the codec one has a typicality
    ceil = res["ceilings"]
    assert ceil["ceiling_real"]["judge_acc"]["n"] == 5 and ceil["ceiling_codec"]["judge_acc"]["n"] == 5
    assert ceil["ceiling_codec"]["typicality"]["stat"] > 0 and "typicality" not in ceil["ceiling_real"]
    assert "| ceiling: real held-out speech through the codec |" in printed
    assert set(res["recall"]["sft"]) == {"neutral", "happy", "angry", "sad", "surprise"}
    assert set(ceil["ceiling_codec"]["recall"]) == {"neutral", "happy", "angry", "sad", "surprise"}
    rms = res["reward_models"]["ZhaoZuoxiang"]
    assert set(rms) == {"vanilla_casia_heldout", "vanilla_esd", "robust_casia_heldout", "robust_esd"}
    assert rms["robust_esd"]["n"] == 350
    # the tokens are phonetic: the codec keeps the content encoder trained on the transcribed corpus
    # (+ synthetic + CASIA's non-held-out speakers), and every audit heard PER through the phone judge
    codec_meta = json.loads((out / "codec" / "codec.json").read_text())
    assert codec_meta["content"] == "phonetic" and (out / "codec" / "content" / "phones.json").exists()
    trained_on = json.loads((out / "phones" / "content" / "phones.json").read_text())["trained_on"]
    assert any("transcribed" in m for m in trained_on) and any("casia_codec" in m for m in trained_on)
    judge_on = json.loads((out / "phones" / "judge" / "phones.json").read_text())["trained_on"]
    assert [Path(m).name for m in judge_on] == ["librispeech.jsonl"]
    audit = json.loads((out / "runs" / "rrpo_s0" / "audit" / "audit.json").read_text())
    assert audit["phone_judge"] is not None and audit["points"][-1]["per"]["n"] > 0
    assert [p["step"] for p in audit["points"]] == [0, 1, 2]
    assert all(math.isfinite(audit["fits"]["judge"]["rl"][k]) for k in ("alpha", "beta", "r2"))
    # the anchor: the held-out speaker's recordings of other sentences (never the audit's), spread
    # over the emotions, fixed before any policy was scored
    anchor = audit["anchor"]
    assert set(anchor["speakers"]) == {"ZhaoZuoxiang"} and len(anchor["ids"]) == 100
    assert all(int(i.rsplit("_", 1)[1]) < 246 for i in anchor["ids"])
    assert {anchor["emotions"].count(e) for e in set(anchor["emotions"])} == {20}
    # SFT's judged probabilities are those of the saved WAVs normalised by the anchor's recordings, not
    # by SFT's own samples as the old audit did (the WAVs are 16-bit, so they match to a few hundredths,
    # and far closer than the self-normalised reading)
    import rrpo.audit.mel_judge  # noqa: F401
    from rrpo.audit.judge import load_judge
    from rrpo.data.audio import load_audio

    judge = load_judge(out / "judge")
    stats = judge.group_stats(
        [load_audio(Path(anchor["audio"]) / f"{i}.wav") for i in anchor["ids"]], anchor["speakers"]
    )
    rows = audit["start"]["utterances"]
    wavs = [load_audio(out / "runs" / "rrpo_s0" / "audit" / "audio" / "step_0" / f"{r['id']}.wav") for r in rows]
    proba = judge.predict_proba(wavs, groups=[r["speaker"] for r in rows], stats=stats)
    k = [list(judge.classes).index(r["emotion"]) for r in rows]
    got = np.array([r["judge_target_prob"] for r in rows])
    anchored = proba[np.arange(len(rows)), k]
    own = judge.predict_proba(wavs, groups=[r["speaker"] for r in rows], stats=judge.group_stats(wavs))
    selfnorm = own[np.arange(len(rows)), k]
    assert np.abs(got - anchored).max() < 0.05
    assert np.abs(got - selfnorm).mean() > 2 * np.abs(got - anchored).mean()
    assert len(audit["prompts"]) == 1 * 5 * 2  # 1 text x 5 emotions x 2 samples
    # jobs=2: fine-tunes, runs and audits ran as child processes with their own logs; step 0 was scored
    # once and every system's audit has the same start (audio too)
    assert (out / "logs" / "rrpo_s0.log").exists() and (out / "logs" / "audit_grpo_s0.log").exists()
    assert (out / "audit_start" / "s0" / "start.json").exists()
    other = json.loads((out / "runs" / "grpo_s0" / "audit" / "audit.json").read_text())

    def shared(rows):  # everything of step 0 but the proxy, which is each run's own reward model's
        return [{k: v for k, v in r.items() if k != "proxy_prob"} for r in rows]

    assert shared(other["start"]["utterances"]) == shared(audit["start"]["utterances"])
    assert sorted(p.name for p in (out / "runs" / "grpo_s0" / "audit" / "audio" / "step_0").iterdir()) == sorted(
        p.name for p in (out / "audit_start" / "s0" / "audio").iterdir()
    )
    # the audit speaks held-out sentences (246-250) as the held-out speaker, with the real recording as reference
    assert {p["speaker"] for p in audit["prompts"]} == {"ZhaoZuoxiang"}
    assert all(int(p["ref_id"].rsplit("_", 1)[1]) >= 246 for p in audit["prompts"])
    assert (out / "report" / "index.html").exists() and (out / "results" / "results.png").exists()
    # intervals and paired differences over the 10 judged utterances (1 text x 5 emotions x 2 samples);
    # the second judge re-judged the same WAVs
    iv = res["stats"]["intervals"]["rrpo"]["judge_acc"]
    assert iv["n"] == 10 and iv["clusters"] == 1 and iv["lo"] <= iv["stat"] <= iv["hi"]
    assert res["stats"]["paired"]["rrpo-diffro"]["judge_acc"]["n"] == 10
    assert res["stats"]["paired"]["grpo-diffro"]["judge_acc"]["n"] == 10
    assert res["second_judge"]["eval"]["ZhaoZuoxiang"]["casia_heldout"]["n"] == 250
    assert res["second_judge"]["label_agreement"]["sft"]["n"] == 10
    assert set(res["second_judge"]["claims"]) == {"diffro_hacks", "rrpo_hacks", "rrpo_beats_diffro"}
    assert "| claim | difference | eGeMAPS | log-mel | status |" in printed
    stage_count = len(json.loads((out / "results" / "stage_seconds.json").read_text())["stage_seconds"])

    assert main(args + ["force=[policy_pretrain, results]"]) == 0
    second = capsys.readouterr().out
    assert second.count("done earlier, skipped") == stage_count - 2
    assert f"[experiment {stage_count}/{stage_count}] results: results" in second
    again = json.loads((out / "results" / "results.json").read_text())["policy_pretrain"]
    assert again["reused"] is True and again["key"] == pre["key"] and again["seconds_this_run"] < pre["seconds_to_make"]
    times = json.loads((out / "results" / "stage_seconds.json").read_text())
    assert times["stage_seconds"]["codec"] > 0  # a skipped stage keeps the time it took when it ran
    assert times["this_invocation_seconds"] < times["total_seconds"]
