"""The comparison's results: per-run figures of SFT (step 0) and every system (last step), their means,
the goal verdicts, the trajectories, the statistics (:mod:`rrpo.experiment_stats`) and the folds'
model evaluations → ``results/results.json``, ``table.md`` (:mod:`rrpo.experiment.tables`) and
``results.png`` (:mod:`rrpo.experiment.plots`)."""

from __future__ import annotations

import math
from pathlib import Path

from rrpo.experiment.config import CLASSES, ExperimentConfig
from rrpo.experiment.layout import fold_dir, fold_dirs, rm_seed
from rrpo.experiment.metrics import METRICS, QUALITY, first_flags, point_metrics
from rrpo.stats import mean_std


def verdicts(means: dict[str, dict[str, float]], tol: float) -> dict[str, dict]:
    """The comparison's two goals (docs/RESULTS.md, "Against the goals"), decided on the seed means.

    hacking (DiffRO): its proxy above SFT's (under the vanilla RM) and every artifact rate / distance
    (and the phone error rate, when the audits had a phone judge) above SFT's by more than ``tol``
    (relative; for a zero SFT artifact rate, any rise counts).
    rrpo: judge accuracy above SFT's and at least DiffRO's, and every artifact rate / distance at most
    ``(1 + tol)`` × SFT's."""
    sft, dif, rr = means["sft"], means["diffro"], means["rrpo"]

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else (math.inf if a > 0 else 1.0)

    # a measure a run did not produce (typicality without the eGeMAPS features, say) is left out
    keys = [k for k in QUALITY if all(math.isfinite(d.get(k, math.nan)) for d in (sft, dif, rr))]
    worse = {k: ratio(dif[k], sft[k]) for k in keys}
    within = {k: ratio(rr[k], sft[k]) for k in keys}
    hack = {
        "proxy_up": dif["proxy"] > sft["proxy_vanilla"],
        "quality_ratios_vs_sft": worse,
        "quality_clearly_worse": all(r > 1 + tol for r in worse.values()),
    }
    hack["met"] = hack["proxy_up"] and hack["quality_clearly_worse"]
    good = {
        "judge_above_sft": rr["judge_acc"] > sft["judge_acc"],
        "judge_at_least_diffro": rr["judge_acc"] >= dif["judge_acc"],
        "quality_ratios_vs_sft": within,
        "quality_within_tol": all(r <= 1 + tol for r in within.values()),
    }
    good["met"] = good["judge_above_sft"] and good["judge_at_least_diffro"] and good["quality_within_tol"]
    return {"diffro_hacks": hack, "rrpo_goal": good}


