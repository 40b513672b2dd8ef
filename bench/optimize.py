"""Benchmark of ``rrpo optimize``: DiffRO vs GRPO, and the cost of a DiffRO step; prints one JSON object.

    PYTHONPATH=src python bench/optimize.py [--budget 30] [--seeds 0 1] [--plot curves.png]
        [--sft-run RUN --rm-run RUN]  [--lengths 50 100 200] [--vocabs 61 1021 6561] [--device cpu]

Everything is measured side by side in one run, and reported as ratios where the machine's speed
matters (the machine may be shared):

1. **Sample efficiency.** A tiny policy (SFT run) and a tiny token reward model (RM run), built here
   from generated data unless ``--sft-run``/``--rm-run`` are given. For each seed, DiffRO and GRPO
   each get the same wall-clock budget of training time (``--budget`` seconds; evaluation is not
   counted) and the same number of samples per step. After steps 1, 2, 3, 4, 6, 8, 11, ... the proxy
   reward (the RM's log-probability of the target emotion, on sampled ids) is measured on a fixed
   set of prompts with fixed sampling seeds. Reported: the reward series against samples and
   seconds, the time each needs to reach GRPO's final reward (mean of its last three evaluations) and
   their ratio (goal: DiffRO ≤ ¼ of GRPO's time; also to 50 % and 90 % of GRPO's gain over the start), and the gradient variance across sampling seeds:
   at the starting policy, the gradient of the first step's objective over ``--var-seeds`` sampling
   seeds on the same prompts, ``mean_s ||g_s − ḡ||² / ||ḡ||²`` (lower = less noisy), for both.
   Each step calls the trainer's own objective (``rrpo.optimize.objectives.OBJECTIVES[algo]``, under
   the training loop's bf16 autocast); the loop around it (AdamW + clipping as in
   ``rrpo.train.loop``) is this script's, because it stops on a wall-clock budget and evaluates
   between steps, without the run-folder bookkeeping.
2. **Step cost.** On one sampled batch (sampling excluded), a DiffRO step (teacher-forced policy
   forward, frozen reference forward, straight-through relaxation, RM forward, KL, backward, AdamW)
   over a teacher-forced SFT step (forward, cross-entropy, backward, AdamW) on the same ids: median
   time ratio (goal ≤ 1.5×) and peak memory of each, for every sequence length in ``--lengths`` and
   speech vocabulary in ``--vocabs`` (6561 speech ids = CosyVoice2's 6,564 output rows). Each point
   runs in a fresh subprocess. Memory on CPU is the peak resident set size above the resident set
   just before the step (``VmHWM`` reset through ``/proc/self/clear_refs``; glibc's mmap threshold
   fixed at 128 KiB so freed tensors leave the resident set); on CUDA it is
   ``torch.cuda.max_memory_allocated`` above the allocated memory before the step. Also given in
   units of one fp32 (B, T, V_out) tensor, the size of the relaxed token tensor.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

CHARS = "今天气好我们走吧你世界明见人大小中上下来去说"
EMOTIONS = ["angry", "happy"]
SPEAKERS = ["s1", "s2"]


# ------------------------------------------------------------------------------------------ data


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    while len(out) < n:
        t = "".join(rng.choice(list(CHARS), size=int(rng.integers(3, 6))))
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def tokens_for(text: str, emotion: str, speaker: str, vocab: int, rng: np.random.Generator) -> np.ndarray:
    """Speech ids that depend on emotion: angry draws from the lower half of the vocabulary with a
    text-dependent walk, happy from the upper half; 10 % of ids are uniform noise."""
    n = 3 * len(text) + int(rng.integers(0, 3))
    half = vocab // 2
    base = (sum(map(ord, text)) + SPEAKERS.index(speaker)) % half
    ids = (base + np.arange(n) * 3) % half + (0 if emotion == "angry" else half)
    noise = rng.random(n) < 0.1
    ids[noise] = rng.integers(0, vocab, int(noise.sum()))
    return ids


def make_corpus(folder: Path, vocab: int, n_texts: int) -> tuple[Path, Path]:
    from rrpo.codec.shards import ShardWriter
    from rrpo.data.manifest import Utterance, write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    recs = []
    w = ShardWriter(
        folder / "shards",
        {"vocab_size": vocab, "frame_rate": 25.0, "codec": {"name": "toy"}, "manifest": "manifest.jsonl"},
        shard_size=64,
    )
    for ti, text in enumerate(make_texts(n_texts)):
        for emo in EMOTIONS:
            for spk in SPEAKERS:
                for k in range(2):
                    uid = f"{spk}_{emo}_{ti}_{k}"
                    toks = tokens_for(text, emo, spk, vocab, rng)
                    recs.append(Utterance(uid, f"{uid}.wav", 16000, len(toks) / 25.0, text, spk, "zh", emo, "train"))
                    w.add(uid, toks, np.ones(len(toks), np.float32))
    w.close()
    write_manifest(folder / "manifest.jsonl", recs)
    return folder / "manifest.jsonl", folder / "shards"


def build_runs(root: Path, args) -> tuple[Path, Path, Path]:
    """SFT run, RM run and manifest made from generated data (seconds on one core)."""
    from rrpo.config import load_config
    from rrpo.policy.sft import SFTConfig, run_sft
    from rrpo.reward.train import RMTrainConfig, train_rm

    man, shards = make_corpus(root / "data", args.vocab, args.texts)
    run_sft(
        load_config(
            SFTConfig,
            None,
            [
                f"out={root / 'sft'}",
                f"data.manifest={man}",
                f"data.shards={shards}",
                "data.heldout=[]",
                "model.hidden_size=64",
                "model.layers=2",
                "model.heads=4",
                "model.kv_heads=2",
                "model.intermediate_size=128",
                f"train.steps={args.sft_steps}",
                "train.batch_size=8",
                "train.lr=3e-3",
                "train.progress=false",
                "train.log_every=10",
                "train.device=cpu",
                "train.schedule=constant",
            ],
        )
    )
    train_rm(
        load_config(
            RMTrainConfig,
            None,
            [
                f"data.manifests=[{man}]",
                f"data.tokens=[{shards}]",
                f"classes=[{', '.join(EMOTIONS)}]",
                "model.d_model=32",
                "model.n_layers=1",
                "model.n_heads=2",
                "model.d_ff=64",
                "model.pool_dim=16",
                f"train.steps={args.rm_steps}",
                "train.batch_size=16",
                "train.lr=3e-3",
                "train.progress=false",
                "data.max_tokens=0",
            ],
        ),
        root / "rm",
    )
    return root / "sft", root / "rm", man


def prompt_rows(manifest: Path, policy, rm) -> list[dict]:
    from rrpo.data.manifest import read_manifest

    emotions = [e for e in rm.classes if not policy.emotions or e in policy.emotions]
    rows, seen = [], set()
    for u in read_manifest(manifest):
        for emo in emotions:
            key = (u.text, u.speaker, emo)
            if key not in seen:
                seen.add(key)
                rows.append({"text": u.text, "language": u.language, "speaker": u.speaker, "emotion": emo})
    return rows


# --------------------------------------------------------------------------- sample efficiency


class Setup:
    """Policy, frozen reference and RM for one optimisation run, and the trainer's objective."""

    def __init__(self, sft: Path, rm_path: Path, rows: list[dict], args):
        from rrpo.optimize.objectives import RewardTerm
        from rrpo.policy.io import load_policy
        from rrpo.policy.settings import SamplingConfig
        from rrpo.reward.model import load_reward_model

        self.policy = load_policy(sft)
        self.ref = copy.deepcopy(self.policy).eval().requires_grad_(False)
        self.rm = load_reward_model(rm_path)
        rm = self.rm
        self.terms = [RewardTerm("emo", lambda y, lens, tgt: rm.reward(y, lens, tgt), 1.0, rm.vocab_size)]
        self.rows = rows
        self.args = args
        self.sampling = SamplingConfig(min_ratio=2.0, max_ratio=args.max_ratio)
        self.use_spk = self.policy.speaker_embedding is not None

    def prompts(self, rows):
        return self.policy.encode_prompts(
            [r["text"] for r in rows],
            [r["emotion"] for r in rows],
            [r["language"] for r in rows],
            [r["speaker"] for r in rows] if self.use_spk else None,
        )

    def loss(self, algo: str, rows: list[dict], seeds: list[int], bf16: bool):
        """The trainer's objective for ``algo`` (``rrpo.optimize.objectives.OBJECTIVES``) on ``rows``
        (already repeated per group), under the training loop's autocast."""
        from rrpo.optimize.objectives import OBJECTIVES, StepContext
        from rrpo.train.loop import autocast

        a = self.args
        ctx = StepContext(
            self.policy, self.ref, self.terms, self.sampling, beta=a.beta, tau=a.tau, group=a.group, clip=0.2, bf16=bf16
        )
        batch = {"prompts": self.prompts(rows), "emotions": [r["emotion"] for r in rows], "seeds": seeds}
        with autocast(torch.device("cpu"), bf16):
            return OBJECTIVES[algo](ctx, batch)

    @torch.no_grad()
    def evaluate(self, rows: list[dict], bf16: bool) -> float:
        from rrpo.policy.generate import generate

        gen = generate(self.policy, self.prompts(rows), self.sampling, 10_000, return_noise=False, bf16=bf16)
        return float(self.rm.reward(gen.ids, gen.lens, [r["emotion"] for r in rows]).mean())


