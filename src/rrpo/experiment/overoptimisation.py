"""The over-optimisation study's results: where DiffRO hacks, whether RRPO resists.

Every run's audit scores every checkpoint on the held-out sentences with fixed sampling seeds, so a
run is a path of points (step, √KL to the start, proxy, judge, ...) with the audit's two flags at each
(:mod:`rrpo.audit.paths`: *emotion*, the judge fell after its peak beyond its noise while the proxy
rose; *naturalness*, artifacts, repetition, typicality or the phone error rate rose beyond noise and
beyond real speech while the proxy rose). Per setting and system, over its runs (seeds × folds):

* ``path``: per audited step, the mean √KL, proxy (p(target) under the run's own reward model) with a
  95 % interval, the judge (accuracy of the independent judge: the share of utterances it hears as
  the target emotion, pooled over the runs' utterances) with a 95 % interval, the judge's p(target),
  the artifact rate, the typicality distance and, where the audits had a phone judge, the PER;
* ``peak``: the step of the highest pooled judge; ``drop_after_peak``: the pooled judge there minus at
  the last step, with a 95 % interval (each utterance's change between the two steps, paired within
  its run); the interval does not allow for the peak being chosen after the fact (the emotion flag's
  margin does, per run);
* ``fits``: Gao et al.'s forms fitted to the path's change from step 0, proxy and judge against √KL
  (:func:`rrpo.audit.overopt.fit_gao`; ``rl``: d(α − β log d), ``bon``: d(α − β d));
* ``flagged_steps``: the steps where any run's flags fired, with how many runs of how many;
* ``breaks``: per flag, the √KL where it first fired in each run or, in a run where it never fired,
  the largest √KL that run reached (then the mean is a lower bound: ``lower_bound``), with a 95 %
  interval over the runs;
* ``runs``: each run's own peak, last step, drop and flags.

Per setting, ``paired``: each other system minus DiffRO, paired over seed × fold (the same fold's
speaker and the same sampling seeds), of each run's peak judge and of its drop after its peak: the
difference of means (:func:`rrpo.stats.paired_difference`, with its run-level permutation p-value),
a 95 % interval of the mean paired difference (:func:`rrpo.stats.cluster_bootstrap_ci` over the
pairs, resampled within folds; exact when small) and Student's t interval of the same mean
(``t_lo``, ``t_hi``; n − 1 degrees of freedom). With a handful of pairs the bootstrap can only
resample the few pairs there are, so its interval is far too narrow (4 pairs in 2 folds: at most 9
distinct means); read the t interval and the permutation p there. ``at_matched_kl``: the judge and
the naturalness signals (artifacts per second, token repetition, typicality, MCD, PER) of the two
runs of each pair where both have moved as far: each run's first audited checkpoint at or beyond the
smaller of the two runs' largest √KL (``sqrt_kl``: that √KL, mean over pairs; ``pairs``: each pair's
checkpoints), each signal's paired difference as above.

Intervals are hierarchical percentile bootstraps (:mod:`rrpo.stats`): runs resampled within their
fold, then utterances within each run (an audit without per-utterance rows counts as one unit).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rrpo.errors import RrpoError
from rrpo.experiment.config import ExperimentConfig
from rrpo.experiment.layout import Run, fold_dir, setting_names
from rrpo.experiment.metrics import first_flags, point_per
from rrpo.stats import cluster_bootstrap_ci, paired_difference, t_interval

#: the key of the one setting of a study without ``settings``
DEFAULT_SETTING = "default"
FLAGS = ("emotion", "naturalness")
#: the system every other is compared with
BASELINE = "diffro"


# --------------------------------------------------------------------------------------- one point
def _judge_units(p: dict) -> dict[str, float] | None:
    """``{utterance id: 1 right / 0 wrong}`` of one audited point, None when it kept no rows."""
    rows = [u for u in p.get("utterances") or [] if "judge_correct" in u]
    return {str(u["id"]): float(u["judge_correct"]) for u in rows} or None


def _artifacts(p: dict) -> float:
    a = p.get("artifacts")
    return float(sum(v["events_per_s"] for v in a.values())) if a else math.nan


def _typicality(p: dict) -> float:
    v = (p.get("typicality") or {}).get("distance")
    return math.nan if v is None else float(v)


def _repetition(p: dict) -> float:
    v = p.get("token_repetition")
    return math.nan if v is None else float(v)


def _mcd(p: dict) -> float:
    v = (p.get("distances") or {}).get("mcd_db")
    return math.nan if v is None else float(v)


def _judge(p: dict) -> float:
    return float(p["judge"]["accuracy"])


#: what ``at_matched_kl`` compares, read from one audited point: the judge and the naturalness signals
SIGNALS = {
    "judge": _judge,
    "artifacts": _artifacts,
    "token_repetition": _repetition,
    "typicality": _typicality,
    "mcd_db": _mcd,
    "per": point_per,
}


def _mean(xs) -> float:
    xs = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    return sum(xs) / len(xs) if xs else math.nan


def _ci(d: dict) -> list[float]:
    return [d["lo"], d["hi"]]


# ----------------------------------------------------------------------------------------- one run
def run_summary(aud: dict, fold: str, seed: int) -> dict:
    """One run's path read from its audit: its own peak (the first highest judge accuracy), its last
    step, the drop between them, the steps each flag fired and where each flag first fired
    (``breaks``: √KL at the first flag, else the largest √KL the run reached, ``flagged`` false)."""
    pts = sorted(aud.get("points") or [], key=lambda p: p["step"])
    if not pts:
        raise RrpoError("the audit has no points")
    J = [float(p["judge"]["accuracy"]) for p in pts]
    k = int(np.argmax(J))

    def at(p: dict) -> dict:
        return {"step": int(p["step"]), "sqrt_kl": float(p["sqrt_kl"]), "judge": float(p["judge"]["accuracy"])}

    first = first_flags({"points": pts})
    reached = max(float(p["sqrt_kl"]) for p in pts)
    return {
        "fold": fold,
        "seed": seed,
        "points": [
            {"step": int(p["step"]), "sqrt_kl": float(p["sqrt_kl"]), **{n: f(p) for n, f in SIGNALS.items()}}
            for p in pts
        ],
        "peak": at(pts[k]),
        "final": at(pts[-1]),
        "drop": J[k] - J[-1],
        "flagged": {
            f: [int(p["step"]) for p in pts if ((p.get("flags") or {}).get(f) or {}).get("flag")] for f in FLAGS
        },
        "breaks": {
            f: {
                "step": first[f]["step"] if first[f] else None,
                "sqrt_kl": float(first[f]["sqrt_kl"]) if first[f] else reached,
                "flagged": first[f] is not None,
                **({"signals": first[f]["signals"]} if first[f] and "signals" in first[f] else {}),
            }
            for f in FLAGS
        },
    }


# ------------------------------------------------------------------------------------ one system
def _judge_clusters(points: list[dict]) -> list[tuple[np.ndarray, None]]:
    """One cluster per run: its utterances' judge correctness, or its accuracy as one unit when any
    of the runs kept no per-utterance rows (then every run counts as one unit alike)."""
    units = [_judge_units(p) for p in points]
    if all(u is not None for u in units):
        return [(np.array(list(u.values())), None) for u in units]
    return [(np.array([float(p["judge"]["accuracy"])]), None) for p in points]


def _drop_clusters(pairs: list[tuple[dict, dict]]) -> list[tuple[np.ndarray, None]]:
    """Per run, each utterance's judge at the peak minus at the last step (paired by id), or the run's
    accuracy difference as one unit when any run kept no rows."""
    units = [(_judge_units(a), _judge_units(b)) for a, b in pairs]
    if all(a is not None and b is not None for a, b in units):
        out = []
        for a, b in units:
            ids = [i for i in a if i in b]
            out.append((np.array([a[i] - b[i] for i in ids]), None))
        return out
    return [(np.array([float(a["judge"]["accuracy"]) - float(b["judge"]["accuracy"])]), None) for a, b in pairs]


def system_results(runs: list[tuple[str, int, dict]], n_boot: int = 2000, seed: int = 0) -> dict:
    """One system's path, peak, drop, fits, flags and breaks over its runs ``(fold, seed, audit)`` (the
    module docstring says what each is)."""
    from rrpo.audit.overopt import fit_gao

    by_step: dict[int, list[tuple[str, dict]]] = {}
    for fold, _, aud in runs:
        for p in aud.get("points") or []:
            by_step.setdefault(int(p["step"]), []).append((fold, p))
    path = []
    for t in sorted(by_step):
        rows = by_step[t]
        strata = [f for f, _ in rows]
        pts = [p for _, p in rows]
        judge = cluster_bootstrap_ci(_judge_clusters(pts), n_boot=n_boot, seed=seed, strata=strata)
        proxy = cluster_bootstrap_ci(
            [(np.array([float(p["proxy_prob"])]), None) for p in pts], n_boot=n_boot, seed=seed, strata=strata
        )
        entry = {
            "step": t,
            "sqrt_kl": _mean(p["sqrt_kl"] for p in pts),
            "proxy": proxy["stat"],
            "proxy_ci": _ci(proxy),
            "judge": judge["stat"],
            "judge_ci": _ci(judge),
            "judge_p": _mean(p["judge"].get("target_prob") for p in pts),
            "artifacts": _mean(_artifacts(p) for p in pts),
            "typicality": _mean(_typicality(p) for p in pts),
            "runs": len(pts),
        }
        per = _mean(point_per(p) for p in pts)
        if math.isfinite(per):
            entry["per"] = per
        path.append(entry)
    if not path:
        raise RrpoError("the runs' audits have no points (audit.json 'points')")
    k = int(np.argmax([e["judge"] for e in path]))
    peak, last = path[k], path[-1]
    pairs, strata = [], []
    for fold, _, aud in runs:
        at = {int(p["step"]): p for p in aud.get("points") or []}
        if peak["step"] in at and last["step"] in at:
            pairs.append((at[peak["step"]], at[last["step"]]))
            strata.append(fold)
    drop = cluster_bootstrap_ci(_drop_clusters(pairs), n_boot=n_boot, seed=seed, strata=strata)
    d = [e["sqrt_kl"] for e in path]
    fits = {
        key: {form: fit_gao(d, [e[key] - path[0][key] for e in path], form) for form in ("rl", "bon")}
        for key in ("proxy", "judge")
    }
    per_run = [run_summary(aud, fold, s) for fold, s, aud in runs]
    flagged_steps = []
    for e in path:
        counts = {f: sum(e["step"] in r["flagged"][f] for r in per_run) for f in FLAGS}
        if any(counts.values()):
            flagged_steps.append({"step": e["step"], "sqrt_kl": e["sqrt_kl"], **counts, "runs": e["runs"]})
    return {
        "path": path,
        "peak": {
            "step": peak["step"],
            "sqrt_kl": peak["sqrt_kl"],
            "judge": peak["judge"],
            "judge_ci": peak["judge_ci"],
        },
        "drop_after_peak": {
            "drop": drop["stat"],
            "lo": drop["lo"],
            "hi": drop["hi"],
            "from_step": peak["step"],
            "to_step": last["step"],
            "runs": len(pairs),
        },
        "fits": fits,
        "flagged_steps": flagged_steps,
        "breaks": breaks(per_run, n_boot, seed),
        "runs": per_run,
    }


def breaks(per_run: list[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    """Per flag: the mean over runs of the √KL where it first fired (a run where it never fired counts
    with the largest √KL it reached: the mean is then a lower bound), with a 95 % interval over the
    runs resampled within folds."""
    out = {}
    for f in FLAGS:
        vals = [r["breaks"][f] for r in per_run]
        ci = cluster_bootstrap_ci(
            [(np.array([v["sqrt_kl"]]), None) for v in vals],
            n_boot=n_boot,
            seed=seed,
            strata=[r["fold"] for r in per_run],
        )
        k = sum(v["flagged"] for v in vals)
        out[f] = {
            "sqrt_kl": ci["stat"],
            "lo": ci["lo"],
            "hi": ci["hi"],
            "flagged_runs": k,
            "runs": len(vals),
            "lower_bound": k < len(vals),
            "steps": [v["step"] for v in vals],
        }
    return out


# ------------------------------------------------------------------------------------- comparisons
def paired_vs_baseline(
    systems: dict[str, list[dict]], n_boot: int = 2000, n_perm: int = 5000, seed: int = 0
) -> dict[str, dict]:
    """``{"<m>-diffro": {"peak_judge": ..., "drop_after_peak": ...}}`` for every system m but DiffRO,
    paired over seed × fold (the runs of both in the same fold and with the same seed)."""
    if BASELINE not in systems:
        return {}
    base = {(r["fold"], r["seed"]): r for r in systems[BASELINE]}
    out = {}
    for m, rows in systems.items():
        if m == BASELINE:
            continue
        pairs = [(base[(r["fold"], r["seed"])], r) for r in rows if (r["fold"], r["seed"]) in base]
        strata = [r["fold"] for _, r in pairs]
        out[f"{m}-{BASELINE}"] = {
            what: paired_runs([value(a) for a, _ in pairs], [value(b) for _, b in pairs], strata, n_boot, n_perm, seed)
            for what, value in (("peak_judge", lambda r: r["peak"]["judge"]), ("drop_after_peak", lambda r: r["drop"]))
        }
        out[f"{m}-{BASELINE}"]["at_matched_kl"] = at_matched_kl(pairs, strata, n_boot, n_perm, seed)
    return out


def matched_points(a: dict, b: dict) -> tuple[float, dict, dict]:
    """The √KL both runs reached (the smaller of their largest) and each run's first audited point at
    or beyond it."""
    d = min(max(p["sqrt_kl"] for p in r["points"]) for r in (a, b))
    first = [next(p for p in r["points"] if p["sqrt_kl"] >= d - 1e-12) for r in (a, b)]
    return d, first[0], first[1]


def at_matched_kl(pairs: list[tuple[dict, dict]], strata: list[str], n_boot: int, n_perm: int, seed: int) -> dict:
    """Each signal of :data:`SIGNALS`, B − A paired over the pairs at matched √KL (:func:`matched_points`);
    a signal some point lacks (PER without a phone judge) is left out."""
    if not pairs or any("points" not in r for pair in pairs for r in pair):
        return {}
    matched = [matched_points(a, b) for a, b in pairs]
    signals = {}
    for name in SIGNALS:
        xa = [pa[name] for _, pa, _ in matched]
        xb = [pb[name] for _, _, pb in matched]
        if all(math.isfinite(x) for x in xa + xb):
            signals[name] = paired_runs(xa, xb, strata, n_boot, n_perm, seed)
    return {
        "sqrt_kl": _mean(d for d, _, _ in matched),
        "pairs": [
            {
                "fold": a["fold"],
                "seed": a["seed"],
                "sqrt_kl": d,
                "step_a": pa["step"],
                "sqrt_kl_a": pa["sqrt_kl"],
                "step_b": pb["step"],
                "sqrt_kl_b": pb["sqrt_kl"],
            }
            for (a, _), (d, pa, pb) in zip(pairs, matched)
        ],
        "signals": signals,
    }


def paired_runs(a: list[float], b: list[float], strata: list[str], n_boot: int, n_perm: int, seed: int) -> dict:
    """Mean of b − a over paired runs, its 95 % interval (the pairs resampled within their stratum), Student's
    t interval (``t_lo``, ``t_hi``) and the paired permutation p-value (each pair's sign swapped)."""
    one = [(np.array([x]), None) for x in a], [(np.array([x]), None) for x in b]
    pd = paired_difference(*one, n_boot=n_boot, n_perm=n_perm, seed=seed, strata=strata)
    ci = cluster_bootstrap_ci(
        [(np.array([y - x]), None) for x, y in zip(a, b)], n_boot=n_boot, seed=seed, strata=strata
    )
    t_lo, t_hi = t_interval([y - x for x, y in zip(a, b)])
    return {
        "diff": pd["diff"],
        "lo": ci["lo"],
        "hi": ci["hi"],
        "t_lo": t_lo,
        "t_hi": t_hi,
        "p_perm": pd["p_perm_cluster"],
        "pairs": len(a),
        "mean_a": _mean(a),
        "mean_b": _mean(b),
    }


# ------------------------------------------------------------------------------------------ a study
def read_audits(o: Path, cfg: ExperimentConfig, setting: str) -> dict[str, list[tuple[str, int, dict]]]:
    """``{system: [(fold, seed, audit.json), ...]}`` of one setting, seed-major then fold."""
    from rrpo.io import read_json

    out: dict[str, list] = {m: [] for m in cfg.systems}
    for s in cfg.seeds:
        for h in cfg.heldout_speakers:
            for m in cfg.systems:
                p = fold_dir(o, cfg, h) / "runs" / Run(m, s, h, setting).path / "audit" / "audit.json"
                if not p.is_file():
                    raise RrpoError("no audit of this run: its audit stage has not finished", p)
                out[m].append((h, s, read_json(p)))
    return out


def overopt_results(o: Path, cfg: ExperimentConfig) -> dict:
    """Everything ``results/overopt.json`` holds (module docstring), from the runs' audits."""
    settings = {}
    for k in setting_names(cfg):
        runs = read_audits(o, cfg, k)
        systems = {m: system_results(rows, cfg.n_boot, cfg.stats_seed) for m, rows in runs.items()}
        settings[k or DEFAULT_SETTING] = {
            "overrides": list(cfg.settings.get(k, [])),
            "systems": systems,
            "paired": paired_vs_baseline(
                {m: r["runs"] for m, r in systems.items()}, cfg.n_boot, cfg.n_perm, cfg.stats_seed
            ),
        }
    return {
        "study": "overoptimisation",
        "judge": "accuracy of the independent judge (share of utterances heard as the target emotion)",
        "proxy": "p(target emotion) under the reward model the run optimised",
        "folds": list(cfg.heldout_speakers),
        "seeds": list(cfg.seeds),
        "systems": {m: sy.label for m, sy in cfg.systems.items()},
        "optimize": list(cfg.optimize),
        "settings": settings,
    }


def finite(obj):
    """``obj`` with every NaN or infinite float as None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_overopt(o: Path, cfg: ExperimentConfig) -> dict:
    """Collect the audits into results/overopt.json, results/overopt.md and results/overopt.png."""
    from rrpo.experiment.overopt_report import overopt_markdown, plot_overopt
    from rrpo.io import atomic_open, write_json

    res = finite(overopt_results(o, cfg))
    out = o / "results"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "overopt.json", res)
    with atomic_open(out / "overopt.md") as f:
        f.write(overopt_markdown(res))
    plot_overopt(res, out / "overopt.png")
    return res
