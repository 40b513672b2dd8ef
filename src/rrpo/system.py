"""The native pieces rrpo needs beyond pure Python, and one actionable line when one is missing.

pip installs all of them, but some can still be absent on a given machine: ``pyworld`` builds from
source (it fails without numpy and Cython in the environment), ``opensmile`` and ``pocketsphinx``
ship shared libraries and model files, and ``espeakng-loader`` ships the espeak-ng library and its
data folder. :func:`require` imports one and turns a failure into an :class:`~rrpo.errors.RrpoError`
that says what to run, so a user sees ``rrpo: error: ...`` and never a traceback.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from types import ModuleType

from rrpo.errors import RrpoError

REINSTALL = "bash scripts/install.sh in a checkout"

#: module -> what to do when it cannot be imported.
HINTS = {
    "pyworld": "pyworld (WORLD vocoder) is missing or failed to build; run " + REINSTALL + ", or: "
    "pip install numpy Cython && pip install --no-build-isolation pyworld",
    "pysptk": "pysptk (SPTK's mel-cepstra for the MCD) is missing or failed to build; run " + REINSTALL + ", or: "
    "pip install numpy Cython && pip install --no-build-isolation pysptk",
    "opensmile": "opensmile (eGeMAPS features for the judge and the Fréchet distance) cannot be loaded; "
    "pip install --force-reinstall opensmile",
    "pocketsphinx": "pocketsphinx (the audit's English word error rate) cannot be loaded; "
    "pip install --force-reinstall pocketsphinx, or audit with recognizer=false",
    "espeakng_loader": "espeakng-loader (the espeak-ng library behind rrpo synth) is not installed; "
    "pip install espeakng-loader",
}


def require(module: str) -> ModuleType:
    """Import ``module`` (one of :data:`HINTS`); a missing or broken install is one RrpoError line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyworld's pkg_resources notice
            return importlib.import_module(module)
    except (ImportError, OSError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RrpoError(f"{HINTS[module]} ({detail})") from None


def espeak_data_dir(path: str | Path) -> Path:
    """Check espeak-ng's data folder (``phontab`` and the phoneme tables must be there)."""
    p = Path(path)
    missing = [f for f in ("phontab", "phonindex", "phondata") if not (p / f).is_file()]
    if missing:
        raise RrpoError(
            f"espeak-ng's data folder is missing or incomplete (no {', '.join(missing)}); "
            "reinstall it: pip install --force-reinstall espeakng-loader",
            p,
        )
    return p


def pocketsphinx_model() -> Path:
    """The English model pocketsphinx 5 ships (acoustic model, dictionary, language model)."""
    ps = require("pocketsphinx")
    root = Path(ps.get_model_path()) / "en-us"
    need = [root / "en-us", root / "cmudict-en-us.dict", root / "en-us.lm.bin"]
    missing = [str(p.relative_to(root.parent)) for p in need if not p.exists()]
    if missing:
        raise RrpoError(
            f"pocketsphinx's English model is incomplete (no {', '.join(missing)}); "
            "pip install --force-reinstall pocketsphinx, or audit with recognizer=false",
            root,
        )
    return root
