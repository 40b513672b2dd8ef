"""The shrunken demo runs every stage end to end, writes a report that links real files, and a
second run skips every finished stage."""

import json
from pathlib import Path

import pytest

from rrpo.cli import main
from rrpo.demo import STAGES

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_demo_end_to_end_then_skips(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--config", str(REPO / "configs" / "demo_tiny.yaml"), f"out={out}"]) == 0
    printed = capsys.readouterr().out
    start = printed.rindex("\n{\n") + 1  # the indented summary printed last; stages print one-line JSON
    summary = json.loads(printed[start : printed.index("\n}\n", start) + 2])
    page = Path(summary["report"])
    assert page.exists()
    html = page.read_text()
    for src in [s.split("'")[0] for s in html.split("src='")[1:]]:
        assert (page.parent / src).exists(), src
    assert "DiffRO (vanilla RM)" in html and "RRPO (robust RM)" in html
    assert "What you hear: emotion in pitch, loudness and timing, not words." in html  # the page says so
    from tests.browser_check import CHROMIUM, assert_page_ok

    if CHROMIUM is not None:  # the report of real optimisation runs, checked in the browser
        pytest.importorskip("playwright.sync_api")
        assert_page_ok(page, tmp_path / "report.png")
    for name in ("diffro", "rrpo"):
        audit = json.loads((out / name / "audit" / "audit.json").read_text())
        assert [p["step"] for p in audit["points"]] == [0, 1, 2]
        assert 0 <= audit["final"]["judge"]["target_prob"] <= 1
        watched = [m for m in (out / name / "metrics.jsonl").read_text().splitlines() if "judge/target_prob" in m]
        assert len(watched) == 3  # the judge watch logged step 0 and both steps
    assert all(s in summary["stage_seconds"] for s in STAGES)

    assert main(["demo", "--config", str(REPO / "configs" / "demo_tiny.yaml"), f"out={out}"]) == 0
    second = capsys.readouterr().out
    assert second.count("done earlier, skipped") == len(STAGES)


def test_unknown_stage_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", f"out={tmp_path}", "force=[codex]"]) == 2
    assert "unknown demo stage" in capsys.readouterr().err


def test_jobs_below_one_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", f"out={tmp_path}", "jobs=0"]) == 2
    err = capsys.readouterr().err
    assert "jobs" in err and "must be at least 1" in err
    assert not (tmp_path / "corpus").exists()  # nothing ran
