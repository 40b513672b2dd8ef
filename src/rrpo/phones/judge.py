"""Intelligibility of generated speech: the phone error rate heard by the phone judge.

The *phone judge* is a CTC phone recogniser (:mod:`rrpo.phones.model`) trained on real transcribed
speech only, with weights of its own (never the content encoder of the tokens, and the policy never
sees it). For an utterance and the text it was asked to say, :meth:`PhoneJudge.score` returns the
edit counts of the recognised phonemes against the text's (espeak-ng) phonemes; a set's PER pools
them, ``Σ edits / Σ reference phonemes``, with a bootstrap interval over utterances
(:meth:`PhoneJudge.summarise`).

(The audit's word error rate on English texts is pocketsphinx's: :mod:`rrpo.audit.distances`.)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rrpo.errors import RrpoError


class PhoneJudge:
    """Scores utterances against their texts (PER)."""

    def __init__(self, model):
        self.model = model

    @classmethod
    def load(cls, path: str | Path) -> PhoneJudge:
        from rrpo.phones.model import PhoneModel

        return cls(PhoneModel.load(path))

    def identity(self) -> dict:
        """What names this judge in a cache key: its folder (resolved) and hashes of its ``phones.json``
        and ``model.safetensors`` (a judge not loaded from a folder: the phone set and the network's shape)."""
        from rrpo.io import sha256_files

        m = self.model
        path = getattr(m, "path", None)
        if not path:
            phones = getattr(getattr(m, "phones", None), "symbols", None)
            shape = getattr(m, "shape", None)
            return {"path": None, "phones": phones, "shape": shape.to_dict() if hasattr(shape, "to_dict") else None}
        path = Path(path).resolve()
        return {
            "path": str(path),
            "phones_json": sha256_files([path / "phones.json"]),
            "weights": sha256_files([path / "model.safetensors"]),
        }

    def describe(self) -> dict:
        m = self.model
        return {
            "path": str(m.path) if m.path else None,
            "phones": len(m.phones) - 1,
            "trained_on": m.meta.get("trained_on"),
            "excluded_speakers": m.meta.get("excluded_speakers"),
        }

    def score(self, audio: np.ndarray, sr: int, text: str, language: str, **keys) -> dict:
        """One utterance: ``{**keys, "phones": N, "phone_edits": S+D+I, "sub", "del", "ins", "per",
        "heard"}`` (``heard``: the recognised phonemes, space-separated)."""
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
            "heard": " ".join(hyp),
        }
        return row

    @staticmethod
    def summarise(rows: list[dict], seed: int = 0, n_boot: int = 2000) -> dict:
        """Pooled PER with a 95 % bootstrap interval over utterances, and the substitution /
        deletion / insertion shares of the reference phonemes."""
        from rrpo.stats import bootstrap_ci

        out: dict = {"n": len(rows)}
        if not rows:
            return {**out, "per": None}
        n = np.array([r["phones"] for r in rows], float)
        ci = bootstrap_ci(np.array([r["phone_edits"] for r in rows], float), n, n_boot=n_boot, seed=seed)
        out["per"] = {"stat": ci["stat"], "lo": ci["lo"], "hi": ci["hi"]}
        for k in ("sub", "del", "ins"):
            out[k] = float(sum(r[k] for r in rows) / n.sum())
        return out


def per_ratio(a: dict | None, b: dict | None) -> float:
    """``a``'s PER over ``b``'s (nan where either is missing or ``b`` is 0)."""
    if not a or not b or not a.get("per") or not b.get("per") or not b["per"]["stat"]:
        return math.nan
    return a["per"]["stat"] / b["per"]["stat"]