def batch_rows(rows, algo: str, batch: int, group: int, rng: np.random.Generator) -> list[dict]:
    """DiffRO: ``batch`` prompts, one sample each (as the trainer); GRPO: batch/group prompts × group."""
    if algo == "grpo":
        pick = rng.choice(len(rows), batch // group, replace=False)
        return [rows[i] for i in pick for _ in range(group)]
    return [rows[i] for i in rng.choice(len(rows), batch, replace=False)]


def optimise(algo: str, seed: int, sft, rm, rows, eval_rows, args) -> dict:
    torch.manual_seed(seed)
    s = Setup(sft, rm, rows, args)
    params = [p for p in s.policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    rng = np.random.default_rng(seed)
    clock, samples, tokens, steps = 0.0, 0, 0, 0
    series = {"seconds": [0.0], "samples": [0], "reward": [s.evaluate(eval_rows, args.bf16)]}
    next_eval = 1  # evaluate after steps 1, 2, 3, 4, 6, 8, 11, ... (×1.4: fine early, sparse late)
    train_reward = []
    while clock < args.budget:
        t0 = time.perf_counter()
        sel = batch_rows(rows, algo, args.batch, args.group, rng)
        seeds = torch.randint(0, 2**31 - 1, (len(sel),)).tolist()
        opt.zero_grad(set_to_none=True)
        loss, m = s.loss(algo, sel, seeds, args.bf16)
        loss.float().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        clock += time.perf_counter() - t0
        steps += 1
        samples += len(sel)
        tokens += int(m["policy/len"] * len(sel))
        train_reward.append(m["policy/reward"])
        if steps >= next_eval or clock >= args.budget:
            series["seconds"].append(round(clock, 2))
            series["samples"].append(samples)
            series["reward"].append(round(s.evaluate(eval_rows, args.bf16), 4))
            next_eval = max(next_eval + 1, int(next_eval * args.eval_growth))
    return {
        "steps": steps,
        "samples": samples,
        "tokens": tokens,
        "seconds_per_step": round(clock / steps, 4),
        "train_reward_first_last": [round(train_reward[0], 4), round(float(np.mean(train_reward[-5:])), 4)],
        **series,
    }


def first_time(series: dict, target: float, key: str = "seconds"):
    """First evaluation after the start (index 0 is the starting policy) with reward ≥ target."""
    for x, r in list(zip(series[key], series["reward"]))[1:]:
        if r >= target:
            return x
    return None


def grad_variance(algo: str, sft, rm, rows, args) -> dict:
    """Variance of the first step's gradient over sampling seeds, normalised by ||mean gradient||²."""
    s = Setup(sft, rm, rows, args)
    rng = np.random.default_rng(123)
    sel = batch_rows(rows, "grpo", args.batch, args.group, rng)  # same prompts for both estimators
    params = [p for p in s.policy.parameters() if p.requires_grad]
    grads = []
    for k in range(args.var_seeds):
        torch.manual_seed(1000 + k)
        s.policy.zero_grad(set_to_none=True)
        seeds = [10_000 * (k + 1) + i for i in range(len(sel))]
        loss, _ = s.loss(algo, sel, seeds, bf16=False)
        loss.backward()
        grads.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params]))
    G = torch.stack(grads).double()  # (S, P)
    mean = G.mean(0)
    var = ((G - mean) ** 2).sum(1).mean()
    cos = torch.nn.functional.cosine_similarity(G, mean[None], dim=1)
    return {
        "normalised_variance": round(float(var / mean.pow(2).sum()), 4),
        "mean_cosine_to_mean_gradient": round(float(cos.mean()), 4),
        "seeds": args.var_seeds,
    }


