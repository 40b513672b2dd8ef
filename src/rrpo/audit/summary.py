"""One system's audit summary over a set of generated utterances.

:func:`audit_audio` is what ``rrpo audit`` and the report call for each system or checkpoint:

* ``generated``: a list of ``(audio, sampling_rate, meta)``; audio is (T,) or (C, T) (channels
  are averaged); ``meta`` is a mapping with ``emotion`` (the target emotion, required for the judge figures) and optionally ``id``,
  ``speaker`` (the judge's normalisation group), ``language`` (``"en"`` turns on WER), ``text``
  (the reference transcript for WER), ``ref_id`` (the id of the parallel real recording in
  ``references``) and ``tokens`` (speech tokens, for the token-repetition figure).
* ``references``: optional mapping ``ref_id -> (audio, sampling_rate)`` of real recordings; the
  parallel ones give MCD and F0 error, and all of them together the eGeMAPS Fréchet distance.
* ``judge``: any :class:`~rrpo.audit.judge.Judge` or ``None``; ``judge_stats`` are fixed
  per-speaker normalisation statistics passed to an :class:`~rrpo.audit.judge.EgemapsJudge`.
* ``typicality``: a :class:`~rrpo.audit.anchor.Typicality` (the speaker's real speech per emotion):
  each utterance's typicality distance and whether it is atypical.
* ``recognizer``: an object with ``transcribe(audio, sr) -> str`` (default: pocketsphinx when
  there is English input with text; pass ``False`` to skip WER).
* ``phone_judge``: a :class:`~rrpo.phones.judge.PhoneJudge` (or any object with its ``score`` and
  ``summarise``) or ``None``: the phone error rate of every utterance with a ``text`` and a
  ``language``, against the text's espeak-ng phonemes (PER, in every language the judge's
  phonemiser knows).

Returns a JSON-ready dict (NaN where a figure has no input)::

    {"n": ..., "duration_s": ...,
     "judge": {"target_prob": mean p(target), "accuracy": ..., "per_emotion": {emo: {...}}},
     "artifacts": {name: {"events_per_s": ..., "frame_fraction": ..., "utterances_with": ...}},
     "distances": {"mcd_db": ..., "f0_rmse_cents": ..., "voicing_error": ..., "n_parallel": ...,
                   "frechet_egemaps": ...},
     "wer": {"wer": ..., "sub": ..., "del": ..., "ins": ..., "n_ref": ..., "n_utts": ...},
     "token_repetition": mean repeated-4-gram fraction (when tokens are given),
     "typicality": {"distance": mean, "atypical": share, "per_emotion": {emo: {...}}} (with ``typicality``),
     "per": {"n": utterances scored, "per": {"stat": Σ edits / Σ reference phonemes, "lo", "hi"} (95 %
             bootstrap over utterances), "sub", "del", "ins" (shares of the reference phonemes),
             "languages": {language: the same over that language's utterances}}
            (without ``phone_judge``: {"n": 0, "per": None, "absent": why})}

and, with ``per_utterance=True``, a list ``utterances`` of the per-utterance figures (with a phone
judge: ``per``, ``phones`` (reference phonemes), ``phone_edits``, ``phone_sub``, ``phone_del``,
``phone_ins`` and ``phones_heard``, the recognised phonemes space-separated).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rrpo.audit.artifacts import DETECTORS, ArtifactConfig, repeated_ngram_fraction
from rrpo.audit.distances import DistanceConfig, feature_frechet, reference_distances, word_error_rate

Generated = tuple[np.ndarray, int, Mapping[str, Any]]

log = logging.getLogger(__name__)

#: what the summary says of PER when the audit has no phone judge
PER_ABSENT = "no phone judge (audit key phone_judge)"


def _mono(audio) -> np.ndarray:
    """(T,) float32 from (T,), (1, T) or multi-channel (C, T) audio (channels averaged, as load_audio does)."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0)
    if x.ndim != 1:
        raise ValueError(f"expected audio of shape (T,) or (C, T), got {x.shape}")
    return x


def _nanmean(xs) -> float:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(xs)) if xs else float("nan")


def pooled_recall(summaries: Sequence[Mapping], order: Sequence[str] = ()) -> dict[str, float]:
    """The judge's accuracy per target emotion (its recall of that emotion), pooled over several
    summaries of :func:`audit_audio`: each summary's ``judge.per_emotion[e].accuracy`` weighted by its
    utterance count ``n``. Emotions come in ``order`` first, then any others alphabetically; an emotion
    with no utterance is left out. Example: angry 1 of 4 in one summary and 3 of 6 in another pool to
    (1 + 3) / 10 = 0.4."""
    hit: dict[str, float] = {}
    count: dict[str, int] = {}
    for p in summaries:
        for e, v in ((p.get("judge") or {}).get("per_emotion") or {}).items():
            n = int(v.get("n", 0))
            acc = v.get("accuracy")
            if not n or acc is None or (isinstance(acc, float) and math.isnan(acc)):
                continue
            hit[e] = hit.get(e, 0.0) + float(acc) * n
            count[e] = count.get(e, 0) + n
    rank = {e: i for i, e in enumerate(order)}
    keys = sorted(hit, key=lambda e: (rank.get(e, len(rank)), e))
    return {e: hit[e] / count[e] for e in keys}


