"""Intervals, paired differences and variance components of ``rrpo experiment``'s audited systems.

The audit of each run keeps every utterance's figures (``points[i]["utterances"]``): judge
correctness and p(target), artifact events and duration, MCD / F0 / voicing against the parallel
recording and, when the audits had a phone judge, phone edits and reference phonemes. A *system* (SFT = the audit's step 0, DiffRO and RRPO = their last step) is a list of
clusters, one per trained run (a fold's seed), each holding its utterances. With several folds
(held-out speakers) the folds are *strata*: every bootstrap draw resamples the runs within each fold
(each fold keeps its number of runs), so both speakers are in every draw, and the interval is about
these speakers, not about speakers in general (two are too few to resample). For each figure:

* ``intervals[system][metric]``: the pooled value over every fold's utterances with a 95 % percentile
  bootstrap interval, hierarchical (runs with replacement within each fold, then utterances within
  each run; ``lo``/``hi``) and over utterances only (``lo_utt``/``hi_utt``, which ignores the spread
  between seeds), and ``folds``: the value in each fold;
* ``paired[B - A][metric]``: B − A on the same prompts and sampling seeds (a unit is one prompt in
  one run of one fold; pairs never cross a fold or a seed), with the hierarchical bootstrap interval
  (the same draw for both systems), the utterance-level and the run-level paired permutation
  p-values;
* ``variance[system][metric]``: nested random-effects components (fold, reward-model seed,
  optimiser seed, utterance) and the 95 % half-width predicted for other designs (folds fixed).

The Fréchet distance is a set-level figure (one value per run) and gets no interval here. An
artifact rate is Σ events / Σ seconds, as the audit reports it, and the phone error rate (PER) is
Σ phone edits / Σ reference phonemes; in the variance decomposition an utterance's value is its own
rate. Audits without a phone judge have no PER: the column is then left out of the tables.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rrpo.audit.artifacts import DETECTORS
from rrpo.stats import bootstrap_ci, cluster_bootstrap_ci, design_half_width, paired_difference, variance_components

#: (key, label) of the figures with per-utterance values.
UTT_METRICS = [
    ("judge_acc", "judge accuracy"),
    ("judge_p", "judge p(target)"),
    ("artifacts", "artifacts /s"),
    ("mcd_db", "MCD dB"),
    ("f0_rmse_cents", "F0 RMSE cents"),
    ("voicing_error", "voicing error"),
    ("typicality", "typicality"),
    ("atypical", "atypical share"),
    ("token_repetition", "token repetition"),
    ("per", "PER"),
]
#: figures that only some audits have (the phone judge is optional): no column where no system has them
OPTIONAL_METRICS = {"per"}
#: the ceilings the audits report beside the systems (the prompts' real recordings, judged with the
#: anchor's statistics: as recorded, and through the codec), by their key in ``audit.json``
CEILINGS = {"ceiling_real": "real", "ceiling_codec": "codec"}
#: (system B, system A): the paired differences B − A reported.
PAIRS = [("rrpo", "diffro"), ("diffro", "sft"), ("rrpo", "sft")]
#: (folds, RM seeds, optimiser seeds, utterances per run) designs whose predicted half-width is reported:
#: the first run's design, the 2-seed run's (one RM seed per optimiser seed), today's default (2 folds
#: x 3 seeds x 200), twice the seeds, twice the folds.
DESIGNS = [(1, 1, 3, 25), (2, 2, 1, 100), (2, 3, 1, 200), (2, 6, 1, 200), (4, 3, 1, 200)]


def utterance_values(point: dict, metric: str) -> dict[str, tuple[float, float]]:
    """``{utterance id: (x, w)}`` of one audited point: the statistic is Σx/Σw (w = 1 but for artifacts,
    seconds, and PER, reference phonemes)."""
    out = {}
    for r in point.get("utterances") or []:
        if metric == "judge_acc":
            v = (float(r["judge_correct"]), 1.0) if "judge_correct" in r else (math.nan, 1.0)
        elif metric == "judge_p":
            v = (float(r.get("judge_target_prob", math.nan)), 1.0)
        elif metric == "artifacts":
            ev = [r.get(f"{k}_events") for k in DETECTORS]
            v = (float(sum(ev)) if all(e is not None for e in ev) else math.nan, float(r.get("duration_s", math.nan)))
        elif metric == "per":
            e, n = r.get("phone_edits"), r.get("phones")
            v = (math.nan, math.nan) if e is None or not n else (float(e), float(n))
        else:
            x = r.get(metric)
            v = (math.nan if x is None else float(x), 1.0)
        out[str(r["id"])] = v
    return out


def _cluster(vals: dict[str, tuple[float, float]], ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([vals[i][0] for i in ids], dtype=np.float64),
        np.array([vals[i][1] for i in ids], dtype=np.float64),
    )


def system_points(
    o: Path, seeds: list[int], systems=("diffro", "rrpo"), folds: dict[str, Path] | None = None
) -> dict[str, list[tuple[tuple[str, int], dict]]]:
    """``{system: [((fold, seed), audited point), ...]}`` from the runs' audit.json (SFT = DiffRO's
    step 0); ``folds`` maps each fold's name to its folder (None: one fold, ``o`` itself, named "").
    The ceilings (:data:`CEILINGS`) come once per fold, from the first seed's DiffRO audit: every
    audit of a fold judges the same real recordings with the same anchor."""
    from rrpo.io import read_json

    out: dict[str, list] = {"sft": [], **{m: [] for m in systems}}
    for s in seeds:
        for fold, f in (folds or {"": o}).items():
            aud = {m: read_json(f / "runs" / f"{m}_s{s}" / "audit" / "audit.json") for m in systems}
            if s == seeds[0]:
                for name, key in CEILINGS.items():
                    c = (aud["diffro"].get("ceilings") or {}).get(key)
                    if c:
                        out.setdefault(name, []).append(((fold, s), c))
            out["sft"].append(((fold, s), aud["diffro"]["start"]))
            for m in systems:
                out[m].append(((fold, s), aud[m]["final"]))
    return out


def run_key(key) -> tuple[str, object]:
    """(fold, seed) of a run key: a (fold, seed) pair, or a bare seed (one fold, named "")."""
    return (str(key[0]), key[1]) if isinstance(key, tuple) else ("", key)


def pairs_for(systems) -> list[tuple[str, str]]:
    """:data:`PAIRS`, then every further system against DiffRO and against SFT."""
    return PAIRS + [p for m in systems if m not in ("diffro", "rrpo") for p in ((m, "diffro"), (m, "sft"))]


def comparison_stats(
    points: dict[str, list[tuple[int, dict]]],
    n_boot: int = 2000,
    n_perm: int = 5000,
    seed: int = 0,
    level: float = 0.95,
    rm_seed_of=lambda system, seed: 0,
    pairs=None,
) -> dict:
    """``{"intervals", "paired", "variance"}`` (module docstring) from per-system audited points, keyed
    by run: ``(fold, seed)`` (or a bare seed for one fold).

    ``rm_seed_of(system, seed)`` names the reward-model seed of a run (one RM per method and fold today: 0)."""
    res: dict = {
        "level": level,
        "n_boot": n_boot,
        "n_perm": n_perm,
        "seed": seed,
        "intervals": {},
        "paired": {},
        "variance": {},
    }
    for system, pts in points.items():
        res["intervals"][system], res["variance"][system] = {}, {}
        for key, _ in UTT_METRICS:
            cl, strata = [], []
            cells = {}
            for k, p in pts:
                fold, s = run_key(k)
                vals = utterance_values(p, key)
                ids = sorted(vals)
                x, w = _cluster(vals, ids)
                cl.append((x, w))
                strata.append(fold)
                with np.errstate(invalid="ignore", divide="ignore"):
                    cells[(fold, rm_seed_of(system, s), s)] = x / w
            if not any(np.isfinite(x).any() for x, _ in cl):
                continue
            h = cluster_bootstrap_ci(cl, level, n_boot, seed, strata=strata)
            f = bootstrap_ci(
                np.concatenate([x for x, _ in cl]), np.concatenate([w for _, w in cl]), level, n_boot, seed
            )
            by_fold = {}
            for fold in dict.fromkeys(strata):
                xs = [c for c, g in zip(cl, strata) if g == fold]
                with np.errstate(invalid="ignore", divide="ignore"):
                    xx, ww = np.concatenate([x for x, _ in xs]), np.concatenate([w for _, w in xs])
                    ok = np.isfinite(xx) & np.isfinite(ww)
                    by_fold[fold] = float(xx[ok].sum() / ww[ok].sum()) if ww[ok].sum() > 0 else math.nan
            res["intervals"][system][key] = {
                "stat": h["stat"],
                "lo": h["lo"],
                "hi": h["hi"],
                "lo_utt": f["lo"],
                "hi_utt": f["hi"],
                "n": h["n"],
                "clusters": h["clusters"],
                "folds": by_fold,
            }
            vc = variance_components(cells)
            vc["half_width"] = {
                f"{nf}x{a}x{b}x{n}": design_half_width(vc["sigma2"], a, b, n, n_fold=nf) for nf, a, b, n in DESIGNS
            }
            vc["rm_estimated"] = not math.isnan(vc["sigma2"]["rm"])
            res["variance"][system][key] = vc
    for b_sys, a_sys in PAIRS if pairs is None else pairs:
        if b_sys not in points or a_sys not in points:
            continue
        name = f"{b_sys}-{a_sys}"
        res["paired"][name] = {}
        runs_a = {run_key(k): p for k, p in points[a_sys]}
        for key, _ in UTT_METRICS:
            ca, cb, strata = [], [], []
            for k, pb in points[b_sys]:
                if run_key(k) not in runs_a:
                    continue
                va, vb = utterance_values(runs_a[run_key(k)], key), utterance_values(pb, key)
                ids = sorted(set(va) & set(vb))
                ca.append(_cluster(va, ids))
                cb.append(_cluster(vb, ids))
                strata.append(run_key(k)[0])
            if not ca or not any(np.isfinite(x).any() for x, _ in ca):
                continue
            res["paired"][name][key] = paired_difference(ca, cb, level, n_boot, n_perm, seed, strata=strata)
        # predicted half-width of B - A for each design, the two systems taken as independent
        # (sqrt of the sum of their squared half-widths; it leaves out the covariance that pairing on prompts brings)
        va = res["variance"].get(a_sys, {}).get("judge_acc")
        vb = res["variance"].get(b_sys, {}).get("judge_acc")
        if va and vb and "judge_acc" in res["paired"][name]:
            res["paired"][name]["judge_acc"]["half_width_design"] = {
                d: math.sqrt(va["half_width"][d] ** 2 + vb["half_width"][d] ** 2) for d in va["half_width"]
            }
    return res


def _f(key: str, v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if key == "judge_acc":
        return f"{100 * v:.1f}"
    return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"


def shown_metrics(st: dict) -> list[tuple[str, str]]:
    """:data:`UTT_METRICS` less an optional figure (:data:`OPTIONAL_METRICS`) that no system has."""
    have = {k for row in (st.get("intervals") or {}).values() for k in row}
    return [(k, lbl) for k, lbl in UTT_METRICS if k not in OPTIONAL_METRICS or k in have]


def stats_markdown(st: dict, names: dict[str, str]) -> list[str]:
    """Markdown lines: the intervals table, the paired differences and the variance components."""
    if not st or not any(st.get("intervals", {}).values()):
        return []
    pct = round(100 * st["level"])
    metrics = shown_metrics(st)
    folds = list(
        dict.fromkeys(f for row in st["intervals"].values() for f in (row.get("judge_acc") or {}).get("folds", {}))
    )
    by_fold = len(folds) > 1
    lines = [
        f"{pct} % intervals (percentile bootstrap, {st['n_boot']} resamples, seed {st['seed']}): the value "
        "over every judged utterance of the system's runs in every fold, [hierarchical: runs within each "
        "fold, then utterances] and (utterances only). Judge accuracy in %"
        + (f"; by fold: {', '.join(folds)}." if by_fold else "."),
        "",
        "| method | n | "
        + ("judge accuracy by fold | " if by_fold else "")
        + " | ".join(lbl for _, lbl in metrics)
        + " |",
        "| --- | --- |" + (" --- |" if by_fold else "") + " --- |" * len(metrics),
    ]
    for m, row in st["intervals"].items():
        n = max((v["n"] for v in row.values()), default=0)
        cells = []
        if by_fold:
            per = (row.get("judge_acc") or {}).get("folds", {})
            cells.append(" / ".join(_f("judge_acc", per.get(f)) for f in folds))
        for k, _ in metrics:
            v = row.get(k)
            cells.append(
                "n/a"
                if v is None
                else f"{_f(k, v['stat'])} [{_f(k, v['lo'])}, {_f(k, v['hi'])}] "
                f"({_f(k, v['lo_utt'])}, {_f(k, v['hi_utt'])})"
            )
        lines.append(f"| {names.get(m, m)} | {n} | " + " | ".join(cells) + " |")
    if st.get("paired"):
        lines += [
            "",
            f"Paired differences on the same prompts, fold and sampling seeds: B − A [{pct} % hierarchical "
            "bootstrap]; p = two-sided paired permutation p-value with utterances swapped independently / "
            "with whole runs (fold × seed) swapped (the run-level p cannot go below 2/2^runs).",
            "",
            "| B − A | " + " | ".join(lbl for _, lbl in metrics) + " |",
            "| --- |" + " --- |" * len(metrics),
        ]
        for pair, row in st["paired"].items():
            b, a = pair.split("-")
            cells = []
            for k, _ in metrics:
                v = row.get(k)
                cells.append(
                    "n/a"
                    if v is None
                    else f"{_f(k, v['diff'])} [{_f(k, v['lo'])}, {_f(k, v['hi'])}] "
                    f"p {v['p_perm']:.3g} / {v['p_perm_cluster']:.3g}"
                )
            lines.append(f"| {names.get(b, b)} − {names.get(a, a)} | " + " | ".join(cells) + " |")
    var = st.get("variance", {})
    if var:
        lines += [
            "",
            "Variance components of judge accuracy (nested random effects: fold (held-out speaker), "
            "reward-model seed, optimiser seed, utterance; n/a = not replicated in this run) and the 95 % "
            "half-width (points of accuracy) predicted for designs folds × RM seeds × optimiser seeds × "
            "utterances per run, with the folds fixed as here (σ² fold not in it; a missing component "
            "counted as 0):",
            "",
            "| method | σ² fold | σ² RM seed | σ² optimiser seed | σ² utterance | "
            + " | ".join(f"±{f}×{a}×{b}×{n}" for f, a, b, n in DESIGNS)
            + " |",
            "| --- | --- | --- | --- | --- |" + " --- |" * len(DESIGNS),
        ]
        for m, row in var.items():
            v = row.get("judge_acc")
            if v is None:
                continue
            s2 = v["sigma2"]
            hw = " | ".join(f"{100 * v['half_width'][f'{f}x{a}x{b}x{n}']:.1f}" for f, a, b, n in DESIGNS)
            lines.append(
                f"| {names.get(m, m)} | "
                + " | ".join(
                    "n/a" if math.isnan(s2.get(k, math.nan)) else f"{s2[k]:.4f}" for k in ("fold", "rm", "opt", "utt")
                )
                + f" | {hw} |"
            )
        pw = [
            (k, v["judge_acc"]["half_width_design"])
            for k, v in st.get("paired", {}).items()
            if "half_width_design" in v.get("judge_acc", {})
        ]
        if pw:
            lines += [
                "",
                "Predicted 95 % half-width of the paired differences of judge accuracy (points) for the same "
                "designs, the two systems taken as independent (the root of the sum of their squared "
                "half-widths above), against the half-width measured here:",
                "",
                "| difference | measured | " + " | ".join(f"±{f}×{a}×{b}×{n}" for f, a, b, n in DESIGNS) + " |",
                "| --- | --- |" + " --- |" * len(DESIGNS),
            ]
            for k, hw in pw:
                b, a = k.split("-", 1)
                d = st["paired"][k]["judge_acc"]
                meas = 50 * (d["hi"] - d["lo"])
                cells = " | ".join(f"{100 * hw[f'{f}x{a_}x{b_}x{n}']:.1f}" for f, a_, b_, n in DESIGNS)
                lines.append(f"| {names.get(b, b)} − {names.get(a, a)} | {meas:.1f} | {cells} |")
    return lines + [""]