def collect(o: Path, cfg: ExperimentConfig) -> dict:
    """Per-run figures (one row per fold and seed) of SFT (step 0) and every system (last step) from the
    audits, their means over all runs of all folds, the statistics and the folds' model evaluations."""
    from rrpo.config import to_dict
    from rrpo.io import read_json

    per_seed: dict[str, list[dict]] = {"sft": [], **{m: [] for m in cfg.systems}}
    judged: dict[str, list[dict]] = {"sft": [], **{m: [] for m in cfg.systems}}
    for s in cfg.seeds:
        for h in cfg.heldout_speakers:
            f = fold_dir(o, cfg, h)
            aud = {m: read_json(f / "runs" / f"{m}_s{s}" / "audit" / "audit.json") for m in cfg.systems}
            judged["sft"].append(aud["diffro"]["start"])
            for m in cfg.systems:
                judged[m].append(aud[m]["final"])
            sft = point_metrics(aud["diffro"]["start"])
            sft["proxy_vanilla"] = aud["diffro"]["start"]["proxy_prob"]
            sft["proxy_robust"] = aud["rrpo"]["start"]["proxy_prob"]
            per_seed["sft"].append({"fold": h, "seed": s, **sft})
            for m in cfg.systems:
                fin = point_metrics(aud[m]["final"])
                fin["step"] = aud[m]["final"]["step"]
                fin["flagged_steps"] = aud[m]["flagged_steps"]
                fin["first_flag"] = first_flags(aud[m])
                per_seed[m].append({"fold": h, "seed": s, **fin})
    keys = [k for k, _, _ in METRICS] + ["proxy_vanilla", "proxy_robust", "mean_len_s", "hacking_flag"]
    summary = {
        m: {k: mean_std([r[k] for r in rows if k in r]) for k in keys if any(k in r for r in rows)}
        for m, rows in per_seed.items()
    }
    means = {m: {k: v[0] for k, v in d.items()} for m, d in summary.items()}
    rm: dict[str, dict] = {}
    judge: dict[str, dict] = {}
    for h in cfg.heldout_speakers:
        f = fold_dir(o, cfg, h)
        rm[h] = {}
        for name in ("vanilla", "robust"):
            for ev in ("casia_heldout", "esd"):
                p = f / "rm" / "eval" / f"{name}_{ev}.json"
                if p.exists():
                    rm[h][f"{name}_{ev}"] = read_json(p)
        judge[h] = {p.stem: read_json(p) for p in sorted((f / "judge" / "eval").glob("*.json"))}
    from rrpo.audit.summary import pooled_recall
    from rrpo.experiment_stats import CEILINGS, comparison_stats, pairs_for, system_points

    points = system_points(o, list(cfg.seeds), list(cfg.systems), folds=fold_dirs(o, cfg))
    stats = comparison_stats(
        points,
        cfg.n_boot,
        cfg.n_perm,
        cfg.stats_seed,
        rm_seed_of=lambda system, seed: rm_seed(cfg, cfg.systems[system], seed) if system in cfg.systems else 0,
        pairs=pairs_for(cfg.systems),
    )
    pre = o / "policy_pretrain" / "pretrain.json"
    res = {
        "folds": list(cfg.heldout_speakers),
        "systems": {m: to_dict(sy) for m, sy in cfg.systems.items()},
        "policy_pretrain": read_json(pre) if pre.exists() else None,
        "per_seed": per_seed,
        "summary": summary,
        "verdicts": verdicts(means, cfg.tolerance),
        "trajectories": trajectories(o, cfg),
        "reward_models": rm,
        "judge": judge,
        "ceilings": {
            name: {
                **{
                    k: v
                    for k, v in stats["intervals"].get(name, {}).items()
                    if k in ("judge_acc", "typicality", "atypical", "per")
                },
                "recall": pooled_recall([p for _, p in points[name]], CLASSES),
            }
            for name in CEILINGS
            if name in points
        },
        "recall": {m: pooled_recall(pts, CLASSES) for m, pts in judged.items()},
        "stats": stats,
    }
    if cfg.second_judge != "none" and all((f / "judges").is_dir() for f in fold_dirs(o, cfg).values()):
        from rrpo.experiment_judges import second_judge_results

        proxy_up = {
            "diffro": means["diffro"]["proxy"] > means["sft"]["proxy_vanilla"],
            "rrpo": means["rrpo"]["proxy"] > means["sft"]["proxy_robust"],
        }
        res["second_judge"] = second_judge_results(
            fold_dirs(o, cfg), list(cfg.seeds), stats, proxy_up, cfg.n_boot, cfg.n_perm, cfg.stats_seed
        )
        res["second_judge"]["eval"] = {
            h: {p.stem: read_json(p) for p in sorted((fold_dir(o, cfg, h) / "judge2" / "eval").glob("*.json"))}
            for h in cfg.heldout_speakers
        }
        res["second_judge"]["kind"] = cfg.second_judge
    return res


def trajectories(o: Path, cfg: ExperimentConfig) -> dict[str, dict[str, list]]:
    """Per method, every audited step with the mean ± std over runs (folds × seeds) of proxy, judge
    accuracy and √KL.

    The table reads the last step only; over-optimisation shows in the path (the judge peaks, then
    falls while the proxy keeps rising)."""
    from rrpo.io import read_json

    out = {}
    for m in cfg.systems:
        by_step: dict[int, list[dict]] = {}
        for s in cfg.seeds:
            for f in fold_dirs(o, cfg).values():
                for p in read_json(f / "runs" / f"{m}_s{s}" / "audit" / "audit.json").get("points", []):
                    by_step.setdefault(int(p["step"]), []).append(point_metrics(p))
        steps = sorted(by_step)
        out[m] = {
            "step": steps,
            **{
                k: [mean_std([r[k] for r in by_step[t]]) for t in steps]
                for k in ("proxy", "judge_acc", "judge_p", "sqrt_kl")
            },
        }
    return out


def write_results(o: Path, cfg: ExperimentConfig) -> dict:
    """Collect the audits into results/results.json, results/table.md and results/results.png."""
    from rrpo.experiment.plots import plot_results
    from rrpo.experiment.tables import table_markdown
    from rrpo.io import atomic_open, write_json

    res = collect(o, cfg)
    out = o / "results"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", res)
    with atomic_open(out / "table.md") as f:
        f.write(table_markdown(res, cfg))
    plot_results(res, out / "results.png")
    return res
