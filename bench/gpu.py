"""One optimisation step of each kind at CosyVoice2-0.5B's real dimensions; prints one JSON object.

The policy is rrpo's ``TTSPolicy`` with the Qwen2 configuration of CosyVoice2-0.5B's
``CosyVoice-BlankEN/config.json`` (hidden 896, 24 layers, 14 heads, 2 key/value heads, MLP 4864,
151,936 text rows, RoPE base 1e6, tied text embedding) and 6,561 speech tokens, with *random*
weights (nothing is downloaded; step cost does not depend on the values). Steps, each forward +
backward + AdamW under bf16 autocast with fp32 master weights, as ``rrpo policy sft`` /
``rrpo optimize`` run them:

* ``sft``: teacher-forced cross-entropy on B x T random speech tokens;
* ``diffro``: sample B x T tokens (no gradient, KV cache, exactly T tokens), teacher-forced replay
  with gradient, straight-through Gumbel-softmax into a frozen reward model (rrpo's
  ``TokenRewardModel`` at its GPU scale: d 512, 6 layers, 8 heads, FF 2048), β·KL to a frozen
  reference copy of the policy;
* ``grpo``: the same samples as B/4 prompts x 4, scalar rewards from the reward model,
  group-relative advantages, clipped ratio, β·KL.

Each step is timed after one untimed warm-up, as sample / update / total seconds; peak memory is
``torch.cuda.max_memory_allocated`` per step on CUDA (on the CPU: the process's peak RSS so far,
which only grows). ``ratios`` divide the DiffRO and GRPO times by the SFT step's.

    PYTHONPATH=src python bench/gpu.py                       # CUDA, full depth, batch 8 x 300 tokens
    PYTHONPATH=src python bench/gpu.py --cpu                 # CPU check: 2 layers, 4096 text rows, batch 2 x 40
    PYTHONPATH=src python bench/gpu.py --cpu --layers 24 --text-rows 151936 --batch 8 --tokens 300   # full size on CPU (slow)
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import time

import torch

#: CosyVoice2-0.5B: CosyVoice-BlankEN/config.json (Qwen2-0.5B) and the speech vocabulary
COSYVOICE2_0_5B = dict(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    use_sliding_window=False,
    hidden_act="silu",
)
SPEECH_VOCAB = 6561
TEXT_IDS = 151663  # ids the tokenizer can produce (text + CosyVoice2's special tokens)


def build(layers: int, device, text_rows: int, seed: int = 0):
    from rrpo.policy.model import TTSPolicy, qwen2_config
    from rrpo.reward.model import ModelConfig, TokenRewardModel

    torch.manual_seed(seed)
    cfg = qwen2_config({**COSYVOICE2_0_5B, "num_hidden_layers": layers, "vocab_size": text_rows})
    policy = TTSPolicy(cfg, SPEECH_VOCAB, info={"emotions": ["angry", "happy"]}).to(device)
    ref = copy.deepcopy(policy).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    rm = (
        TokenRewardModel(
            SPEECH_VOCAB, ["angry", "happy"], ModelConfig(d_model=512, n_layers=6, n_heads=8, d_ff=2048, dropout=0.0)
        )
        .to(device)
        .eval()
    )
    for p in rm.parameters():
        p.requires_grad_(False)
    return policy, ref, rm


def prompts(batch: int, text_len: int, seed: int, text_ids: int = TEXT_IDS):
    from rrpo.policy.model import Prompts

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, text_ids, (batch, text_len), generator=g)
    return Prompts(ids, torch.full((batch,), text_len), torch.full((batch,), max(1, text_len - 10)))


class Meter:
    def __init__(self, device):
        self.device = device

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def reset(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float:
        if self.device.type == "cuda":
            return round(torch.cuda.max_memory_allocated() / 2**30, 2)
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
        return round(kib / 2**20, 2)


def run_steps(args) -> dict:
    from rrpo.optimize.objectives import RewardTerm, diffro_loss, grpo_loss
    from rrpo.policy.generate import generate
    from rrpo.policy.settings import SamplingConfig
    from rrpo.policy.sft import token_loss

    device = torch.device("cpu" if args.cpu else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --cpu for the reduced CPU check")
    policy, ref, rm = build(args.layers, device, args.text_rows)
    text_ids = min(TEXT_IDS, args.text_rows)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-6)
    m = Meter(device)
    B, T = args.batch, args.tokens
    emotions = ["angry", "happy"] * (B // 2) + ["angry"] * (B % 2)
    term = RewardTerm("emo", lambda y, lens, target: rm.reward(y, lens, target), 1.0, SPEECH_VOCAB)
    amp = lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)  # noqa: E731
    cfg = SamplingConfig()

    def sft(k):
        g = torch.Generator().manual_seed(k)
        batch = {
            "prompts": prompts(B, args.text_len, k, text_ids),
            "speech": torch.randint(0, SPEECH_VOCAB, (B, T), generator=g),
            "speech_lens": torch.full((B,), T),
        }
        t0 = time.perf_counter()
        with amp():
            loss, _, _ = token_loss(policy, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        m.sync()
        return 0.0, time.perf_counter() - t0

    def sample(k):
        policy.eval()
        t0 = time.perf_counter()
        gen = generate(
            policy,
            prompts(B, args.text_len, k, text_ids),
            cfg,
            seeds=k * 1000,
            bf16=True,
            min_len=T,
            max_len=T,
            return_noise=True,
        )
        m.sync()
        policy.train()
        return gen.to(device), time.perf_counter() - t0

    def diffro(k):
        gen, ts = sample(k)
        t0 = time.perf_counter()
        with amp():
            logits = policy(gen.prompts, gen.ids, gen.lens)[:, :T]
            with torch.no_grad():
                ref_logits = ref(gen.prompts, gen.ids, gen.lens)[:, :T]
            loss, _ = diffro_loss(
                logits, ref_logits, gen.ids, gen.lens, emotions, [term], beta=0.1, tau=1.0, noise=gen.noise[:, :T]
            )
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        m.sync()
        return ts, time.perf_counter() - t0

    def grpo(k):
        gen, ts = sample(k)
        t0 = time.perf_counter()
        with amp():
            logits = policy(gen.prompts, gen.ids, gen.lens)[:, :T]
            with torch.no_grad():
                ref_logits = ref(gen.prompts, gen.ids, gen.lens)[:, :T]
                reward = rm.reward(gen.ids, gen.lens, emotions).float()
            loss, _ = grpo_loss(logits, ref_logits, gen.ids, gen.lens, emotions, reward, group=args.group, beta=0.1)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        m.sync()
        return ts, time.perf_counter() - t0

    out = {}
    for name, fn in (("sft", sft), ("diffro", diffro), ("grpo", grpo)):
        fn(0)  # warm-up (kernels, allocator, optimizer state)
        m.reset()
        best = None
        for r in range(args.repeats):
            ts, tu = fn(r + 1)
            if best is None or ts + tu < best[0] + best[1]:
                best = (ts, tu)
        out[name] = {
            "sample_s": round(best[0], 3),
            "update_s": round(best[1], 3),
            "total_s": round(sum(best), 3),
            "peak_mem_gib": m.peak_gib(),
        }
    n_params = sum(p.numel() for p in policy.parameters())
    ratios = {
        f"{k}_over_sft_{part}": round(out[k][part] / out["sft"]["update_s"], 2)
        for k in ("diffro", "grpo")
        for part in ("update_s", "total_s")
    }
    return {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "dtype": "bf16 autocast, fp32 master weights",
        "layers": args.layers,
        "text_rows": args.text_rows,
        "batch": B,
        "speech_tokens": T,
        "text_tokens": args.text_len,
        "group": args.group,
        "policy_params": n_params,
        "reward_model_params": sum(p.numel() for p in rm.parameters()),
        "steps": out,
        "ratios": ratios,
        "memory_note": "peak_mem_gib: torch.cuda.max_memory_allocated per step"
        if device.type == "cuda"
        else "peak_mem_gib: process peak RSS so far (CPU)",
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--cpu",
        action="store_true",
        help="CPU check at reduced size (defaults: 2 layers, 4096 text rows, batch 2 x 40)",
    )
    ap.add_argument("--layers", type=int, default=None, help="decoder layers (CUDA default 24, CPU 2)")
    ap.add_argument("--batch", type=int, default=None, help="sequences per step (CUDA default 8, CPU 2)")
    ap.add_argument("--tokens", type=int, default=None, help="speech tokens per sequence (CUDA default 300, CPU 40)")
    ap.add_argument(
        "--text-rows",
        type=int,
        default=None,
        help="text embedding rows (CUDA default 151936 as released; CPU 4096: the 136 M-parameter "
        "text table and its AdamW update dominate a CPU step and say nothing about the GPU)",
    )
    ap.add_argument("--text-len", type=int, default=30, help="text tokens per prompt (instruction + text)")
    ap.add_argument("--group", type=int, default=4, help="GRPO samples per prompt (batch must be a multiple)")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats per step (best kept)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    args = ap.parse_args(argv)
    args.layers = args.layers or (2 if args.cpu else 24)
    args.batch = args.batch or (2 if args.cpu else 8)
    args.tokens = args.tokens or (40 if args.cpu else 300)
    args.text_rows = args.text_rows or (4096 if args.cpu else COSYVOICE2_0_5B["vocab_size"])
    if args.cpu and args.group > args.batch:
        args.group = args.batch
    if args.batch % args.group:
        raise SystemExit(f"--batch {args.batch} is not a multiple of --group {args.group}")
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run_steps(args)
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
