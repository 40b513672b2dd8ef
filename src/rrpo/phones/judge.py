"""Intelligibility of generated speech: phone error rate by the phone judge, and word error rate by
pocketsphinx where the text is English.

The *phone judge* is a CTC phone recogniser (:mod:`rrpo.phones.model`) trained on real transcribed
speech only, with weights of its own (never the content encoder of the tokens, and the policy never
sees it). For an utterance and the text it was asked to say, :meth:`PhoneJudge.score` returns the
edit counts of the recognised phonemes against the text's (espeak-ng) phonemes; a set's PER pools
them, ``Σ edits / Σ reference phonemes``, with a bootstrap interval over utterances
(:meth:`PhoneJudge.summarise`).

Word error rate uses pocketsphinx's bundled US-English model (``pocketsphinx`` package), on English
texts only; words are lower-cased letters and apostrophes.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from rrpo.errors import RrpoError


def norm_words(text: str) -> list[str]:
    """Lower-case words of letters and apostrophes: ``"It's 3 o'clock!"`` -> ``["it's", "o'clock"]``."""
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


class WordRecognizer:
    """pocketsphinx's US-English recogniser on 16 kHz audio (one instance per thread)."""

    def __init__(self):
        from rrpo.system import require

        ps = require("pocketsphinx")
        self.dec = ps.Decoder(samprate=16000, loglevel="FATAL")

    def __call__(self, audio: np.ndarray, sr: int = 16000) -> list[str]:
        from rrpo.data.audio import resample

        x = np.asarray(audio, np.float32)
        if sr != 16000:
            x = resample(x, sr, 16000)
        pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes()
        self.dec.start_utt()
        self.dec.process_raw(pcm, full_utt=True)
        self.dec.end_utt()
        hyp = self.dec.hyp()
        return norm_words(hyp.hypstr if hyp is not None else "")


class PhoneJudge:
    """Scores utterances against their texts (PER; WER on English with ``words=True``)."""

    def __init__(self, model, words: bool = True):
        self.model = model
        self.words = words
        self._wr = None

    @classmethod
    def load(cls, path: str | Path, words: bool = True) -> PhoneJudge:
        from rrpo.phones.model import PhoneModel

        return cls(PhoneModel.load(path), words)

    def describe(self) -> dict:
        m = self.model
        return {
            "path": str(m.path) if m.path else None,
            "phones": len(m.phones) - 1,
            "trained_on": m.meta.get("trained_on"),
            "excluded_speakers": m.meta.get("excluded_speakers"),
        }

    def _words(self):
        if self._wr is None:
            self._wr = WordRecognizer()
        return self._wr

    def score(self, audio: np.ndarray, sr: int, text: str, language: str, **keys) -> dict:
        """One utterance: ``{**keys, "phones": N, "phone_edits": S+D+I, "sub", "del", "ins", "per",
        "words", "word_edits", "wer"}`` (the word fields None unless English and ``words``)."""
        from rrpo.phones.inventory import edit_ops, phonemise

        ref = list(phonemise(text, language))
        if not ref:
            raise RrpoError(f"espeak-ng reads no phoneme in the text {text[:40]!r} ({language})")
        hyp = self.model.recognise(audio, sr)
        s, d, i = edit_ops(ref, hyp)
        row = {
            **keys,
            "phones": len(ref),
            "phone_edits": s + d + i,
            "sub": s,
            "del": d,
            "ins": i,
            "per": (s + d + i) / len(ref),
            "words": None,
            "word_edits": None,
            "wer": None,
        }
        if self.words and language == "en":
            rw = norm_words(text)
            if rw:
                e = sum(edit_ops(rw, self._words()(audio, sr)))
                row.update(words=len(rw), word_edits=e, wer=e / len(rw))
        return row

    @staticmethod
    def summarise(rows: list[dict], seed: int = 0, n_boot: int = 2000) -> dict:
        """Pooled PER (and WER where rows have words) with 95 % bootstrap intervals over utterances,
        and the substitution / deletion / insertion shares of the reference phonemes."""
        from rrpo.stats import bootstrap_ci

        out: dict = {"n": len(rows)}
        if not rows:
            return {**out, "per": None, "wer": None}
        n = np.array([r["phones"] for r in rows], float)
        ci = bootstrap_ci(np.array([r["phone_edits"] for r in rows], float), n, n_boot=n_boot, seed=seed)
        out["per"] = {"stat": ci["stat"], "lo": ci["lo"], "hi": ci["hi"]}
        for k in ("sub", "del", "ins"):
            out[k] = float(sum(r[k] for r in rows) / n.sum())
        wr = [r for r in rows if r.get("words")]
        if wr:
            ci = bootstrap_ci(
                np.array([r["word_edits"] for r in wr], float),
                np.array([r["words"] for r in wr], float),
                n_boot=n_boot,
                seed=seed,
            )
            out["wer"] = {"stat": ci["stat"], "lo": ci["lo"], "hi": ci["hi"], "n": len(wr)}
        else:
            out["wer"] = None
        return out


def per_ratio(a: dict | None, b: dict | None) -> float:
    """``a``'s PER over ``b``'s (nan where either is missing or ``b`` is 0)."""
    if not a or not b or not a.get("per") or not b.get("per") or not b["per"]["stat"]:
        return math.nan
    return a["per"]["stat"] / b["per"]["stat"]
