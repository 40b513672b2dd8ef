"""The over-optimisation study's summary (``results/overopt.md``) and figure (``results/overopt.png``),
both drawn from what ``results/overopt.json`` holds (:mod:`rrpo.experiment.overoptimisation`)."""

from __future__ import annotations

from pathlib import Path

from rrpo.experiment.plots import COLOURS

#: flag -> (marker, height in axes units) of the runs' first flags on the judge panels
FLAG_MARKS = {"emotion": ("v", 0.97), "naturalness": ("^", 0.03)}


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _pct_ci(x, lo, hi, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    v = f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"
    return v + ("" if lo is None or hi is None else f" [{100 * lo:.1f}, {100 * hi:.1f}]")


def _num(x, scale: float, digits: int, signed: bool = True) -> str:
    return "n/a" if x is None else f"{scale * x:{'+' if signed else ''}.{digits}f}"


#: at_matched_kl's signals in the summary: label, scale, decimals
MATCHED_COLUMNS = {
    "judge": ("judge (points)", 100, 1),
    "artifacts": ("artifacts /s", 1, 3),
    "token_repetition": ("token repetition", 1, 3),
    "typicality": ("typicality", 1, 2),
    "mcd_db": ("MCD dB", 1, 2),
    "per": ("PER (points)", 100, 1),
}


def _paired_cell(v: dict, scale: float = 100, digits: int = 1) -> str:
    """Difference [bootstrap]; t [Student's t interval] (permutation p)."""
    t = "" if v.get("t_lo") is None else f"; t [{_num(v['t_lo'], scale, digits)}, {_num(v['t_hi'], scale, digits)}]"
    boot = "" if v.get("lo") is None else f" [{_num(v['lo'], scale, digits)}, {_num(v['hi'], scale, digits)}]"
    return f"{_num(v['diff'], scale, digits)}{boot}{t} (p {_p(v['p_perm'])})"


def _kl(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _break(b: dict) -> str:
    """√KL where a flag first fired (mean over runs, [interval]), and in how many runs it did."""
    if b["sqrt_kl"] is None:
        return "n/a"
    ge = "≥ " if b["lower_bound"] else ""
    iv = "" if b["lo"] is None else f" [{b['lo']:.2f}, {b['hi']:.2f}]"
    return f"{ge}{b['sqrt_kl']:.2f}{iv} ({b['flagged_runs']}/{b['runs']} runs)"


def overopt_markdown(res: dict) -> str:
    """Per setting: each system's peak, drop after it, last √KL and where each flag first fired; then
    each system minus DiffRO, paired over seed × fold."""
    names = res["systems"]
    lines = [
        "# Over-optimisation: the judge and the proxy along √KL",
        "",
        f"Per system and setting: {len(res['seeds'])} seed(s) × {len(res['folds'])} fold(s) "
        f"({', '.join(res['folds'])}). Judge = {res['judge']}, in %; [95 % hierarchical bootstrap: runs "
        "within folds, then utterances]. Flags (docs/audit.md): the √KL where each first fired, mean over "
        "runs; ≥ where some runs never flagged (they count with the largest √KL they reached).",
        "",
    ]
    for name, st in res["settings"].items():
        over = ", ".join(st["overrides"]) or "the common optimize overrides only"
        lines += [
            f"## Setting `{name}` ({over})",
            "",
            "| system | peak step | √KL at peak | judge at peak % | drop after the peak (points) | last step | "
            "√KL at last step | emotion flag first at √KL | naturalness flag first at √KL |",
            "| --- |" + " --- |" * 8,
        ]
        for m, r in st["systems"].items():
            pk, dr, last = r["peak"], r["drop_after_peak"], r["path"][-1]
            lines.append(
                f"| {names.get(m, m)} | {pk['step']} | {_kl(pk['sqrt_kl'])} | "
                f"{_pct_ci(pk['judge'], *pk['judge_ci'])} | {_pct_ci(dr['drop'], dr['lo'], dr['hi'])} | "
                f"{last['step']} | {_kl(last['sqrt_kl'])} | {_break(r['breaks']['emotion'])} | "
                f"{_break(r['breaks']['naturalness'])} |"
            )
        if st["paired"]:
            lines += [
                "",
                "Paired over seed × fold (each run's own peak; its drop to its last step), difference of means "
                "[95 % bootstrap of the pairs within folds]; t [Student's t 95 % interval] (permutation p). "
                "With few pairs the bootstrap is far too narrow: read the t interval and p.",
                "",
                "| systems | peak judge (points) | drop after the peak (points) |",
                "| --- | --- | --- |",
            ]
            for pair, d in st["paired"].items():
                b, a = pair.split("-", 1)
                cells = [_paired_cell(v) for v in (d["peak_judge"], d["drop_after_peak"])]
                lines.append(f"| {names.get(b, b)} − {names.get(a, a)} | " + " | ".join(cells) + " |")
            lines += _matched_lines(st["paired"], names)
        lines.append("")
    return "\n".join(lines) + "\n"


def _matched_lines(paired: dict, names: dict) -> list[str]:
    """The judge and the naturalness signals of each pair at matched √KL, B − A."""
    rows = {pair: d.get("at_matched_kl") or {} for pair, d in paired.items()}
    cols = [c for c in MATCHED_COLUMNS if any(c in r.get("signals", {}) for r in rows.values())]
    if not cols:
        return []
    lines = [
        "",
        "At matched √KL (each pair at the first checkpoint where both runs reached the smaller of their largest "
        "√KL), B − A, difference of means [bootstrap]; t [t interval] (permutation p):",
        "",
        "| systems | matched √KL | " + " | ".join(MATCHED_COLUMNS[c][0] for c in cols) + " |",
        "| --- | --- |" + " --- |" * len(cols),
    ]
    for pair, r in rows.items():
        if not r:
            continue
        b, a = pair.split("-", 1)
        cells = [_paired_cell(r["signals"][c], *MATCHED_COLUMNS[c][1:]) if c in r["signals"] else "n/a" for c in cols]
        lines.append(f"| {names.get(b, b)} − {names.get(a, a)} | {_kl(r['sqrt_kl'])} | " + " | ".join(cells) + " |")
    return lines


def _p(p) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def plot_overopt(res: dict, path: Path) -> None:
    """One column per setting: the proxy (top) and the judge (bottom) against √KL per system, mean with
    its 95 % band, Gao et al.'s RL form fitted to the change from step 0 (dashed, drawn only over the √KL
    its checkpoints span: between 0 and the first checkpoint nothing constrains it), the judge's peak
    (star) and, per run, the √KL where its emotion flag first fired (▼ at the top) and its naturalness
    flag (▲ at the bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    settings = list(res["settings"].items())
    fig, axes = plt.subplots(2, len(settings), figsize=(1 + 4.4 * len(settings), 7.2), squeeze=False)
    systems = list(res["systems"])
    colour = {m: COLOURS[i % len(COLOURS)] for i, m in enumerate(systems)}
    for c, (name, st) in enumerate(settings):
        for row, key in enumerate(("proxy", "judge")):
            ax = axes[row][c]
            fits = []
            for m, r in st["systems"].items():
                pts = [e for e in r["path"] if e["sqrt_kl"] is not None and e[key] is not None]
                if not pts:
                    continue
                x = [e["sqrt_kl"] for e in pts]
                y = [e[key] for e in pts]
                band = [e[f"{key}_ci"] for e in pts]
                lo = [b[0] if b[0] is not None else v for b, v in zip(band, y)]
                hi = [b[1] if b[1] is not None else v for b, v in zip(band, y)]
                ax.plot(x, y, "o-", ms=3, color=colour[m], label=res["systems"][m])
                ax.fill_between(x, lo, hi, color=colour[m], alpha=0.15, lw=0)
                fit = r["fits"][key]["rl"]
                moved = [v for v in x if v > 0]
                if fit["alpha"] is not None and fit["beta"] is not None and moved:
                    d = np.linspace(min(moved), max(moved), 60)
                    fits.append((d, y[0] + d * (fit["alpha"] - fit["beta"] * np.log(d)), colour[m]))
                if key == "judge":
                    pk = r["peak"]
                    ax.plot([pk["sqrt_kl"]], [pk["judge"]], "*", ms=11, color=colour[m])
                    for flag, (mark, y_at) in FLAG_MARKS.items():
                        xs = [run["breaks"][flag]["sqrt_kl"] for run in r["runs"] if run["breaks"][flag]["flagged"]]
                        ax.plot(xs, [y_at] * len(xs), mark, ms=6, color=colour[m], transform=ax.get_xaxis_transform())
            ylim = ax.get_ylim()  # the data's: a fit is not allowed to rescale the panel
            for d, f, col in fits:
                ax.plot(d, f, "--", color=col, lw=1)
            ax.set_ylim(*ylim)
            ax.set_xlabel("√KL(π ‖ π₀)")
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{name}: {', '.join(st['overrides'])}" if st["overrides"] else name, fontsize=9)
                ax.set_ylabel("proxy p(target) (the run's reward model)")
            else:
                ax.set_ylabel("judge accuracy")
    ax = axes[1][0]
    ax.plot([], [], "k--", lw=1, label="Gao RL fit")
    ax.plot([], [], "k*", label="judge peak")
    ax.plot([], [], "kv", ms=6, label="a run's emotion flag fires first")
    ax.plot([], [], "k^", ms=6, label="a run's naturalness flag fires first")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
