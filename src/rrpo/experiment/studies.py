"""The studies ``rrpo experiment`` runs: one pipeline of stages (:mod:`rrpo.experiment.pipeline`), a
study = a config (which systems, seeds, folds and settings) + which results its runs feed.

- ``comparison`` (``configs/paper_comparison.yaml``): every system at its last step against SFT, the
  goal verdicts, intervals and paired differences (:mod:`rrpo.experiment.results`).
- ``overoptimisation`` (``configs/overoptimisation.yaml``): the judge and the proxy along √KL per
  system and setting, the judge's peak and drop after it, where each system's flags first fire
  (:mod:`rrpo.experiment.overoptimisation`).

A third study is a third entry here, a writer ``(run folder, config) -> dict`` and a config file.
Each study's closing stages and files have names of their own, so that two studies may share a run
folder (and so every stage they share: data, codec, reward models, judges, the starting policy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rrpo.experiment.overoptimisation import write_overopt
from rrpo.experiment.results import write_results


@dataclass(frozen=True)
class Study:
    #: the results stage's name and its folder (under the run folder; it holds the stage's .done)
    results_stage: str
    results_folder: str
    #: the HTML report's stage name and folder
    report_stage: str
    report: str
    #: the Markdown summary printed when the experiment ends (under the run folder)
    summary: str
    #: the stage times of every invocation (under the run folder)
    seconds: str
    #: writes the study's results from the audits: (run folder, config) -> what it wrote
    write: Callable[[Path, object], dict]


STUDIES: dict[str, Study] = {
    "comparison": Study(
        results_stage="results",
        results_folder="results",
        report_stage="report",
        report="report",
        summary="results/table.md",
        seconds="results/stage_seconds.json",
        write=write_results,
    ),
    "overoptimisation": Study(
        results_stage="overopt",
        results_folder="results/overopt",
        report_stage="report_overopt",
        report="report_overopt",
        summary="results/overopt.md",
        seconds="results/stage_seconds_overopt.json",
        write=write_overopt,
    ),
}
