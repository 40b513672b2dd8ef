"""The second judge in ``rrpo experiment``: re-judge the audited audio, compare the two judges' verdicts.

The audit judges every checkpoint with the eGeMAPS judge and keeps the WAVs of the starting policy
(``audio/step_0``) and of the last checkpoint. This stage judges those same WAVs with the second
judge (``rrpo judge train features=logmel-stats`` or ``rrpo judge train-mel``), normalised as the audit does (per-band statistics of the starting
policy's outputs of the same run, kept fixed for the last checkpoint), and writes
``judges/<run>.json`` with both judges' label per utterance. The results then carry, for the second
judge, the same intervals and paired differences as for the first, the two judges' label agreement
(Cohen's kappa), and the verdict of each judge on each claim (:mod:`rrpo.audit.agreement`): a
hacking claim that only one judge supports is flagged.
"""

from __future__ import annotations

import math
from pathlib import Path

from rrpo.errors import RrpoError

FIRST, SECOND = "egemaps", "logmel"


def _wavs(folder: Path, ids: list[str]):
    from rrpo.data.audio import load_audio

    missing = [i for i in ids if not (folder / f"{i}.wav").exists()]
    if missing:
        raise RrpoError(
            f"the audit's audio is missing {len(missing)} file(s) (e.g. {missing[0]}.wav); redo the "
            "run's audit stage (rrpo experiment ... 'force=[audit_<run>]')",
            folder,
        )
    return [load_audio(folder / f"{i}.wav") for i in ids]


def rejudge_run(run_dir: Path, judge) -> dict:
    """Both judges' labels for the start and the last audited step of one run (module docstring)."""
    from rrpo.io import read_json

    aud = read_json(run_dir / "audit" / "audit.json")
    out = {"run": str(run_dir)}
    stats = None
    for key in ("start", "final"):
        pt = aud[key]
        rows = [r for r in pt.get("utterances") or [] if r.get("emotion") in judge.classes]
        if not rows:
            raise RrpoError(
                "the audit has no per-utterance rows (audited before they were kept); redo the run's "
                "audit stage (rrpo experiment ... 'force=[audit_<run>]')",
                run_dir / "audit" / "audit.json",
            )
        items = _wavs(run_dir / "audit" / "audio" / f"step_{pt['step']}", [r["id"] for r in rows])
        if stats is None:  # the anchor's codec-passed real recordings calibrate the normalisation
            anchor = aud.get("anchor") or {}
            if not anchor.get("audio") or not anchor.get("ids"):
                raise RrpoError(
                    "the audit has no anchor (audited by an older rrpo); redo the run's audit stage "
                    "(rrpo experiment ... 'force=[audit_<run>]')",
                    run_dir / "audit" / "audit.json",
                )
            stats = judge.group_stats(_wavs(Path(anchor["audio"]), anchor["ids"]), anchor["speakers"])
        proba = judge.predict_proba(items, groups=[str(r.get("speaker")) for r in rows], stats=stats)
        cls = list(judge.classes)
        out[key] = {
            "step": pt["step"],
            "utterances": [
                {
                    "id": r["id"],
                    "emotion": r["emotion"],
                    "judge_pred_first": r.get("judge_pred"),
                    "judge_pred": cls[int(p.argmax())],
                    "judge_target_prob": float(p[cls.index(r["emotion"])]),
                    "judge_correct": bool(cls[int(p.argmax())] == r["emotion"]),
                }
                for r, p in zip(rows, proba)
            ],
        }
    return out


def rejudge_all(o: Path, runs: list[str]) -> None:
    """The second judge on every run's audited audio → ``judges/<run>.json``."""
    import rrpo.audit.mel_judge  # noqa: F401  (registers the 'logmel-cnn' kind)
    from rrpo.audit.judge import load_judge
    from rrpo.io import write_json

    judge = load_judge(o / "judge2")
    for run in runs:
        write_json(o / "judges" / f"{run}.json", rejudge_run(o / "runs" / run, judge))