def sample_efficiency(args, work: Path) -> dict:
    from rrpo.policy.io import load_policy
    from rrpo.reward.model import load_reward_model

    t0 = time.perf_counter()
    if args.sft_run and args.rm_run:
        sft, rm, man = Path(args.sft_run), Path(args.rm_run), Path(args.manifest)
    else:
        sft, rm, man = build_runs(work, args)
    setup_s = time.perf_counter() - t0
    rows = prompt_rows(man, load_policy(sft), load_reward_model(rm))
    eval_rows = [
        rows[i] for i in np.random.default_rng(7).choice(len(rows), min(args.eval_prompts, len(rows)), replace=False)
    ]
    runs = {"diffro": [], "grpo": []}
    for seed in args.seeds:
        for algo in ("grpo", "diffro"):  # alternate, so both see the same machine load
            runs[algo].append(optimise(algo, seed, sft, rm, rows, eval_rows, args))
    per_seed = []
    for i, seed in enumerate(args.seeds):
        g, d = runs["grpo"][i], runs["diffro"][i]
        final = float(np.mean(g["reward"][-3:]))
        start = g["reward"][0]
        row = {
            "seed": seed,
            "start_reward": round(start, 4),
            "grpo_final_reward": round(final, 4),
            "diffro_final_reward": round(float(np.mean(d["reward"][-3:])), 4),
        }
        for frac in (0.5, 0.9, 1.0):  # reach start + frac × GRPO's gain (1.0 = GRPO's final reward)
            target = start + frac * (final - start)
            tg, td = first_time(g, target), first_time(d, target)
            sg, sd = first_time(g, target, "samples"), first_time(d, target, "samples")
            row[f"to_{frac:g}"] = {
                "grpo_seconds": tg,
                "diffro_seconds": td,
                "time_ratio_diffro_over_grpo": None if td is None or not tg else round(td / tg, 3),
                "samples_ratio_diffro_over_grpo": None if sd is None or not sg else round(sd / sg, 3),
            }
        per_seed.append(row)
    ratios = [p["to_1"]["time_ratio_diffro_over_grpo"] for p in per_seed]
    ratios90 = [p["to_0.9"]["time_ratio_diffro_over_grpo"] for p in per_seed]
    out = {
        "setup": {
            "sft": str(sft),
            "rm": str(rm),
            "prompts": len(rows),
            "eval_prompts": len(eval_rows),
            "speech_vocab": load_policy(sft).speech_vocab_size,
            "setup_seconds": round(setup_s, 1),
            "budget_seconds_each": args.budget,
            "samples_per_step": args.batch,
            "grpo_group": args.group,
            "lr": args.lr,
            "beta": args.beta,
            "tau": args.tau,
            "bf16": args.bf16,
        },
        "per_seed": per_seed,
        "median_time_ratio_diffro_over_grpo": None if None in ratios or not ratios else statistics.median(ratios),
        "median_time_ratio_to_90pct_of_grpo_gain": None
        if None in ratios90 or not ratios90
        else statistics.median(ratios90),
        "goal_time_ratio": 0.25,
        "gradient_variance": {a: grad_variance(a, sft, rm, rows, args) for a in ("diffro", "grpo")},
        "series": runs,
    }
    if args.plot:
        plot(runs, args.plot)
    return out


