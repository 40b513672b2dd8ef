"""The HTML report renders offline in headless Chromium: no console errors, every audio element
can play, every image renders; a screenshot is taken and checked."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from rrpo.data.audio import save_audio
from rrpo.report.html import AudioExample, Curve, ReportInput, build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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
        table_rows=[{"system": "SFT", "judge/acc": 0.41, "artifacts/click_rate": 0.1},
                    {"system": "RRPO", "judge/acc": 0.52, "artifacts/click_rate": 0.12}],
        examples=examples,
        curves=[Curve("proxy vs judge", "sqrt KL", "probability", {"proxy": ([0, 1, 2], [0.2, 0.5, 0.8]),
                                                                      "judge": ([0, 1, 2], [0.2, 0.3, 0.25])})],
        notes=["made by the test"])
    return build_report(data, tmp_path / "report")


def test_report_files(tmp_path):
    page = make_report(tmp_path)
    text = page.read_text()
    assert text.count("<audio") == 6 and text.count("<img") == 7
    assert (page.parent / "audio" / "rrpo_sad.wav").exists() and (page.parent / "img" / "sft_happy.png").exists()
    assert "http" not in text  # nothing fetched from the network


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_in_headless_chromium(tmp_path):
    pw = pytest.importorskip("playwright.sync_api")
    page_path = make_report(tmp_path)
    errors = []
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            # every image decoded with a real size
            sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
            assert sizes and all(c and w > 0 for c, w in sizes), sizes
            # every audio element loads its data and can play
            states = page.eval_on_selector_all("audio", """async els => Promise.all(els.map(a => new Promise(res => {
                a.muted = true;
                a.addEventListener('error', () => res('error'));
                a.play().then(() => { a.pause(); res(a.duration > 0 ? 'ok' : 'noduration'); }).catch(e => res('play:' + e));
            })))""")
            assert states == ["ok"] * 6, states
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    from PIL import Image
    img = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert img.shape[0] > 600 and img.std() > 10  # rendered content, not a blank page
