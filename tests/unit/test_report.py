"""The HTML report renders offline in headless Chromium: no console errors, every audio element
can play, every image renders; a screenshot is taken and checked."""

from pathlib import Path

import numpy as np
import pytest

from rrpo.data.audio import save_audio
from rrpo.report.html import AudioExample, Curve, ReportInput, build_report

from tests.browser_check import assert_page_ok, missing


def make_report(tmp_path) -> Path:
    sr = 16000
    t = np.arange(sr) / sr
    examples = []
    for i, system in enumerate(["reference", "SFT", "RRPO"]):
        for emo, f0 in [("happy", 220), ("sad", 140)]:
            wav = tmp_path / f"{system}_{emo}.wav"
            save_audio(wav, 0.3 * np.sin(2 * np.pi * (f0 + 10 * i) * t), sr)
            examples.append(AudioExample(system, emo, "a test sentence", str(wav)))
    data = ReportInput(
        title="rrpo report (test)",
        table_columns=["system", "judge/acc", "artifacts/click_rate"],
        table_rows=[
            {"system": "SFT", "judge/acc": 0.41, "artifacts/click_rate": 0.1},
            {"system": "RRPO", "judge/acc": 0.52, "artifacts/click_rate": 0.12},
        ],
        examples=examples,
        curves=[
            Curve(
                "proxy vs judge",
                "sqrt KL",
                "probability",
                {"proxy": ([0, 1, 2], [0.2, 0.5, 0.8]), "judge": ([0, 1, 2], [0.2, 0.3, 0.25])},
            )
        ],
        notes=["made by the test"],
    )
    return build_report(data, tmp_path / "report")


def test_report_files(tmp_path):
    page = make_report(tmp_path)
    text = page.read_text()
    assert text.count("<audio") == 6 and text.count("<img") == 7
    assert (page.parent / "audio" / "rrpo_sad.wav").exists() and (page.parent / "img" / "sft_happy.png").exists()
    assert "http" not in text  # nothing fetched from the network


@pytest.mark.skipif(missing() is not None, reason=missing() or "")
def test_report_in_headless_chromium(tmp_path):
    assert_page_ok(make_report(tmp_path), tmp_path / "report.png", n_audio=6)


def test_flags_cell_worked_by_hand():
    """The report's flags cell names each flag with its steps; an audit before the two flags shows its
    flagged steps; no flag is a dash."""
    from rrpo.report.build import _flags

    assert _flags({"flagged": {"emotion": [480], "naturalness": [60, 120]}}) == "emotion 480; naturalness 60, 120"
    assert _flags({"flagged": {"emotion": [], "naturalness": []}, "flagged_steps": []}) == "–"
    assert _flags({"flagged_steps": [8]}) == "8" and _flags(None) == "–"


def _wide_table(tmp_path) -> Path:
    """A report whose systems table has as many columns as the real one, and one more (PER)."""
    from rrpo.report.build import COLUMNS

    cols = [*COLUMNS, "PER"]
    rows = [
        {c: (name if c == "system" else "0.214 [0.180, 0.251]" if c == "PER" else -0.0886) for c in cols}
        for name in ("start (SFT)", "DiffRO (vanilla RM)", "RRPO (robust RM)")
    ]
    return build_report(ReportInput("wide table", cols, rows), tmp_path / "wide")


def test_systems_table_sits_in_a_horizontal_scroll_box(tmp_path):
    """The table is wrapped in a box that scrolls sideways, so a table wider than the window scrolls
    inside it instead of running off the page's right edge."""
    import re

    from rrpo.report.html import CSS

    text = _wide_table(tmp_path).read_text()
    assert re.search(r"<div class='table-scroll'><table>.*</table></div>", text, re.S)
    rule = re.search(r"\.table-scroll\{([^}]*)\}", CSS)
    assert rule and "overflow-x:auto" in rule.group(1) and "max-width:100%" in rule.group(1)


@pytest.mark.skipif(missing() is not None, reason=missing() or "")
def test_wide_table_stays_inside_a_1300px_window(tmp_path):
    """In a 1,300-pixel-wide window the page itself never scrolls sideways: the table ends inside
    the page's width or scrolls inside its box."""
    from playwright.sync_api import sync_playwright

    from tests.browser_check import ARGS, CHROMIUM

    page_path = _wide_table(tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(page_path.resolve().as_uri())
            page.wait_for_load_state("load")
            m = page.evaluate(
                """() => { const t = document.querySelector('table'), box = t.parentElement;
                return {page: document.documentElement.scrollWidth, window: document.documentElement.clientWidth,
                        box_right: box.getBoundingClientRect().right, box_scroll: box.scrollWidth,
                        box_client: box.clientWidth, overflow: getComputedStyle(box).overflowX}; }"""
            )
        finally:
            browser.close()
    assert m["page"] <= m["window"], m  # nothing runs off the right edge of the window
    assert m["box_right"] <= m["window"], m
    assert m["box_scroll"] <= m["box_client"] or m["overflow"] in ("auto", "scroll"), m