def audit_audio(
    generated: Sequence[Generated],
    references: Mapping[str, tuple[np.ndarray, int]] | None = None,
    judge=None,
    *,
    judge_stats: dict | None = None,
    typicality=None,
    recognizer=None,
    phone_judge=None,
    artifact_cfg: ArtifactConfig | None = None,
    distance_cfg: DistanceConfig | None = None,
    frechet: bool = True,
    per_utterance: bool = False,
) -> dict:
    """The per-system summary described in the module docstring."""
    artifact_cfg = artifact_cfg or ArtifactConfig()
    distance_cfg = distance_cfg or DistanceConfig()
    generated = [(_mono(a), int(sr), m) for a, sr, m in generated]
    references = {k: (_mono(a), int(sr)) for k, (a, sr) in (references or {}).items()}
    metas = [dict(m or {}) for _, _, m in generated]
    rows: list[dict] = [
        {
            "id": m.get("id", str(i)),
            "emotion": m.get("emotion"),
            "speaker": m.get("speaker"),
            "cluster": str(m.get("cluster", m.get("text", i))),
            "duration_s": len(a) / sr,
        }
        for i, ((a, sr, _), m) in enumerate(zip(generated, metas))
    ]
    out: dict[str, Any] = {"n": len(generated), "duration_s": float(sum(len(a) / sr for a, sr, _ in generated))}
    # eGeMAPS functionals of the generated audio, computed once for the judge (when it is the eGeMAPS
    # judge), typicality and the Fréchet distance
    need_fg = (frechet and len(references) >= 2 and len(generated) >= 2) or typicality is not None
    fg = None
    if need_fg and generated:
        from rrpo.audit.features import egemaps_functionals

        fg = egemaps_functionals([(a, sr) for a, sr, _ in generated])

    # judge: p(target emotion) and accuracy
    judged = [i for i, m in enumerate(metas) if judge is not None and m.get("emotion") in getattr(judge, "classes", ())]
    if judged:
        items = [(generated[i][0], generated[i][1]) for i in judged]
        groups = [str(metas[i].get("speaker", "*")) for i in judged]
        kwargs = {"stats": judge_stats} if judge_stats is not None else {}
        if fg is not None and type(judge).__name__ == "EgemapsJudge":
            proba = np.asarray(judge.proba_from_features(fg[judged], groups, **kwargs))
        else:
            proba = np.asarray(judge.predict_proba(items, groups=groups, **kwargs))  # (n, K)
        classes = list(judge.classes)
        per: dict[str, dict] = {}
        for row_i, i in enumerate(judged):
            k = classes.index(metas[i]["emotion"])
            rows[i]["judge_target_prob"] = float(proba[row_i, k])
            rows[i]["judge_pred"] = classes[int(proba[row_i].argmax())]
            rows[i]["judge_correct"] = bool(int(proba[row_i].argmax()) == k)
        for emo in classes:
            sel = [rows[i] for i in judged if metas[i]["emotion"] == emo]
            if sel:
                per[emo] = {
                    "n": len(sel),
                    "target_prob": _nanmean([r["judge_target_prob"] for r in sel]),
                    "accuracy": _nanmean([float(r["judge_correct"]) for r in sel]),
                }
        out["judge"] = {
            "n": len(judged),
            "target_prob": _nanmean([rows[i]["judge_target_prob"] for i in judged]),
            "accuracy": _nanmean([float(rows[i]["judge_correct"]) for i in judged]),
            "per_emotion": per,
        }
    else:
        out["judge"] = {"n": 0, "target_prob": float("nan"), "accuracy": float("nan"), "per_emotion": {}}

    # artifacts
    arts: dict[str, dict] = {}
    total_s = out["duration_s"]
    for name, fn in DETECTORS.items():
        events, frac_w, hits = 0, 0.0, 0
        for i, (a, sr, _) in enumerate(generated):
            d = fn(a, sr, artifact_cfg)
            rows[i][f"{name}_events"] = d.events
            rows[i][f"{name}_frame_fraction"] = d.frame_fraction
            events += d.events
            frac_w += d.frame_fraction * len(a) / sr
            hits += d.events > 0
        arts[name] = {
            "events_per_s": events / total_s if total_s else float("nan"),
            "frame_fraction": frac_w / total_s if total_s else float("nan"),
            "utterances_with": hits,
        }
    out["artifacts"] = arts

    # distances to parallel references and to the real set
    par = []
    for i, m in enumerate(metas):
        ref = references.get(m.get("ref_id")) if m.get("ref_id") is not None else None
        if ref is not None:
            d = reference_distances(generated[i][0], generated[i][1], ref[0], ref[1], distance_cfg)
            rows[i].update(d)
            par.append(d)
    dist = {
        "n_parallel": len(par),
        "mcd_db": _nanmean([d["mcd_db"] for d in par]),
        "f0_rmse_cents": _nanmean([d["f0_rmse_cents"] for d in par]),
        "voicing_error": _nanmean([d["voicing_error"] for d in par]),
        "frechet_egemaps": float("nan"),
    }
    if frechet and len(references) >= 2 and len(generated) >= 2:
        from rrpo.audit.features import egemaps_functionals

        fr = egemaps_functionals([(a, sr) for a, sr in references.values()])
        dist["frechet_egemaps"] = feature_frechet(fg, fr)
    out["distances"] = dist

    # WER for English utterances with a transcript
    en = [i for i, m in enumerate(metas) if m.get("language") == "en" and m.get("text")]
    if en and recognizer is not False:
        if recognizer is None:
            from rrpo.audit.distances import PocketsphinxRecognizer

            recognizer = PocketsphinxRecognizer()
        hyps = []
        for i in en:
            h = recognizer.transcribe(generated[i][0], generated[i][1])
            rows[i]["asr"] = h
            rows[i]["wer"] = word_error_rate(metas[i]["text"], h)["wer"]
            hyps.append(h)
        out["wer"] = {**word_error_rate([metas[i]["text"] for i in en], hyps), "n_utts": len(en)}
    else:
        out["wer"] = {"wer": float("nan"), "n_utts": 0}

    toks = [(i, m["tokens"]) for i, m in enumerate(metas) if m.get("tokens") is not None]
    if toks:
        for i, t in toks:
            rows[i]["token_repetition"] = float(repeated_ngram_fraction(t, 4))
        out["token_repetition"] = _nanmean([rows[i]["token_repetition"] for i, _ in toks])

    if typicality is not None and fg is not None:
        spk = [str(m.get("speaker")) for m in metas]
        emo = [str(m.get("emotion")) for m in metas]
        dist = typicality.distance(fg, spk, emo)
        aty = typicality.atypical(dist, spk)
        per_t: dict[str, dict] = {}
        for i in range(len(rows)):
            rows[i]["typicality"] = float(dist[i])
            rows[i]["atypical"] = float(aty[i])
        for e in dict.fromkeys(emo):
            sel = [i for i in range(len(rows)) if emo[i] == e]
            per_t[e] = {
                "n": len(sel),
                "distance": _nanmean([float(dist[i]) for i in sel]),
                "atypical": _nanmean([float(aty[i]) for i in sel]),
            }
        out["typicality"] = {
            "distance": _nanmean([float(x) for x in dist]),
            "atypical": _nanmean([float(x) for x in aty]),
            "per_emotion": per_t,
        }
    out["per"] = phone_error_rates(phone_judge, generated, metas, rows)
    if per_utterance:
        out["utterances"] = rows
    return out