def second_judge_results(
    folds: Path | dict[str, Path],
    seeds: list[int],
    first_stats: dict,
    proxy_up: dict[str, bool],
    n_boot: int,
    n_perm: int,
    seed: int,
) -> dict:
    """Intervals and paired differences of the second judge, label agreement, and each claim's verdicts.

    ``folds``: ``{fold: its folder}`` (each with ``judges/``), or one folder for a single fold."""
    from rrpo.audit.agreement import judge_verdicts, label_agreement
    from rrpo.experiment_stats import comparison_stats
    from rrpo.io import read_json

    folds = {"": folds} if isinstance(folds, Path) else folds
    points: dict[str, list] = {"sft": [], "diffro": [], "rrpo": []}
    for s in seeds:
        for fold, f in folds.items():
            d = read_json(f / "judges" / f"diffro_s{s}.json")
            r = read_json(f / "judges" / f"rrpo_s{s}.json")
            points["sft"].append(((fold, s), d["start"]))
            points["diffro"].append(((fold, s), d["final"]))
            points["rrpo"].append(((fold, s), r["final"]))
    st = comparison_stats(points, n_boot, n_perm, seed)
    agree = {}
    for m, pts in points.items():
        a = [u["judge_pred_first"] for _, p in pts for u in p["utterances"]]
        b = [u["judge_pred"] for _, p in pts for u in p["utterances"]]
        agree[m] = label_agreement(a, b)
    paired = {
        FIRST: {k: v["judge_acc"] for k, v in first_stats.get("paired", {}).items() if "judge_acc" in v},
        SECOND: {k: v["judge_acc"] for k, v in st["paired"].items() if "judge_acc" in v},
    }
    return {
        "intervals": {
            m: {k: v for k, v in d.items() if k in ("judge_acc", "judge_p")} for m, d in st["intervals"].items()
        },
        "paired": {p: {k: v for k, v in d.items() if k in ("judge_acc", "judge_p")} for p, d in st["paired"].items()},
        "label_agreement": agree,
        "claims": judge_verdicts(paired, proxy_up),
    }


def judges_markdown(res: dict, names: dict[str, str]) -> list[str]:
    """Markdown lines for the second judge and the claims."""
    if not res:
        return []

    def pct(v: float) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    kind = {
        "logmel-stats": "logistic regression on log-mel band statistics",
        "logmel-cnn": "a network on log-mel frames",
    }.get(res.get("kind"), res.get("kind", "?"))
    lines = [
        f"Second judge ({kind}, trained on CASIA without the fold's speaker), on the same WAVs: judge accuracy % "
        "[95 % hierarchical bootstrap]; label agreement with the eGeMAPS judge (Cohen's kappa):",
        "",
        "| method | log-mel judge accuracy % | agreement | kappa |",
        "| --- | --- | --- | --- |",
    ]
    for m, d in res["intervals"].items():
        a = d.get("judge_acc", {})
        g = res["label_agreement"].get(m, {})
        lines.append(
            f"| {names.get(m, m)} | {pct(a.get('stat'))} [{pct(a.get('lo'))}, {pct(a.get('hi'))}] | "
            f"{pct(g.get('agreement'))} % | {g.get('kappa', math.nan):.2f} |"
        )
    lines += [
        "",
        "Claims, as each judge's paired accuracy difference decides them (interval below 0 = down, above = up; "
        "a hacking claim also needs the run's proxy to have risen). **Flagged**: supported by one judge only, "
        "or contradicted by the other.",
        "",
        "| claim | difference | eGeMAPS | log-mel | status |",
        "| --- | --- | --- | --- | --- |",
    ]
    labels = {"diffro_hacks": "DiffRO hacks", "rrpo_hacks": "RRPO hacks", "rrpo_beats_diffro": "RRPO beats DiffRO"}
    for c, v in res["claims"].items():
        b, a = v["pair"].split("-")
        st = v["status"] + (" (**flagged**)" if v["flagged"] else "")
        lines.append(
            f"| {labels.get(c, c)} | {names.get(b, b)} − {names.get(a, a)} | {v['verdicts'].get(FIRST)} | "
            f"{v['verdicts'].get(SECOND)} | {st} |"
        )
    return lines + [""]
