"""``rrpo report 'runs=[A, B, C]' out=DIR``: the comparison page of audited optimisation runs.

Each run must have been audited (``rrpo audit run=A`` writes ``A/audit/audit.json``); the page is
built from the audits and the runs' metrics alone (no verb's config is read). The page
shows one row per system — the starting policy (from the first run's step 0) and the final
checkpoint of every run — the audio of each emotion side by side with the real recording, the
training curves and the proxy-vs-judge curves against √KL. When the audits had a phone judge
(``rrpo audit phone_judge=DIR``), a PER column gives each row's phone error rate with its 95 % interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from rrpo.errors import RrpoError
from rrpo.io import read_json
from rrpo.report.html import AudioExample, Curve, ReportInput, build_report
from rrpo.runs import OptimizeRunInfo

COLUMNS = [
    "system",
    "algo",
    "judge acc",
    "judge p(target)",
    "proxy p(target)",
    "hacking gap",
    "√KL",
    "clicks/s",
    "bursts/s",
    "clipping/s",
    "silence/s",
    "repetition/s",
    "MCD dB",
    "F0 err cents",
    "Fréchet eGeMAPS",
    "WER",
    "typicality",
    "atypical",
    "flags",
]


def _flags(audit: dict | None) -> str:
    """The steps where each of the audit's flags fired: 'emotion 480; naturalness 60, 120' ('–': none)."""
    if not audit:
        return "–"
    by = audit.get("flagged") or {}
    parts = [f"{k} {', '.join(map(str, by[k]))}" for k in ("emotion", "naturalness") if by.get(k)]
    if not by and audit.get("flagged_steps"):  # an audit from before the two flags
        parts = [", ".join(map(str, audit["flagged_steps"]))]
    return "; ".join(parts) or "–"


def per_cell(p: dict) -> str:
    """'0.214 [0.180, 0.251]': an audited point's pooled phone error rate with its 95 % interval; 'n/a'
    where the audit had no phone judge."""
    per = (p.get("per") or {}).get("per")
    if not per:
        return "n/a"
    return f"{per['stat']:.3f} [{per['lo']:.3f}, {per['hi']:.3f}]"


def _row(name: str, algo: str, p: dict, audit: dict | None) -> dict:
    art = p.get("artifacts", {})
    dist = p.get("distances", {})
    return {
        "system": name,
        "algo": algo,
        "judge acc": p["judge"]["accuracy"],
        "judge p(target)": p["judge"]["target_prob"],
        "proxy p(target)": p.get("proxy_prob", math.nan),
        "hacking gap": p.get("hacking_gap", math.nan),
        "√KL": p.get("sqrt_kl", math.nan),
        **{
            f"{k}/s": art.get(k, {}).get("events_per_s", math.nan)
            for k in ("clicks", "bursts", "clipping", "silence", "repetition")
        },
        "MCD dB": dist.get("mcd_db", math.nan),
        "F0 err cents": dist.get("f0_rmse_cents", math.nan),
        "Fréchet eGeMAPS": dist.get("frechet_egemaps", math.nan),
        "WER": p.get("wer", {}).get("wer", math.nan),
        "PER": per_cell(p),
        "typicality": (p.get("typicality") or {}).get("distance", math.nan),
        "atypical": (p.get("typicality") or {}).get("atypical", math.nan),
        "flags": _flags(audit),
    }


def build_comparison(
    runs: Sequence[str | Path],
    out: str | Path,
    names: Sequence[str] | None = None,
    title: str = "rrpo: emotion optimisation audit",
    extra_notes: Sequence[str] = (),
) -> Path:
    from rrpo.audit.overopt import plot_proxy_vs_judge
    from rrpo.data.manifest import read_manifest
    from rrpo.runs import RunDir

    runs = [Path(r) for r in runs]
    names = list(names) if names else [r.name for r in runs]
    if len(names) != len(runs):
        raise RrpoError(f"{len(names)} names for {len(runs)} runs")
    audits = []
    for r in runs:
        path = r / "audit" / "audit.json"
        if not path.exists():
            raise RrpoError("run has not been audited (run `rrpo audit run=RUN` first)", r)
        audits.append(read_json(path))

    first = audits[0]
    rows = [_row("start (SFT)", "—", first["start"], None)]
    for name, a in zip(names, audits):
        rows.append(_row(name, a["algo"], a["final"], a))

    examples = []
    prompts = first["prompts"]
    text0 = prompts[0]["text"]
    ref_ids = {p["emotion"]: p.get("ref_id") for p in prompts if p["text"] == text0}
    man = None
    try:  # the manifest the audit took its prompts and reference recordings from
        manifest = first.get("manifest") or OptimizeRunInfo.read(runs[0]).manifest  # audits before 'manifest'
        man = read_manifest(manifest) if manifest else None
    except RrpoError:
        man = None
    by_id = man.by_id() if man is not None else {}
    for p in prompts:
        if p["text"] != text0:
            continue
        emo, pid = p["emotion"], p["id"]
        rid = ref_ids.get(emo)
        if rid in by_id:
            examples.append(AudioExample("reference recording", emo, text0, str(man.audio_path(by_id[rid]))))
        start_wav = runs[0] / "audit" / "audio" / "step_0" / f"{pid}.wav"
        if start_wav.exists():
            examples.append(AudioExample("start (SFT)", emo, text0, str(start_wav)))
        for name, r, a in zip(names, runs, audits):
            wav = r / "audit" / "audio" / f"step_{a['final']['step']}" / f"{pid}.wav"
            if wav.exists():
                examples.append(AudioExample(name, emo, text0, str(wav)))

    curves = []
    series = {}
    for name, r in zip(names, runs):
        m = [x for x in RunDir(r).read_metrics() if "policy/reward" in x]
        if m:
            series[name] = ([x["step"] for x in m], [x["policy/reward"] for x in m])
    if series:
        curves.append(Curve("training reward (proxy log-prob)", "step", "reward", series))
    curves.append(
        Curve(
            "judge p(target) vs √KL",
            "√KL",
            "judge p(target)",
            {
                n: ([p["sqrt_kl"] for p in a["points"]], [p["judge"]["target_prob"] for p in a["points"]])
                for n, a in zip(names, audits)
            },
        )
    )
    curves.append(
        Curve(
            "proxy p(target) vs √KL",
            "√KL",
            "proxy p(target)",
            {
                n: ([p["sqrt_kl"] for p in a["points"]], [p["proxy_prob"] for p in a["points"]])
                for n, a in zip(names, audits)
            },
        )
    )
    notes = [
        "Proxy: the run's own reward model. Judge: an independent eGeMAPS classifier on the decoded audio, "
        "never seen by the policy. A hacking flag marks a checkpoint where the proxy rose while the judge fell.",
        "Artifact rates are events per second of audio; real recordings are not at zero (see docs/audit.md).",
    ]
    columns = list(COLUMNS)
    if any((a["final"].get("per") or {}).get("per") for a in audits):  # the audits had a phone judge
        columns.insert(columns.index("WER") + 1, "PER")
        notes.append(
            "PER: phone error rate of the phone judge (a CTC phone recogniser trained on real speech, never "
            "seen by the policy) against the espeak-ng phonemes of the text, Σ edits / Σ phonemes, [95 % interval]."
        )
    notes += list(extra_notes)
    page = build_report(ReportInput(title, columns, rows, examples, curves, notes), out)
    plot_proxy_vs_judge(list(zip(names, [a["points"] for a in audits])), Path(out) / "img" / "proxy_vs_judge_all.png")
    return page