def phone_error_rates(phone_judge, generated: Sequence[Generated], metas: list[dict], rows: list[dict]) -> dict:
    """PER of every utterance with a text and a language (added to ``rows``) and the pooled summary
    (module docstring). An utterance whose text espeak-ng reads no phoneme of (or whose language it
    has no voice for) is left out, with a warning, and counted in ``skipped``."""
    if phone_judge is None:
        return {"n": 0, "per": None, "absent": PER_ABSENT}
    from rrpo.errors import RrpoError

    scored: list[tuple[str, dict]] = []
    skipped = 0
    for i, m in enumerate(metas):
        text, lang = (m.get("text") or "").strip(), m.get("language")
        if not text or not lang:
            continue
        try:
            r = phone_judge.score(generated[i][0], generated[i][1], text, lang)
        except RrpoError as e:
            log.warning("PER: utterance %s left out: %s", rows[i]["id"], e)
            skipped += 1
            continue
        rows[i].update(
            per=float(r["per"]),
            phones=int(r["phones"]),
            phone_edits=int(r["phone_edits"]),
            phone_sub=int(r["sub"]),
            phone_del=int(r["del"]),
            phone_ins=int(r["ins"]),
            phones_heard=r["heard"],
        )
        scored.append((lang, r))
    out = dict(phone_judge.summarise([r for _, r in scored]))
    out["languages"] = {
        lang: phone_judge.summarise([r for g, r in scored if g == lang]) for lang in dict.fromkeys(g for g, _ in scored)
    }
    if skipped:
        out["skipped"] = skipped
    return out
