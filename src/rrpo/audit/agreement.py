"""Where two (or more) independent judges disagree: per-utterance agreement and the verdict on each claim.

A claim about the comparison is decided by each judge from its own paired difference of judge
accuracy (B − A on the same prompts, with a bootstrap interval; :mod:`rrpo.experiment_stats`):

* ``direction(lo, hi)``: ``"down"`` when the whole interval is below 0, ``"up"`` when above 0,
  ``"unclear"`` when it contains 0.
* **"<system> hacks"** (DiffRO, RRPO): the run's proxy rose over SFT's (a fact about the reward
  model, the same for every judge) and the judge hears *less* of the target emotion than in SFT's
  output: the judge *supports* it when its (system − SFT) direction is down, *contradicts* it when up.
* **"RRPO beats DiffRO"**: supported when (RRPO − DiffRO) is up, contradicted when down.

A claim is ``agreed`` when every judge supports it, ``single-judge`` when some but not all do
(flagged: it rests on one way of listening), ``contradicted`` when one judge supports it and another
contradicts it (flagged), and ``unsupported`` when none does. Only an ``agreed`` claim may be stated
without qualification.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def direction(lo: float, hi: float) -> str:
    """``"down"`` if hi < 0, ``"up"`` if lo > 0, else ``"unclear"`` (NaN bounds: unclear)."""
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "unclear"
    if hi < 0:
        return "down"
    if lo > 0:
        return "up"
    return "unclear"


#: claim → (pair "B-A", direction that supports it, whether it needs the proxy of B to have risen)
CLAIMS = {
    "diffro_hacks": ("diffro-sft", "down", True),
    "rrpo_hacks": ("rrpo-sft", "down", True),
    "rrpo_beats_diffro": ("rrpo-diffro", "up", False),
}


def judge_verdicts(
    paired: Mapping[str, Mapping[str, Mapping[str, float]]], proxy_up: Mapping[str, bool]
) -> dict[str, dict]:
    """Per claim: each judge's verdict (``supports`` / ``contradicts`` / ``unclear`` / ``n/a``) and the status.

    ``paired[judge][pair]`` holds ``lo`` and ``hi`` of that judge's accuracy difference for the pair
    ("diffro-sft", "rrpo-sft", "rrpo-diffro"); ``proxy_up[system]`` says whether the system's proxy rose
    over SFT's. A hacking claim whose proxy did not rise is ``n/a`` for every judge (not a hacking claim).
    """
    judges = list(paired)
    out = {}
    for claim, (pair, want, needs_proxy) in CLAIMS.items():
        system = pair.split("-")[0]
        per = {}
        for j in judges:
            d = paired[j].get(pair)
            if d is None or (needs_proxy and not proxy_up.get(system, False)):
                per[j] = "n/a"
                continue
            dirn = direction(d["lo"], d["hi"])
            per[j] = "supports" if dirn == want else "unclear" if dirn == "unclear" else "contradicts"
        out[claim] = {"pair": pair, "verdicts": per, **claim_status(per)}
    return out


def claim_status(verdicts: Mapping[str, str]) -> dict:
    """``{"status", "flagged", "supported_by"}`` from the judges' verdicts (module docstring).

    Example: (supports, unclear) → single-judge, flagged; (supports, contradicts) → contradicted,
    flagged; (supports, supports) → agreed; (unclear, contradicts) → unsupported."""
    vals = [v for v in verdicts.values() if v != "n/a"]
    sup = [j for j, v in verdicts.items() if v == "supports"]
    if not vals or not sup:
        status = "unsupported" if vals else "n/a"
    elif len(sup) == len(vals):
        status = "agreed"
    elif any(v == "contradicts" for v in vals):
        status = "contradicted"
    else:
        status = "single-judge"
    return {"status": status, "flagged": status in ("single-judge", "contradicted"), "supported_by": sup}


def label_agreement(a: Sequence[str], b: Sequence[str]) -> dict:
    """Fraction of utterances the two judges label the same, and Cohen's kappa.

    Example: a = (x, x, y, y), b = (x, y, y, y): p_o = 3/4; p_e = (2/4)(1/4) + (2/4)(3/4) = 1/2;
    kappa = (3/4 − 1/2)/(1 − 1/2) = 1/2."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} vs {len(b)} labels")
    n = len(a)
    if n == 0:
        return {"n": 0, "agreement": math.nan, "kappa": math.nan}
    po = sum(x == y for x, y in zip(a, b)) / n
    labels = set(a) | set(b)
    pe = sum((list(a).count(k) / n) * (list(b).count(k) / n) for k in labels)
    kappa = (po - pe) / (1 - pe) if pe < 1 else math.nan
    return {"n": n, "agreement": po, "kappa": kappa}
