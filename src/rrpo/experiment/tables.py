"""The comparison's results as Markdown (``results/table.md``): the main table, SFT beside the
ceilings, the flags along each run, judge recall, the reward models and judges, the statistics and
the goal verdicts."""

from __future__ import annotations

import math

from rrpo.experiment.config import CLASSES, ExperimentConfig
from rrpo.experiment.metrics import METRICS, OPTIONAL, _present


def _fmt(m: float, s: float, pct: bool = False) -> str:
    if m is None or math.isnan(m):
        return "n/a"
    if pct:
        return f"{100 * m:.1f} ± {100 * s:.1f}"
    digits = 1 if abs(m) >= 100 else 3 if abs(m) < 10 else 2
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _acc(d: dict, key: str) -> float:
    v = d.get(key)
    return math.nan if v is None else float(v)


def table_markdown(res: dict, cfg: ExperimentConfig) -> str:
    """The results as Markdown: the main table, the ceiling, the reward models and the goal verdicts."""
    s = res["summary"]
    n = len(cfg.seeds)
    folds = list(cfg.heldout_speakers)
    lines = [
        f"Means ± sample std over {n * len(folds)} run(s): {n} seed(s) ({', '.join(map(str, cfg.seeds))}) × "
        f"{len(folds)} fold(s), held-out speaker{'s' if len(folds) > 1 else ''} "
        f"{', '.join(f'`{h}`' for h in folds)}; held-out sentences {cfg.heldout_sentences} × 5 target emotions. "
        "Proxy = p(target) under the reward model the run optimised (SFT: vanilla / robust).",
        "",
    ]
    metrics = [m for m in METRICS if m[0] not in OPTIONAL or _present(s, m[0])]
    lines += [
        "| method | " + " | ".join(lbl for _, lbl, _ in metrics) + " |",
        "| --- |" + " --- |" * len(metrics),
    ]
    names = {"sft": "SFT (start)", **{m: sy.label for m, sy in cfg.systems.items()}}
    for m in names:
        cells = []
        for k, _, _ in metrics:
            if m == "sft" and k == "proxy":
                cells.append(f"{_fmt(*s['sft']['proxy_vanilla'])} / {_fmt(*s['sft']['proxy_robust'])}")
            elif m == "sft" and k == "sqrt_kl":
                cells.append("0")
            else:
                cells.append(_fmt(*s[m][k], pct=k == "judge_acc"))
        lines.append(f"| {names[m]} | " + " | ".join(cells) + " |")
    j = res["judge"]
    lines += ceilings_markdown(res, s)
    lines += flags_markdown(res, names)
    lines += [
        "",
        "Judge accuracy in %. Artifacts /s = clicks + bursts + clipping + silence + repetition events per "
        "second. Distances are to the real recording of the same sentence, speaker and emotion."
        + (
            " PER = phone error rate of the phone judge (Σ phone edits / Σ phonemes of the text, espeak-ng)."
            if any(k == "per" for k, _, _ in metrics)
            else ""
        ),
        "",
    ]
    lines += recall_markdown(res, names)
    if any(j.values()):
        lines += [
            f"| judge (eGeMAPS on {', '.join(cfg.judge_corpora)}, trained without the fold's speaker) | fold | n | "
            "accuracy | UA [95 %] | ECE |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for h, jh in j.items():
            for k, v in jh.items():
                ci = v.get("ua_ci95") or []
                iv = f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if len(ci) == 2 else ""
                ece = "n/a" if v.get("ece") is None else f"{v['ece']:.3f}"
                lines.append(
                    f"| {k} | {h} | {v.get('n', 'n/a')} | {100 * _acc(v, 'wa'):.1f} | {100 * _acc(v, 'ua'):.1f}{iv} | {ece} |"
                )
        lines.append("")
    rm = res["reward_models"]
    if any(rm.values()):
        lines += [
            "| reward model | fold | held-out speaker UA | held-out speaker WA | ESD English UA (cross-lingual) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for h, rmh in rm.items():
            for name in ("vanilla", "robust"):
                a, b = rmh.get(f"{name}_casia_heldout", {}), rmh.get(f"{name}_esd", {})
                lines.append(
                    f"| {name} | {h} | {100 * _acc(a, 'ua'):.1f} | {100 * _acc(a, 'wa'):.1f} | {100 * _acc(b, 'ua'):.1f} |"
                )
        lines.append("")
    tr = res.get("trajectories", {})
    if tr:
        steps = sorted(set().union(*(tr[m]["step"] for m in tr)))
        lines += [
            "Along the way (seed means at every audited step; the table above is the last step; a run "
            "stopped by the judge watch has no later steps):",
            "",
            "| method | step | " + " | ".join(str(t) for t in steps) + " |",
            "| --- | --- |" + " --- |" * len(steps),
        ]
        for m in cfg.systems:
            for k, lbl in (("proxy", "proxy p(target)"), ("judge_acc", "judge accuracy %")):
                at = dict(zip(tr[m]["step"], tr[m][k]))
                vals = [
                    ("" if t not in at else f"{100 * at[t][0]:.1f}" if k == "judge_acc" else f"{at[t][0]:.3f}")
                    for t in steps
                ]
                lines.append(f"| {names[m]} | {lbl} | " + " | ".join(vals) + " |")
        lines.append("")
    from rrpo.experiment_judges import judges_markdown
    from rrpo.experiment_stats import stats_markdown

    lines += stats_markdown(res.get("stats", {}), names)
    j2 = res.get("second_judge", {})
    if any((j2.get("eval") or {}).values()):
        lines += [
            f"| second judge ({cfg.second_judge}, trained without the fold's speaker) | fold | n | accuracy | UA |",
            "| --- | --- | --- | --- | --- |",
        ]
        for h, jh in j2["eval"].items():
            for k, v in jh.items():
                lines.append(
                    f"| {k} | {h} | {v.get('n', 'n/a')} | {100 * _acc(v, 'wa'):.1f} | {100 * _acc(v, 'ua'):.1f} |"
                )
        lines.append("")
    lines += judges_markdown(j2, names)
    v = res["verdicts"]
    h, g = v["diffro_hacks"], v["rrpo_goal"]
    tol = cfg.tolerance

    def ratios(d: dict, m: str) -> str:
        """``k r×`` per figure; a rise from SFT's zero (infinite ratio) as ``k 0 → value``."""
        return ", ".join(
            f"{k} {r:.2f}×" if math.isfinite(r) else f"{k} 0 → {res['summary'][m][k][0]:.3f} (SFT's is 0)"
            for k, r in d.items()
        )

    per_too = " / PER" if "per" in h["quality_ratios_vs_sft"] else ""
    lines += [
        f"- **DiffRO hacks** (proxy up and every artifact rate / distance{per_too} > {1 + tol:.2f}× SFT's): "
        f"{'met' if h['met'] else 'not met'}. Proxy up: {h['proxy_up']}; ratios to SFT: {ratios(h['quality_ratios_vs_sft'], 'diffro')}.",
        f"- **RRPO goal** (judge accuracy > SFT's and ≥ DiffRO's; every artifact rate / distance{per_too} ≤ {1 + tol:.2f}× SFT's): "
        f"{'met' if g['met'] else 'not met'}. Judge above SFT: {g['judge_above_sft']}; at least DiffRO: "
        f"{g['judge_at_least_diffro']}; ratios to SFT: {ratios(g['quality_ratios_vs_sft'], 'rrpo')}.",
    ]
    return "\n".join(lines) + "\n"


def flags_markdown(res: dict, names: dict[str, str]) -> list[str]:
    """Per run, where each of the audit's two flags first fired (or that it never did), with the
    largest √KL the run reached: what a hacking claim may rest on."""
    rows = []
    for m, runs in res["per_seed"].items():
        for r in runs:
            ff = r.get("first_flag")
            if m == "sft" or ff is None:
                continue

            def cell(f):
                if not f:
                    return "never"
                sig = f" ({', '.join(f['signals'])})" if f.get("signals") else ""
                return f"step {f['step']}, √KL {f['sqrt_kl']:.2f}{sig}"

            rows.append(
                f"| {names.get(m, m)} | {r['fold']} | {r['seed']} | {cell(ff['emotion'])} | "
                f"{cell(ff['naturalness'])} | {r.get('sqrt_kl', math.nan):.2f} |"
            )
    if not rows:
        return []
    return [
        "",
        "The audit's flags along each run (every checkpoint; docs/audit.md): emotion = the judge fell after "
        "its peak by more than its sampling noise while the proxy rose; naturalness = artifacts, token "
        "repetition, typicality or the phone error rate (with a phone judge) rose beyond their noise and "
        "beyond real speech through the codec while the proxy rose. First step where each fired:",
        "",
        "| run | fold | seed | emotion flag | naturalness flag | √KL at the last step |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
    ]


CEILING_NAMES = {
    "ceiling_real": "ceiling: real held-out speech",
    "ceiling_codec": "ceiling: real held-out speech through the codec",
}


def ceilings_markdown(res: dict, summary: dict) -> list[str]:
    """SFT and the ceilings side by side: judge accuracy [95 % interval], typicality, atypical share and,
    when the audits had a phone judge, the phone error rate. Every one is judged with statistics fixed
    from real recordings before any policy was scored."""
    ceil = res.get("ceilings") or {}
    sft = (res.get("stats") or {}).get("intervals", {}).get("sft", {})
    if not ceil and not sft:
        return []

    def cell(d: dict | None, k: str) -> str:
        if not d or k not in d:
            return "n/a"
        v = d[k]
        f = (lambda x: f"{100 * x:.1f}") if k == "judge_acc" else (lambda x: f"{x:.3f}")
        return f"{f(v['stat'])} [{f(v['lo'])}, {f(v['hi'])}]"

    keys = ["judge_acc", "typicality", "atypical"]
    head = "| | judge accuracy % | typicality | atypical share |"
    if any("per" in d for d in (sft, *ceil.values())):
        keys.append("per")
        head += " PER |"
    lines = [
        "",
        "SFT beside the ceilings, all judged with each held-out speaker's statistics fixed from its real "
        "recordings of other sentences (through the codec for SFT and the codec ceiling), before any policy "
        "was scored; [95 % hierarchical bootstrap]:",
        "",
        head,
        "| --- |" + " --- |" * len(keys),
        "| SFT (start) | " + " | ".join(cell(sft, k) for k in keys) + " |",
    ]
    for name, label in CEILING_NAMES.items():
        if name in ceil:
            lines.append(f"| {label} | " + " | ".join(cell(ceil[name], k) for k in keys) + " |")
    return lines


def recall_markdown(res: dict, names: dict[str, str]) -> list[str]:
    """The judge's recall of each target emotion per system (pooled over runs; SFT = the audits' step 0),
    with the judge on the held-out speakers' real speech before and after the codec for reference."""
    rec = res.get("recall") or {}
    if not any(rec.values()):
        return []
    rows = [(names.get(m, m), r) for m, r in rec.items() if r]
    for name, label in CEILING_NAMES.items():
        r = ((res.get("ceilings") or {}).get(name) or {}).get("recall")
        if r:
            rows.append((label, r))
    lines = [
        "Judge recall per target emotion (the share of utterances asked for that emotion that the judge "
        "hears as it; pooled over runs), and the lowest:",
        "",
        "| method | " + " | ".join(CLASSES) + " | lowest |",
        "| --- |" + " --- |" * (len(CLASSES) + 1),
    ]
    for name, r in rows:
        vals = [r.get(c) for c in CLASSES]
        cells = ["n/a" if v is None or math.isnan(v) else f"{100 * v:.0f}" for v in vals]
        known = [v for v in vals if v is not None and not math.isnan(v)]
        low = f"{100 * min(known):.0f}" if known else "n/a"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {low} |")
    return [*lines, ""]
