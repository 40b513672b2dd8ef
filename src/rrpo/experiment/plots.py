"""The comparison's figure (``results/results.png``)."""

from __future__ import annotations

import math
from pathlib import Path

from rrpo.experiment.metrics import OPTIONAL, QUALITY, QUALITY_TICKS, _present

#: Bar colours: SFT grey, then one per system in config order.
COLOURS = ["#d62728", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def plot_results(res: dict, path: Path) -> None:
    """Bars of judge accuracy, proxy and the quality ratios to SFT per system (mean ± std over seeds),
    and the proxy and judge along training."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["summary"]
    systems = [m for m in res.get("systems", {"diffro": {}, "rrpo": {}}) if m in s]
    label = {m: res.get("systems", {}).get(m, {}).get("label", m) for m in systems}
    methods = [("sft", "SFT")] + [(m, textwrap.fill(label[m], 14)) for m in systems]
    colour = {"sft": "#888", **{m: COLOURS[i % len(COLOURS)] for i, m in enumerate(systems)}}
    n = len(methods)
    fig, axes = plt.subplots(1, 4, figsize=(6 + 3.2 * n, 4.8))
    ax = axes[0]
    ax.bar(
        range(n),
        [100 * s[m]["judge_acc"][0] for m, _ in methods],
        yerr=[100 * s[m]["judge_acc"][1] for m, _ in methods],
        color=[colour[m] for m, _ in methods],
        capsize=4,
    )
    ceil = (((res.get("ceilings") or {}).get("ceiling_real") or {}).get("judge_acc") or {}).get("stat")
    if ceil is not None:
        ax.axhline(100 * ceil, ls="--", c="k", lw=1, label="judge on real held-out speech")
        ax.legend(fontsize=8, loc="upper left")
    ax.axhline(20, ls=":", c="grey", lw=1)
    ax.set_xticks(range(n), [t for _, t in methods], fontsize=7)
    ax.set_ylabel("judge accuracy (%)")
    ax.set_title("emotion as the independent judge hears it")
    ax = axes[1]
    ax.bar(
        range(n),
        [s[m]["proxy"][0] if m != "sft" else s["sft"]["proxy_vanilla"][0] for m, _ in methods],
        yerr=[s[m]["proxy"][1] if m != "sft" else s["sft"]["proxy_vanilla"][1] for m, _ in methods],
        color=[colour[m] for m, _ in methods],
        capsize=4,
    )
    ax.set_xticks(range(n), [t for _, t in methods], fontsize=7)
    ax.set_ylabel("proxy p(target)")
    ax.set_title("reward the run optimised (SFT: vanilla RM)")
    ax = axes[2]
    w, top = 0.8 / max(1, len(systems)), 1.3
    quality = [k for k in QUALITY if k not in OPTIONAL or _present(s, k)]
    for i, m in enumerate(systems):
        vals = [s[m][k][0] / s["sft"][k][0] if s["sft"][k][0] > 0 else math.nan for k in quality]
        ax.bar(
            [x + (i - (len(systems) - 1) / 2) * w for x in range(len(quality))],
            vals,
            w,
            color=colour[m],
            label=label[m],
        )
        top = max([top] + [1.25 * v for v in vals if math.isfinite(v)])
    ax.set_ylim(0, top)
    ax.axhline(1.0, c="k", lw=1)
    ax.axhline(1.1, ls="--", c="grey", lw=1, label="SFT + 10 %")
    ticks = [QUALITY_TICKS[k] for k in quality]
    if not s["sft"]["artifacts"][0] > 0:
        ticks[0] = "artifacts\n(SFT's rate is 0:\nno ratio, see table)"
    ax.set_xticks(range(len(quality)), ticks, fontsize=8)
    ax.set_ylabel("ratio to SFT (lower is better)")
    ax.set_title("artifacts and distances to real speech")
    ax.legend(fontsize=6, loc="upper center", ncol=2)
    ax = axes[3]
    for m in systems:
        tr = res.get("trajectories", {}).get(m)
        if not tr:
            continue
        ax.errorbar(
            tr["step"],
            [100 * a for a, _ in tr["judge_acc"]],
            yerr=[100 * b for _, b in tr["judge_acc"]],
            color=colour[m],
            marker="o",
            capsize=3,
            label=f"{label[m]}: judge accuracy (%)",
        )
        ax.plot(
            tr["step"],
            [100 * a for a, _ in tr["proxy"]],
            color=colour[m],
            ls="--",
            marker="x",
            label=f"{label[m]}: proxy (×100)",
        )
    ax.set_xlabel("optimisation step")
    ax.set_title("proxy vs judge along training")
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
