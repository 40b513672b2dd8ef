"""Open an HTML page in headless Chromium (Debian's, driven by playwright) and check that it loads
with no console errors, that every image renders and every audio element can play; save a
full-page screenshot and check that it shows content."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def missing() -> str | None:
    """One actionable line when the browser test cannot run here, else None."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return (
            "chromium not found on PATH: apt-get install chromium (bash scripts/install.sh --dev does it "
            "when run as root)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed: bash scripts/install.sh --dev (or pip install -e '.[dev]')"
    return None


ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def check_page(page_path: Path, screenshot: Path) -> dict:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(Path(page_path).resolve().as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
            audio = page.eval_on_selector_all(
                "audio",
                """async els => Promise.all(els.map(a => new Promise(res => {
                a.muted = true;
                a.addEventListener('error', () => res('error'));
                a.play().then(() => { a.pause(); res(a.duration > 0 ? 'ok' : 'noduration'); }).catch(e => res('play:' + e));
            })))""",
            )
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    from PIL import Image

    img = np.asarray(Image.open(screenshot).convert("RGB")).astype(float)
    return {
        "errors": errors,
        "images": images,
        "audio": audio,
        "shot_height": img.shape[0],
        "shot_std": float(img.std()),
    }


def assert_page_ok(page_path: Path, screenshot: Path, n_audio: int | None = None) -> None:
    r = check_page(page_path, screenshot)
    assert r["errors"] == [], r["errors"]
    assert r["images"] and all(c and w > 0 for c, w in r["images"]), r["images"]
    assert r["audio"] and all(s == "ok" for s in r["audio"]), r["audio"]
    if n_audio is not None:
        assert len(r["audio"]) == n_audio
    assert r["shot_height"] > 600 and r["shot_std"] > 10  # rendered content, not a blank page
