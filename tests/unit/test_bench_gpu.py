"""bench/gpu.py's CPU mode at a tiny size: every step runs through rrpo's own code paths and the JSON
carries the figures docs/optimize.md reads; the model has CosyVoice2-0.5B's per-layer dimensions."""

from __future__ import annotations

import pytest

from tests.unit.bench_loader import load_bench


def _bench():
    return load_bench("gpu")


def test_config_is_cosyvoice2_0_5b():
    """CosyVoice-BlankEN/config.json of CosyVoice2-0.5B (Qwen2-0.5B): 896 wide, 24 layers, 14 heads
    of 64, 2 KV heads, MLP 4864, 151936 rows, RoPE base 1e6; 6561 speech tokens."""
    b = _bench()
    c = b.COSYVOICE2_0_5B
    assert (
        c["hidden_size"],
        c["num_hidden_layers"],
        c["num_attention_heads"],
        c["num_key_value_heads"],
        c["intermediate_size"],
        c["vocab_size"],
        c["rope_theta"],
    ) == (896, 24, 14, 2, 4864, 151936, 1e6)
    assert b.SPEECH_VOCAB == 6561


@pytest.mark.slow
def test_cpu_mode_runs_every_step(capsys):
    b = _bench()
    res = b.main(
        [
            "--cpu",
            "--layers",
            "1",
            "--batch",
            "2",
            "--tokens",
            "3",
            "--text-rows",
            "64",
            "--text-len",
            "4",
            "--repeats",
            "1",
            "--group",
            "2",
        ]
    )
    assert set(res["steps"]) == {"sft", "diffro", "grpo"}
    for v in res["steps"].values():
        assert v["update_s"] > 0 and v["total_s"] >= v["update_s"] and v["peak_mem_gib"] > 0
    assert res["steps"]["sft"]["sample_s"] == 0.0 and res["steps"]["diffro"]["sample_s"] > 0
    assert res["ratios"]["diffro_over_sft_update_s"] == pytest.approx(
        res["steps"]["diffro"]["update_s"] / res["steps"]["sft"]["update_s"], abs=0.01
    )
    assert '"ratios"' in capsys.readouterr().out