def plot(runs: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for algo, color in (("diffro", "tab:red"), ("grpo", "tab:blue")):
        for i, r in enumerate(runs[algo]):
            for ax, key in zip(axes, ("samples", "seconds")):
                ax.plot(r[key], r["reward"], color=color, alpha=0.8, label=algo if i == 0 else None)
    for ax, key in zip(axes, ("samples", "training seconds")):
        ax.set_xlabel(key)
        ax.set_ylabel("proxy reward (RM log p(target))")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ------------------------------------------------------------------------------------ step cost


def _rss_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def step_worker(spec: dict) -> dict:
    """One (length, vocabulary) point in this process: time and peak memory of both steps."""
    import ctypes

    from rrpo.optimize.objectives import RewardTerm, diffro_loss
    from rrpo.policy.generate import generate
    from rrpo.policy.model import tiny_policy
    from rrpo.policy.settings import SamplingConfig
    from rrpo.policy.sft import token_loss
    from rrpo.policy.text import ENDOFPROMPT, INSTRUCTIONS, CharTokenizer
    from rrpo.reward.model import ModelConfig, TokenRewardModel

    torch.manual_seed(0)
    dev = torch.device(spec["device"])
    B, T, S, bf16 = spec["batch"], spec["length"], spec["vocab"], spec["bf16"]
    tok = CharTokenizer.build([CHARS] + [INSTRUCTIONS["zh"][e] + ENDOFPROMPT for e in EMOTIONS])
    policy = tiny_policy(
        tok,
        S,
        hidden_size=spec["hidden"],
        layers=spec["layers"],
        heads=4,
        kv_heads=2,
        intermediate_size=2 * spec["hidden"],
        emotions=EMOTIONS,
        languages=["zh"],
    ).to(dev)
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    rm = TokenRewardModel(S, EMOTIONS, ModelConfig(d_model=128, n_layers=2, n_heads=4, d_ff=256, pool_dim=64))
    rm = rm.to(dev).eval().requires_grad_(False)
    terms = [RewardTerm("emo", lambda y, lens, tgt: rm.reward(y, lens, tgt), 1.0, S)]
    texts = make_texts(B)
    emotions = [EMOTIONS[i % 2] for i in range(B)]
    prompts = policy.encode_prompts(texts, emotions, "zh")
    gen = generate(policy, prompts, SamplingConfig(ras_window=0), 0, return_noise=True, bf16=bf16, max_len=T, min_len=T)
    ids, lens, noise = gen.ids.to(dev), gen.lens.to(dev), gen.noise[:, :T].contiguous().to(dev)
    del gen.noise
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    batch = {"prompts": prompts, "speech": ids, "speech_lens": lens}

    def diffro_step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = policy(prompts, ids, lens)[:, :T]
            with torch.no_grad():
                ref_logits = ref(prompts, ids, lens)[:, :T]
            loss, _ = diffro_loss(logits, ref_logits, ids, lens, emotions, terms, beta=0.1, tau=1.0, noise=noise)
            del logits, ref_logits
        loss.float().backward()
        opt.step()

    def sft_step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _, _ = token_loss(policy, batch)
        loss.float().backward()
        opt.step()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    @torch.no_grad()
    def ref_forward():  # the part of a DiffRO step an SFT step does not have, besides the RM and relaxation
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            ref(prompts, ids, lens)

    policy.train()
    steps = {"diffro": diffro_step, "sft": sft_step}
    for f in steps.values():  # warm-up (AdamW state, allocator)
        f()
        f()
    times = {k: [] for k in [*steps, "ref_forward"]}
    for _ in range(spec["repeats"]):
        for k, f in [*steps.items(), ("ref_forward", ref_forward)]:
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            times[k].append(time.perf_counter() - t0)
    libc = ctypes.CDLL("libc.so.6") if dev.type == "cpu" else None
    peak = {}
    for k, f in steps.items():
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            f()
            torch.cuda.synchronize()
            peak[k] = (torch.cuda.max_memory_allocated() - before) / 2**20
        else:
            libc.malloc_trim(0)
            before = _rss_kb("VmRSS")
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            f()
            peak[k] = (_rss_kb("VmHWM") - before) / 1024
    v_out = policy.n_out
    unit = B * T * v_out * 4 / 2**20  # MiB of one fp32 (B, T, V_out) tensor
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "length": T,
        "vocab": S,
        "v_out": v_out,
        "batch": B,
        "diffro_ms": round(1000 * med["diffro"], 1),
        "sft_ms": round(1000 * med["sft"], 1),
        "time_ratio_diffro_over_sft": round(med["diffro"] / med["sft"], 3),
        "ref_forward_ms": round(1000 * med["ref_forward"], 1),
        "peak_mib": {k: round(v, 1) for k, v in peak.items()},
        "peak_ratio_diffro_over_sft": round(peak["diffro"] / max(peak["sft"], 1e-9), 3),
        "relaxed_tensor_mib": round(unit, 2),
        "extra_peak_in_relaxed_tensors": round((peak["diffro"] - peak["sft"]) / unit, 2),
    }


