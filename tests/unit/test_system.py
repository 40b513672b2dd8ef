"""A missing system piece (pyworld's build, opensmile, pocketsphinx's model, espeak-ng's data,
chromium for the browser test) is one actionable line, never a traceback."""

import sys
from pathlib import Path

import pytest

from rrpo.errors import RrpoError
from rrpo.system import HINTS, espeak_data_dir, pocketsphinx_model, require


@pytest.mark.parametrize("module", sorted(HINTS))
def test_a_module_that_cannot_be_imported_is_one_line_with_the_fix(module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # what an absent or unbuildable package looks like
    with pytest.raises(RrpoError) as e:
        require(module)
    msg = e.value.format()
    assert "\n" not in msg and "pip install" in msg and module.split("_")[0] in msg.replace("-", "")


def test_pyworld_missing_in_a_verb_is_one_line(monkeypatch):
    import numpy as np

    from rrpo.data.prosody import f0_track

    monkeypatch.setitem(sys.modules, "pyworld", None)
    with pytest.raises(RrpoError, match=r"pyworld .* --no-build-isolation pyworld"):
        f0_track(np.zeros(1600), 16000)


def test_espeak_data_missing_is_one_line_from_the_cli(tmp_path, monkeypatch, capsys):
    import espeakng_loader

    from rrpo.cli import main
    from rrpo.data import espeak

    empty = tmp_path / "espeak-ng-data"
    empty.mkdir()
    monkeypatch.setattr(espeak, "_library", None)  # force a fresh load (restored after the test)
    monkeypatch.setattr(espeakng_loader, "get_data_path", lambda: str(empty))
    rc = main(
        [
            "synth",
            f"out={tmp_path / 'out'}",
            "languages=[zh]",
            "sentences_per_language=1",
            "voices_per_language=1",
            "emotions=[neutral]",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith(f"rrpo: error: {empty}: espeak-ng's data folder is missing or incomplete (no phontab")
    assert "pip install --force-reinstall espeakng-loader" in err
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_espeak_data_present_passes():
    import espeakng_loader

    assert espeak_data_dir(espeakng_loader.get_data_path()) == Path(espeakng_loader.get_data_path())


def test_pocketsphinx_model_missing_is_one_line(tmp_path, monkeypatch):
    import pocketsphinx

    from rrpo.audit.distances import PocketsphinxRecognizer

    assert pocketsphinx_model().name == "en-us"  # the real install is complete
    monkeypatch.setattr(pocketsphinx, "get_model_path", lambda *a: str(tmp_path))
    with pytest.raises(RrpoError) as e:
        PocketsphinxRecognizer()
    msg = e.value.format()
    assert "\n" not in msg and "English model is incomplete" in msg and "recognizer=false" in msg


def test_browser_test_says_how_to_get_chromium(monkeypatch):
    import shutil

    from tests.browser_check import missing

    monkeypatch.setattr(shutil, "which", lambda name: None)
    reason = missing()
    assert reason is not None and "apt-get install chromium" in reason and "\n" not in reason
