"""A tiny transcribed corpus in LibriSpeech's own layout, spoken by espeak-ng (two voices), for the
tests of the phone stages (the real corpora are never in the repository)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SENTENCES = (
    "the cat sat on the mat",
    "a dog ran to the park",
    "she sells sea shells",
    "red lorry yellow lorry",
    "the sun is hot today",
    "we will meet at noon",
)


def espeak_librispeech(root: Path, per_speaker: int = 3) -> Path:
    """``root/LibriSpeech/test-clean/<spk>/<chapter>/`` with FLAC clips and ``.trans.txt`` files."""
    from rrpo.data import espeak
    from rrpo.data.audio import resample

    base = root / "LibriSpeech"
    for spk, voice in (("11", "en-us+m3"), ("22", "en-us+f2")):
        ch = base / "test-clean" / spk / "1"
        ch.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(per_speaker):
            text = SENTENCES[(i + int(spk)) % len(SENTENCES)]
            pcm, sr = espeak.synthesize(text, voice)
            x = resample(pcm.astype(np.float32) / 32768.0, sr, 16000)
            uid = f"{spk}-1-{i:04d}"
            sf.write(str(ch / f"{uid}.flac"), x, 16000, subtype="PCM_16")
            lines.append(f"{uid} {text.upper()}")
        (ch / f"{spk}-1.trans.txt").write_text("\n".join(lines) + "\n")
    return base