def step_cost(args) -> dict:
    points = []
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MALLOC_MMAP_THRESHOLD_": "131072",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    for V in args.vocabs:
        for T in args.lengths:
            spec = {
                "length": T,
                "vocab": V,
                "batch": args.step_batch,
                "hidden": args.step_hidden,
                "layers": args.step_layers,
                "repeats": args.repeats,
                "bf16": args.bf16,
                "device": args.device,
            }
            r = subprocess.run(
                [sys.executable, __file__, "--step-worker", json.dumps(spec)], env=env, capture_output=True, text=True
            )
            if r.returncode != 0:
                raise SystemExit(f"step worker failed for {spec}:\n{r.stderr[-3000:]}")
            points.append(json.loads(r.stdout.strip().splitlines()[-1]))
    ratios = [p["time_ratio_diffro_over_sft"] for p in points]
    return {
        "policy": {"hidden": args.step_hidden, "layers": args.step_layers, "batch": args.step_batch},
        "reward_model": {"d_model": 128, "layers": 2},
        "device": args.device,
        "bf16": args.bf16,
        "memory_measure": (
            "peak RSS above the pre-step RSS (VmHWM reset, 128 KiB mmap threshold), fresh subprocess per point"
        )
        if args.device == "cpu"
        else "torch.cuda.max_memory_allocated above the pre-step allocation",
        "max_time_ratio": max(ratios),
        "median_time_ratio": statistics.median(ratios),
        "goal_time_ratio": 1.5,
        "points": points,
    }


