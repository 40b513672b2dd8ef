"""Policy benchmarks; prints one JSON object.

- generation tokens/s at 300 tokens, KV cache on vs off (goal: cache >= 5x);
- SFT step time (forward + backward + AdamW) fp32 vs bf16 autocast at the default tiny size
  (goal: bf16 >= 2x on an AMX CPU);
- with ``--sft-run RUN`` (a finished ``rrpo policy sft`` run, e.g. on CASIA): its wall time and
  held-out token accuracy / loss, read from the run's metrics.

Usage: ``PYTHONPATH=src python bench/policy.py [--threads 1] [--sft-run runs/policy_casia]``
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def default_policy(speech_vocab: int):
    from rrpo.policy.model import tiny_policy
    from rrpo.policy.sft import SFTModel
    from rrpo.policy.text import CharTokenizer, ENDOFPROMPT, INSTRUCTIONS

    m = SFTModel()
    tok = CharTokenizer.build(["的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作里"]
                              + [INSTRUCTIONS["zh"][e] + ENDOFPROMPT for e in ("angry", "happy")])
    pol = tiny_policy(tok, speech_vocab, hidden_size=m.hidden_size, layers=m.layers, heads=m.heads,
                      kv_heads=m.kv_heads, intermediate_size=m.intermediate_size, speakers=["a"],
                      emotions=["angry", "happy"], languages=["zh"])
    return pol, tok


def bench_generation(pol, n_tokens: int, repeats: int, batch: int = 1) -> dict:
    """Tokens per second (all rows) generating exactly ``n_tokens`` per row, best of ``repeats``."""
    from rrpo.policy.generate import generate
    from rrpo.policy.settings import SamplingConfig

    pr = pol.encode_prompts(["我们中国人说的"] * batch, ["angry"] * batch, "zh", ["a"] * batch)
    out = {}
    for cache in (True, False):
        cfg = SamplingConfig(use_cache=cache)
        generate(pol, pr, cfg, seeds=0, max_len=8, min_len=8, return_noise=False)  # warm-up
        best = float("inf")
        for r in range(repeats):
            t0 = time.perf_counter()
            g = generate(pol, pr, cfg, seeds=r, max_len=n_tokens, min_len=n_tokens, return_noise=False)
            best = min(best, time.perf_counter() - t0)
            assert (g.lens == n_tokens).all()
        out["cache" if cache else "no_cache"] = round(batch * n_tokens / best, 1)
    return {"tokens": n_tokens, "batch": batch, "tokens_per_s_cache": out["cache"], "tokens_per_s_no_cache": out["no_cache"],
            "speedup": round(out["cache"] / out["no_cache"], 2)}


def bench_sft_step(pol, batch_size: int, text_len: int, speech_len: int, steps: int) -> dict:
    import torch.nn.functional as F

    from rrpo.policy.model import IGNORE, Prompts

    g = torch.Generator().manual_seed(0)
    text = torch.randint(2, pol.tokenizer.vocab_size, (batch_size, text_len), generator=g)
    prompts = Prompts(text, torch.full((batch_size,), text_len), torch.full((batch_size,), text_len - 10),
                      torch.zeros(batch_size, dtype=torch.long))
    speech = torch.randint(0, pol.speech_vocab_size, (batch_size, speech_len), generator=g)
    lens = torch.full((batch_size,), speech_len)
    opt = torch.optim.AdamW(pol.parameters(), lr=1e-4)
    pol.train()
    res = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        times = []
        for s in range(steps + 2):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = pol(prompts, speech, lens)
                tgt = pol.targets(speech, lens)
                loss = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), ignore_index=IGNORE)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if s >= 2:
                times.append(time.perf_counter() - t0)
        res[name] = sorted(times)[len(times) // 2]
    return {"batch_size": batch_size, "text_len": text_len, "speech_len": speech_len,
            "step_s_fp32": round(res["fp32"], 4), "step_s_bf16": round(res["bf16"], 4),
            "speedup": round(res["fp32"] / res["bf16"], 2)}


def sft_run_figures(run: str) -> dict:
    from rrpo.runs import RunDir

    metrics = RunDir(run).read_metrics()
    ev = [m for m in metrics if "policy/eval_acc" in m]
    tr = [m for m in metrics if "train/elapsed_s" in m]
    if not ev:
        return {"run": run, "error": "no held-out metrics in this run"}
    return {"run": run, "steps": ev[-1]["step"], "wall_s": tr[-1]["train/elapsed_s"] if tr else None,
            "heldout_token_acc": round(ev[-1]["policy/eval_acc"], 4),
            "heldout_loss": round(ev[-1]["policy/eval_loss"], 4),
            "train_token_acc": round(tr[-1].get("policy/acc", float("nan")), 4) if tr else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--speech-vocab", type=int, default=4608, help="speech vocabulary (built-in codec default 4608)")
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--sft-run", default=None, help="a finished `rrpo policy sft` run to report")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pol, _ = default_policy(args.speech_vocab)
    out = {"threads": args.threads, "params": sum(p.numel() for p in pol.parameters()),
           "generation": bench_generation(pol, args.tokens, args.repeats),
           "generation_batch8": bench_generation(pol, args.tokens, 1, batch=8),
           "sft_step": bench_sft_step(pol, args.batch_size, 30, 75, args.steps)}
    if args.sft_run:
        out["sft_run"] = sft_run_figures(args.sft_run)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
