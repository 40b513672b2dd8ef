"""Policy benchmarks; prints one JSON object.

- generation tokens/s at 300 tokens, KV cache on vs off (goal: cache >= 5x);
- SFT step time (forward + backward + AdamW) fp32 vs bf16 autocast at the default tiny size
  (goal: bf16 >= 2x on an AMX CPU);
- with ``--sft-run RUN`` (a finished ``rrpo policy sft`` run, e.g. on CASIA): its wall time and
  held-out token accuracy / loss, read from the run's metrics.

Usage: ``PYTHONPATH=src python bench/policy.py [--threads 1] [--sft-run runs/policy_casia
[--codec runs/codec --wav-out DIR --sentences 2]] [--only-run]``
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def default_policy(speech_vocab: int):
    from rrpo.policy.model import tiny_policy
    from rrpo.policy.sft import SFTModel
    from rrpo.policy.text import ENDOFPROMPT, INSTRUCTIONS, CharTokenizer

    m = SFTModel()
    tok = CharTokenizer.build(
        ["的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作里"]
        + [INSTRUCTIONS["zh"][e] + ENDOFPROMPT for e in ("angry", "happy")]
    )
    pol = tiny_policy(
        tok,
        speech_vocab,
        hidden_size=m.hidden_size,
        layers=m.layers,
        heads=m.heads,
        kv_heads=m.kv_heads,
        intermediate_size=m.intermediate_size,
        speakers=["a"],
        emotions=["angry", "happy"],
        languages=["zh"],
    )
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
    return {
        "tokens": n_tokens,
        "batch": batch,
        "tokens_per_s_cache": out["cache"],
        "tokens_per_s_no_cache": out["no_cache"],
        "speedup": round(out["cache"] / out["no_cache"], 2),
    }


def bench_sft_step(pol, batch_size: int, text_len: int, speech_len: int, steps: int) -> dict:
    import torch.nn.functional as F

    from rrpo.policy.model import IGNORE, Prompts

    g = torch.Generator().manual_seed(0)
    text = torch.randint(2, pol.tokenizer.vocab_size, (batch_size, text_len), generator=g)
    prompts = Prompts(
        text,
        torch.full((batch_size,), text_len),
        torch.full((batch_size,), text_len - 10),
        torch.zeros(batch_size, dtype=torch.long),
    )
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
    return {
        "batch_size": batch_size,
        "text_len": text_len,
        "speech_len": speech_len,
        "step_s_fp32": round(res["fp32"], 4),
        "step_s_bf16": round(res["bf16"], 4),
        "speedup": round(res["fp32"] / res["bf16"], 2),
    }


def sft_run_figures(run: str) -> dict:
    from rrpo.runs import RunDir

    metrics = RunDir(run).read_metrics()
    ev = [m for m in metrics if "policy/eval_acc" in m]
    tr = [m for m in metrics if "train/elapsed_s" in m]
    if not ev:
        return {"run": run, "error": "no held-out metrics in this run"}
    return {
        "run": run,
        "steps": ev[-1]["step"],
        "wall_s": tr[-1]["train/elapsed_s"] if tr else None,
        "heldout_token_acc": round(ev[-1]["policy/eval_acc"], 4),
        "heldout_loss": round(ev[-1]["policy/eval_loss"], 4),
        "train_token_acc": round(tr[-1].get("policy/acc", float("nan")), 4) if tr else None,
    }


def heldout_generation(run: str, codec_dir: str, out_dir: str | None, n_sentences: int = 2, seed: int = 0) -> dict:
    """For held-out sentences of an SFT run, sample every trained emotion, decode, and compare the
    duration with the reference recording of the same sentence, speaker and emotion.

    Reports per sample the tokens, whether it ended with end-of-speech, the decoded seconds, the
    ratio to the reference (goal 0.5-2), and the decoded audio's median F0 (Hz) and RMS level (dB)
    next to the reference's, per emotion. WAVs (and a spectrogram sheet) go to ``out_dir``.
    """
    from pathlib import Path

    import numpy as np
    import pyworld as pw

    from rrpo.codec import load_codec
    from rrpo.config import load_config
    from rrpo.data.audio import load_audio
    from rrpo.data.manifest import read_manifest
    from rrpo.policy.generate import generate
    from rrpo.policy.io import load_policy
    from rrpo.policy.settings import SamplingConfig
    from rrpo.policy.sft import SFTConfig, split_heldout

    cfg = load_config(SFTConfig, Path(run) / "config.yaml")
    policy = load_policy(run)
    codec = load_codec(codec_dir)
    man = read_manifest(cfg.data.manifest)
    man_e = [u for u in man if u.emotion in set(policy.emotions)]
    _, held = split_heldout(man_e, cfg.data)
    texts = sorted({u.text for u in held})[:n_sentences]
    speaker = policy.speakers[0] if policy.speakers else None

    def describe(audio, sr):
        x = audio.astype(np.float64)
        f0, t = pw.dio(x, sr, frame_period=10.0)
        f0 = pw.stonemask(x, f0, t, sr)
        voiced = f0[f0 > 0]
        rms = float(np.sqrt(np.mean(x**2)) + 1e-9)
        return (round(float(np.median(voiced)), 1) if len(voiced) else None), round(20 * np.log10(rms), 1)

    rows, sheet = [], []
    for ti, text in enumerate(texts):
        emos = policy.emotions
        prompts = policy.encode_prompts([text] * len(emos), emos, "zh", [speaker] * len(emos) if speaker else None)
        gen = generate(policy, prompts, SamplingConfig(), seeds=seed + 100 * ti, return_noise=False)
        for j, emo in enumerate(emos):
            ref = [u for u in held if u.text == text and u.emotion == emo and (speaker is None or u.speaker == speaker)]
            toks = gen.tokens(j).numpy()
            audio = codec.decode(toks) if len(toks) else np.zeros(1, np.float32)
            secs = len(audio) / codec.sampling_rate
            f0, db = describe(audio, codec.sampling_rate)
            row = {
                "sentence": ti,
                "emotion": emo,
                "tokens": int(len(toks)),
                "ended": bool(gen.ended[j]),
                "seconds": round(secs, 2),
                "f0_hz": f0,
                "level_db": db,
            }
            if ref:
                ra, rsr = load_audio(man.audio_path(ref[0]), codec.sampling_rate)
                rf0, rdb = describe(ra, rsr)
                row.update(
                    {
                        "ref_seconds": round(ref[0].duration, 2),
                        "ratio": round(secs / ref[0].duration, 2),
                        "ref_f0_hz": rf0,
                        "ref_level_db": rdb,
                    }
                )
            rows.append(row)
            sheet.append((f"s{ti} {emo}", audio, ra if ref else None))
            if out_dir:
                import soundfile as sf

                Path(out_dir).mkdir(parents=True, exist_ok=True)
                sf.write(str(Path(out_dir) / f"s{ti}_{emo}.wav"), audio, codec.sampling_rate)
    if out_dir:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(sheet), 2, figsize=(10, 1.3 * len(sheet)), squeeze=False)
        for r, (name, gen_a, ref_a) in enumerate(sheet):
            for c, (a, label) in enumerate(((gen_a, "generated"), (ref_a, "reference"))):
                ax = axes[r][c]
                if a is not None and len(a) > 512:
                    ax.specgram(a, NFFT=512, Fs=codec.sampling_rate, noverlap=384, cmap="magma")
                ax.set_ylim(0, 5000)
                ax.set_title(f"{name} {label}", fontsize=7)
                ax.tick_params(labelsize=6)
        fig.tight_layout()
        fig.savefig(Path(out_dir) / "spectrograms.png", dpi=80)
    ratios = [r["ratio"] for r in rows if "ratio" in r]
    return {
        "samples": rows,
        "n": len(rows),
        "ended": sum(r["ended"] for r in rows),
        "ratio_min": min(ratios) if ratios else None,
        "ratio_max": max(ratios) if ratios else None,
        "within_0.5_2": sum(0.5 <= x <= 2 for x in ratios),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--speech-vocab", type=int, default=4608, help="speech vocabulary (built-in codec default 4608)")
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--sft-run", default=None, help="a finished `rrpo policy sft` run to report")
    ap.add_argument("--codec", default=None, help="with --sft-run: decode held-out samples with this codec")
    ap.add_argument("--wav-out", default=None, help="with --codec: folder for the WAVs and a spectrogram sheet")
    ap.add_argument("--sentences", type=int, default=2, help="with --codec: held-out sentences to sample")
    ap.add_argument("--only-run", action="store_true", help="skip the speed measurements")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = {"threads": args.threads}
    if not args.only_run:
        pol, _ = default_policy(args.speech_vocab)
        out.update(
            {
                "params": sum(p.numel() for p in pol.parameters()),
                "generation": bench_generation(pol, args.tokens, args.repeats),
                "generation_batch8": bench_generation(pol, args.tokens, 1, batch=8),
                "sft_step": bench_sft_step(pol, args.batch_size, 30, 75, args.steps),
            }
        )
    if args.sft_run:
        out["sft_run"] = sft_run_figures(args.sft_run)
        if args.codec:
            out["heldout_generation"] = heldout_generation(
                args.sft_run, args.codec, args.wav_out, n_sentences=args.sentences
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
