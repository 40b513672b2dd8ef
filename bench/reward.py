"""Reward-model benchmark: training step time fp32 vs bf16 autocast at the default size, and scoring
throughput (utterances/s) for 4 s utterances (100 tokens at 25 Hz) as ids and as relaxed inputs.

    PYTHONPATH=src python bench/reward.py [--vocab 6561] [--batch 16] [--threads 1] [--reps 5]

Prints one JSON object. Training steps use the full hybrid objective (LS + EAM + FGM); the same
step with token-space adversarial training (one HotFlip step, and the greedy search) is timed beside
it, and relaxed scoring with rare tokens read as their nearest well-heard token beside reading every
token as itself (half the vocabulary rare), with the time to build that map.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def _time(fn, reps: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=6561, help="token vocabulary (CosyVoice2: 6561)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--frame-rate", type=float, default=25.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from rrpo.data.emotions import ESD_CLASSES
    from rrpo.reward.model import ModelConfig, TokenRewardModel
    from rrpo.reward.regularisers import EAMConfig, FGMConfig, RegConfig, TATConfig
    from rrpo.reward.train import make_objective

    dev = torch.device(args.device)
    cfg = ModelConfig()
    torch.manual_seed(0)
    model = TokenRewardModel(args.vocab, ESD_CLASSES, cfg).to(dev)
    B, T = args.batch, int(round(args.seconds * args.frame_rate))
    batch = {
        "tokens": torch.randint(0, args.vocab, (B, T), device=dev),
        "lens": torch.full((B,), T, device=dev),
        "energy": torch.rand(B, T, device=dev),
        "labels": torch.randint(0, 5, (B,), device=dev),
    }
    reg = RegConfig(label_smoothing=0.1, eam=EAMConfig(enabled=True), fgm=FGMConfig(enabled=True))
    obj = make_objective(model, reg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(bf16, objective=obj):
        def f():
            opt.zero_grad()
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss, _ = objective(batch, 0)
            loss.float().backward()
            opt.step()

        return f

    out = {
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "vocab": args.vocab,
        "batch": B,
        "tokens_per_utt": T,
        "params": sum(p.numel() for p in model.parameters()),
        "model": {k: getattr(cfg, k) for k in ("d_model", "n_layers", "n_heads", "d_ff")},
    }
    model.train()
    out["train_step_s_fp32"] = round(_time(step(False), args.reps), 4)
    out["train_step_s_bf16"] = round(_time(step(True), args.reps), 4)
    out["train_bf16_speedup"] = round(out["train_step_s_fp32"] / out["train_step_s_bf16"], 2)
    for name, tat in (
        ("tat_hotflip", TATConfig(enabled=True)),
        ("tat_greedy", TATConfig(enabled=True, search="greedy")),
    ):
        obj_tat = make_objective(
            model, RegConfig(label_smoothing=0.1, eam=EAMConfig(enabled=True), fgm=FGMConfig(enabled=True), tat=tat)
        )
        out[f"train_step_s_fp32_{name}"] = round(_time(step(False, obj_tat), args.reps), 4)
        out[f"train_{name}_over_base"] = round(out[f"train_step_s_fp32_{name}"] / out["train_step_s_fp32"], 2)

    model.eval().requires_grad_(False)
    target = torch.zeros(B, dtype=torch.long, device=dev)
    p = torch.softmax(torch.randn(B, T, args.vocab, device=dev), -1)
    for bf16 in (False, True):
        tag = "bf16" if bf16 else "fp32"
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            with torch.no_grad():
                t_ids = _time(lambda: model.reward(batch["tokens"], batch["lens"], target), args.reps)
            pg = p.clone().requires_grad_(True)

            def relaxed(pg=pg):
                r = model.reward(pg, batch["lens"], target)
                r.sum().backward()

            t_rel = _time(relaxed, args.reps)
        out[f"score_utt_per_s_ids_{tag}"] = round(B / t_ids, 1)
        out[f"score_utt_per_s_relaxed_with_grad_{tag}"] = round(B / t_rel, 1)
    # the nearest-token reading: a feature-tied model, half of the vocabulary heard too rarely
    mcfg = ModelConfig(embedding="free+features", unseen_tokens="nearest")
    feat = (
        TokenRewardModel(args.vocab, ESD_CLASSES, mcfg, torch.randn(args.vocab, 8)).to(dev).eval().requires_grad_(False)
    )
    feat.set_token_count((torch.arange(args.vocab, device=dev) % 2) * 100.0)
    t0 = time.perf_counter()
    feat.token_map()
    out["nearest_map_build_s"] = round(time.perf_counter() - t0, 4)
    pg = p.clone().requires_grad_(True)

    def relaxed_feat():
        feat.reward(pg, batch["lens"], target).sum().backward()

    t_near = _time(relaxed_feat, args.reps)
    mcfg.unseen_tokens = "keep"
    t_keep = _time(relaxed_feat, args.reps)
    out["score_utt_per_s_relaxed_with_grad_fp32_nearest"] = round(B / t_near, 1)
    out["score_utt_per_s_relaxed_with_grad_fp32_keep"] = round(B / t_keep, 1)
    out["relaxed_nearest_over_keep_time"] = round(t_near / t_keep, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