# ------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=30.0, help="training seconds per algorithm and seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--eval-growth", type=float, default=1.4, help="evaluate at steps growing by this factor")
    ap.add_argument("--eval-prompts", type=int, default=24)
    ap.add_argument("--batch", type=int, default=8, help="samples per step (both algorithms)")
    ap.add_argument("--group", type=int, default=4, help="GRPO samples per prompt")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--beta", type=float, default=0.05)
    ap.add_argument("--tau", type=float, default=1.0)
    ap.add_argument("--max-ratio", type=float, default=4.0, help="sampling.max_ratio")
    ap.add_argument("--var-seeds", type=int, default=8, help="sampling seeds for the gradient variance")
    ap.add_argument("--vocab", type=int, default=32, help="speech vocabulary of the generated data")
    ap.add_argument("--texts", type=int, default=12)
    ap.add_argument("--sft-steps", type=int, default=10, help="short: the start policy must leave room to improve")
    ap.add_argument("--rm-steps", type=int, default=60)
    ap.add_argument(
        "--sft-run", default="", help="use this SFT run instead of building one (with --rm-run, --manifest)"
    )
    ap.add_argument("--rm-run", default="")
    ap.add_argument("--manifest", default="", help="prompts for --sft-run/--rm-run")
    ap.add_argument("--lengths", type=int, nargs="+", default=[50, 100, 200])
    ap.add_argument("--vocabs", type=int, nargs="+", default=[61, 1021, 6561], help="speech ids (rows = +3)")
    ap.add_argument("--step-batch", type=int, default=4)
    ap.add_argument("--step-hidden", type=int, default=128)
    ap.add_argument("--step-layers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false")
    ap.add_argument("--skip", choices=["efficiency", "cost"], nargs="*", default=[])
    ap.add_argument("--plot", default="", help="write the reward curves to this PNG")
    ap.add_argument("--work", default="", help="folder for the generated runs (default: a temporary one)")
    ap.add_argument("--step-worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.step_worker:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        print(json.dumps(step_worker(json.loads(args.step_worker))))
        return 0
    if (args.sft_run or args.rm_run) and not (args.sft_run and args.rm_run and args.manifest):
        ap.error("--sft-run, --rm-run and --manifest go together")
    torch.set_num_threads(args.threads)
    import logging

    logging.disable(logging.INFO)
    t0 = time.perf_counter()
    out = {"bench": "optimize", "threads": args.threads, "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        if "cost" not in args.skip:
            out["step_cost"] = step_cost(args)
        if "efficiency" not in args.skip:
            out["sample_efficiency"] = sample_efficiency(args, work)
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
