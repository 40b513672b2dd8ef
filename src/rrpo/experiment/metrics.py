"""The figures the experiment reads from one audited checkpoint of ``audit.json``."""

from __future__ import annotations

import math

#: (key, label, lower is better) of the audited figures in the table.
METRICS = [
    ("proxy", "proxy p(target)", False),
    ("judge_acc", "judge accuracy", False),
    ("judge_p", "judge p(target)", False),
    ("artifacts", "artifacts /s", True),
    ("mcd_db", "MCD dB", True),
    ("f0_rmse_cents", "F0 RMSE cents", True),
    ("voicing_error", "voicing error", True),
    ("frechet_egemaps", "Fréchet eGeMAPS", True),
    ("token_repetition", "token repetition", True),
    ("typicality", "typicality", True),
    ("atypical", "atypical share", True),
    ("per", "PER", True),
    ("sqrt_kl", "√KL to SFT", True),
]
QUALITY = ["artifacts", "mcd_db", "f0_rmse_cents", "voicing_error", "frechet_egemaps", "typicality", "per"]
#: figures only some experiments have (PER needs ``phone_judge``): left out of a table where no system has them
OPTIONAL = {"per"}
QUALITY_TICKS = {
    "artifacts": "artifacts",
    "mcd_db": "MCD",
    "f0_rmse_cents": "F0 RMSE",
    "voicing_error": "voicing",
    "frechet_egemaps": "Fréchet",
    "typicality": "typicality",
    "per": "PER",
}


def point_per(p: dict) -> float:
    """The pooled phone error rate of an audited point (NaN where the audit had no phone judge)."""
    per = (p.get("per") or {}).get("per")
    return float(per["stat"]) if per and per.get("stat") is not None else math.nan


def _present(summary: dict, key: str) -> bool:
    """Whether any system of ``summary`` (name -> key -> (mean, std)) has a finite ``key``."""
    return any(math.isfinite((d.get(key) or (math.nan,))[0]) for d in summary.values())


def point_metrics(p: dict) -> dict[str, float]:
    """The table's figures from one audited checkpoint of ``audit.json``."""
    return {
        "proxy": p["proxy_prob"],
        "judge_acc": p["judge"]["accuracy"],
        "judge_p": p["judge"]["target_prob"],
        "artifacts": sum(a["events_per_s"] for a in p["artifacts"].values()),
        **{k: p["distances"][k] for k in ("mcd_db", "f0_rmse_cents", "voicing_error", "frechet_egemaps")},
        "token_repetition": p["token_repetition"],
        "typicality": (p.get("typicality") or {}).get("distance", math.nan),
        "atypical": (p.get("typicality") or {}).get("atypical", math.nan),
        "per": point_per(p),
        "sqrt_kl": p["sqrt_kl"],
        "mean_len_s": p["mean_len_s"],
        "hacking_flag": float(bool(p.get("hacking_flag", False))),
    }


def first_flags(audit: dict) -> dict[str, dict | None]:
    """Per flag (emotion, naturalness): the first audited step where it fired, with √KL there and, for
    naturalness, the signals that fired; None where it never fired. Example: points at steps 0, 60, 120
    with the emotion flag at 120 only → {"emotion": {"step": 120, "sqrt_kl": ...}, "naturalness": None}."""
    out: dict[str, dict | None] = {"emotion": None, "naturalness": None}
    for p in audit.get("points", []):
        for kind in out:
            f = (p.get("flags") or {}).get(kind) or {}
            if out[kind] is None and f.get("flag"):
                out[kind] = {"step": p["step"], "sqrt_kl": p["sqrt_kl"]}
                if kind == "naturalness":
                    out[kind]["signals"] = [k for k, v in f.get("signals", {}).items() if v.get("flag")]
    return out
