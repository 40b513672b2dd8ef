"""The independent emotion judge: eGeMAPS functionals + standardisation + logistic regression.

The reward model reads codec tokens with a neural network; the judge reads the decoded waveform
through knowledge-based acoustic functionals (:mod:`rrpo.audit.features`) with a linear
classifier, so a policy that exploits the reward model's blind spots has no reason to fool the
judge as well. Nothing here may ever feed a gradient to the policy.

**Interface.** A judge is any object with

* ``classes``: tuple of emotion labels (column order of the probabilities), and
* ``predict_proba(items, groups=None) -> np.ndarray (N, K)`` over ``items``, a sequence of
  ``(audio (T,), sampling_rate)``; ``groups`` (N,) optional speaker labels, which a judge may
  ignore.

A stronger judge (for instance an emotion2vec checkpoint the user has on disk) plugs in by
writing a class with these two members and a loader ``fn(folder: Path, meta: dict) -> Judge``
registered with :func:`register_judge_kind`; its folder holds a ``judge.json`` whose ``kind``
names the loader. :func:`load_judge` then serves ``judge=DIR`` for both.

**Speaker normalisation.** With ``normalization: speaker`` (the default) each feature is
standardised per speaker before the classifier, the usual practice in cross-speaker emotion
recognition: it removes a speaker's pitch and loudness level and keeps how each utterance departs
from it. The statistics come from a group of that speaker's utterances at judging time:
either the batch itself (``groups`` says which utterances share a speaker; ``None`` = one group),
or fixed statistics from a calibration set given as ``stats`` (see :meth:`EgemapsJudge.group_stats`),
which is what an audit over checkpoints should use so that a global drift of every emotion is not
normalised away. Batch statistics need a group that covers the emotions roughly evenly (the audit
synthesises every emotion for each text, so it does); a group smaller than ``min_group`` is an
error. ``normalization: none`` needs nothing at judging time but is far less accurate across
speakers (see docs/audit.md).

The model is stored as ``judge.json`` (kind, classes, config, metrics) and ``weights.npz``
(standardiser and linear weights, read with ``allow_pickle=False``): no pickle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from rrpo.config import check, option
from rrpo.data.emotions import ESD_CLASSES, check_classes
from rrpo.data.manifest import Selection
from rrpo.errors import RrpoError

log = logging.getLogger(__name__)

Item = tuple[np.ndarray, int]
JUDGE_FORMAT = 1
KIND_EGEMAPS = "egemaps-logreg"
KIND_MELSTATS = "logmel-stats"


@runtime_checkable
class Judge(Protocol):
    """An emotion classifier over waveforms (see the module docstring)."""

    classes: tuple[str, ...]

    def predict_proba(self, items: Sequence[Item], groups: Sequence[str] | None = None) -> np.ndarray: ...


@dataclass
class JudgeConfig(Selection):
    """Training settings of the eGeMAPS judge (``rrpo judge train``) and the
    :class:`~rrpo.data.manifest.Selection` of its training records."""

    classes: list[str] = option(list(ESD_CLASSES), "emotion classes (others in the manifests are dropped)")
    normalization: Literal["speaker", "none"] = option("speaker", "per-speaker feature standardisation or none")
    min_group: int = option(10, "fewest utterances a speaker group needs for batch normalisation statistics")
    c_grid: list[float] = option([0.01, 0.1, 1.0], "inverse L2 strengths tried; picked by leave-one-speaker-out CV")
    class_weight: Literal["balanced", "none"] = option("balanced", "class weighting of the loss")
    max_iter: int = option(5000, "L-BFGS iterations")
    seed: int = option(0, "seed of the CV folds")
    class_masking: bool = option(
        True,
        "with several corpora, an utterance's softmax runs only over the classes its "
        "corpus has (a corpus without 'surprise' teaches nothing about surprise)",
    )
    small_groups: Literal["error", "drop"] = option(
        "error",
        "a training speaker with fewer than min_group utterances: stop with an error, or leave that speaker out",
    )
    features: Literal["egemaps", "logmel-stats"] = option(
        "egemaps",
        "utterance features: eGeMAPS functionals, or statistics of log-mel bands (a differently built "
        "second judge, MelStatsJudge)",
    )
    sample_weight: Literal["none", "corpus", "speaker"] = option(
        "none",
        "extra per-utterance loss weight (times the class weight): none; corpus = every corpus carries "
        "the same total weight; speaker = every speaker group carries the same total weight",
    )
    min_group_classes: int = option(
        1,
        "with speaker normalisation, leave out training speakers whose utterances "
        "cover fewer classes than this (z-scoring a one-emotion speaker erases the "
        "emotion and teaches the classifier noise)",
    )

    def __post_init__(self):
        check(len(self.c_grid) > 0 and all(c > 0 for c in self.c_grid), "c_grid", "needs positive values")
        check(self.min_group >= 2, "min_group", "must be at least 2")
        check(self.max_iter > 0, "max_iter", "must be positive")
        check(self.min_group_classes >= 1, "min_group_classes", "must be at least 1")
        check(self.sample_weight in ("none", "corpus", "speaker"), "sample_weight", "must be none, corpus or speaker")
        try:
            check_classes(self.classes)
        except RrpoError as e:
            check(False, "classes", e.reason)


def _standardise_groups(feats: np.ndarray, groups: np.ndarray, stats: dict | None, min_group: int) -> np.ndarray:
    """Per-group z-scores of ``feats`` (N, D); ``stats`` maps group -> (mean (D,), std (D,))."""
    out = np.empty_like(feats)
    for g in np.unique(groups):
        m = groups == g
        if stats is not None and str(g) in stats:
            mu, sd = stats[str(g)]
        else:
            if m.sum() < min_group:
                raise RrpoError(
                    f"speaker group '{g}' has {int(m.sum())} utterance(s); speaker normalisation "
                    f"needs at least {min_group} (or calibration statistics for it)"
                )
            mu, sd = feats[m].mean(0), feats[m].std(0)
        out[m] = (feats[m] - mu) / np.maximum(sd, 1e-8)
    return out


class EgemapsJudge:
    """eGeMAPS features -> (optional per-speaker z-score) -> standardiser -> multinomial logistic."""

    def __init__(
        self,
        classes: Sequence[str],
        mean: np.ndarray,
        scale: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
        normalization: str = "speaker",
        min_group: int = 10,
        meta: dict | None = None,
    ):
        self.classes = tuple(classes)
        self.mean = np.asarray(mean, dtype=np.float64)  # (D,)
        self.scale = np.asarray(scale, dtype=np.float64)  # (D,)
        self.coef = np.asarray(coef, dtype=np.float64)  # (K, D)
        self.intercept = np.asarray(intercept, dtype=np.float64)  # (K,)
        self.normalization = normalization
        self.min_group = int(min_group)
        self.meta = dict(meta or {})
        if normalization not in ("speaker", "none"):
            raise RrpoError(f"judge normalisation '{normalization}' is not 'speaker' or 'none'")
        if self.coef.ndim != 2:
            raise RrpoError(f"judge coefficients must be (classes, features), got shape {self.coef.shape}")
        k, d = self.coef.shape
        if (
            k != len(self.classes)
            or self.mean.shape != (d,)
            or self.scale.shape != (d,)
            or self.intercept.shape != (k,)
        ):
            raise RrpoError(
                f"judge weights do not fit together: coef {self.coef.shape}, mean {self.mean.shape}, "
                f"scale {self.scale.shape}, intercept {self.intercept.shape}, {len(self.classes)} classes"
            )

    # -- features ---------------------------------------------------------------------------
    @staticmethod
    def features(items: Sequence[Item], progress: bool = False) -> np.ndarray:
        """(N, 88) eGeMAPS functionals."""
        from rrpo.audit.features import egemaps_functionals

        return egemaps_functionals(items, progress=progress)

    def group_stats(
        self, items: Sequence[Item] | None = None, groups: Sequence[str] | None = None, feats: np.ndarray | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per-speaker (mean, std) of the features of a calibration set, for ``predict_proba(stats=)``."""
        x = self.features(items) if feats is None else np.asarray(feats, dtype=np.float64)
        g = np.full(len(x), "*", dtype=object) if groups is None else np.asarray(groups, dtype=object)
        g = g.astype(str)
        return {k: (x[g == k].mean(0), x[g == k].std(0)) for k in np.unique(g)}

    # -- prediction -------------------------------------------------------------------------
    def proba_from_features(
        self, feats: np.ndarray, groups: Sequence[str] | None = None, stats: dict | None = None
    ) -> np.ndarray:
        """(N, K) probabilities from (N, D) features."""
        x = np.asarray(feats, dtype=np.float64)
        if self.normalization == "speaker":
            g = np.full(len(x), "*", dtype=object) if groups is None else np.asarray(groups, dtype=object)
            st = None if stats is None else {str(k): v for k, v in stats.items()}
            if st is not None and groups is None and len(st) == 1:
                st = {"*": next(iter(st.values()))}  # one calibration speaker for an ungrouped batch
            x = _standardise_groups(x, g.astype(str), st, self.min_group)
        z = (x - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept  # (N, K)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict_proba(
        self, items: Sequence[Item], groups: Sequence[str] | None = None, stats: dict | None = None
    ) -> np.ndarray:
        """(N, K) class probabilities of ``items`` (see the module docstring for ``groups``/``stats``)."""
        if len(items) == 0:
            return np.zeros((0, len(self.classes)))
        return self.proba_from_features(self.features(items, progress=len(items) >= 100), groups, stats)

    # -- storage ----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        from rrpo.io import atomic_path, write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "weights.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept)
        write_json(
            folder / "judge.json",
            {
                "format": JUDGE_FORMAT,
                "kind": KIND_EGEMAPS,
                "classes": list(self.classes),
                "features": "eGeMAPSv02 functionals",
                "normalization": self.normalization,
                "min_group": self.min_group,
                **{
                    k: v
                    for k, v in self.meta.items()
                    if k not in ("format", "kind", "classes", "normalization", "min_group")
                },
            },
        )

    @classmethod
    def load(cls, folder: Path, meta: dict) -> EgemapsJudge:
        path = Path(folder) / "weights.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("mean", "scale", "coef", "intercept")}
        except FileNotFoundError:
            raise RrpoError("judge weights not found", path) from None
        except (KeyError, ValueError, OSError) as e:
            raise RrpoError(f"not a judge weights file ({e})", path) from None
        return cls(
            meta["classes"],
            normalization=meta.get("normalization", "speaker"),
            min_group=meta.get("min_group", 10),
            meta=meta,
            **arrays,
        )


class MelStatsJudge(EgemapsJudge):
    """The second judge's linear form: statistics of log-mel bands
    (:func:`rrpo.audit.features.mel_statistics`, 240 per utterance) → (per-speaker z-score) →
    standardiser → multinomial logistic. Trained by ``rrpo judge train features=logmel-stats`` (the
    eGeMAPS judge's trainer: C by leave-one-speaker-out CV, class masking); only the features differ."""

    @staticmethod
    def features(items: Sequence[Item], progress: bool = False) -> np.ndarray:
        from rrpo.audit.features import mel_statistics

        return mel_statistics(items, progress=progress)

    def save(self, folder: str | Path) -> None:
        from rrpo.io import read_json, write_json

        super().save(folder)
        meta = read_json(Path(folder) / "judge.json")
        meta.update({"kind": KIND_MELSTATS, "features": "log-mel band statistics (6 x 40)"})
        write_json(Path(folder) / "judge.json", meta)


_LOADERS: dict[str, Callable[[Path, dict], Judge]] = {
    KIND_EGEMAPS: EgemapsJudge.load,
    KIND_MELSTATS: MelStatsJudge.load,
}


def register_judge_kind(kind: str, loader: Callable[[Path, dict], Judge]) -> None:
    """Make ``load_judge`` open folders whose ``judge.json`` says ``"kind": kind`` with ``loader``."""
    _LOADERS[kind] = loader


def load_judge(folder: str | Path) -> Judge:
    """Open a judge folder (``judge.json`` + the kind's own files)."""
    folder = Path(folder)
    meta_path = folder / "judge.json"
    if not meta_path.exists():
        raise RrpoError("not a judge folder (no judge.json)", folder)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RrpoError(f"not valid JSON ({e.msg})", meta_path, e.lineno) from None
    if not isinstance(meta, dict) or "kind" not in meta or "classes" not in meta:
        raise RrpoError("judge.json needs 'kind' and 'classes'", meta_path)
    loader = _LOADERS.get(meta["kind"])
    if loader is None:
        raise RrpoError(
            f"unknown judge kind '{meta['kind']}' (known: {', '.join(sorted(_LOADERS))}; "
            "register others with rrpo.audit.judge.register_judge_kind; 'logmel-cnn' registers "
            "when rrpo.audit.mel_judge is imported)",
            meta_path,
        )
    check_classes(meta["classes"])
    return loader(folder, meta)


# -- training -----------------------------------------------------------------------------------


def select_utterances(manifests, classes: Sequence[str], selection: Selection) -> list[tuple[Path, object]]:
    """(audio path, utterance) of every record in ``manifests`` of one of ``classes`` that ``selection`` keeps."""
    out = []
    for man in manifests:
        for u in selection.apply(man, emotions=classes):
            out.append((man.audio_path(u), u))
    return out


def group_weights(groups: Sequence[str]) -> np.ndarray:
    """Per-utterance weights giving every group the same total weight, normalised to mean 1:
    w_i = N / (G · n_g(i)). Example: groups (a, a, a, b) → (2/3, 2/3, 2/3, 2)."""
    g = np.asarray(groups).astype(str)
    if len(g) == 0:
        return np.zeros(0)
    names, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
    return len(g) / (len(names) * counts[inv].astype(np.float64))


def fit_judge(
    feats: np.ndarray,
    labels: Sequence[str],
    speakers: Sequence[str],
    cfg: JudgeConfig,
    corpora: Sequence[str] | None = None,
) -> tuple[EgemapsJudge, dict]:
    """Fit the judge on (N, D) features; returns the judge and training info (chosen C, CV scores).

    With ``normalization: speaker`` each speaker's features are z-scored over that speaker's
    training utterances first. ``C`` is chosen from ``cfg.c_grid`` by unweighted accuracy under
    leave-one-speaker-out cross-validation (stratified 5-fold when there is one speaker).
    ``corpora`` (one name per utterance) with ``cfg.class_masking``: an utterance's softmax runs only
    over the classes its corpus has (:mod:`rrpo.audit.masked_logreg`); when every corpus has every
    class this is the plain fit. ``cfg.sample_weight`` multiplies each utterance's loss weight (after
    the class weight) by :func:`group_weights` over its corpus or its speaker group.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    classes = list(cfg.classes)
    labels = np.asarray(labels).astype(str)
    speakers = np.asarray(speakers).astype(str)
    x = np.asarray(feats, dtype=np.float64)
    missing = [c for c in classes if not (labels == c).any()]
    if missing:
        raise RrpoError(f"no training utterances for class(es) {missing}")
    if cfg.normalization == "speaker":
        x = _standardise_groups(x, speakers, None, cfg.min_group)
    y = np.array([classes.index(l) for l in labels])
    weight = "balanced" if cfg.class_weight == "balanced" else None
    mask = corpus_class_mask(labels, corpora, classes) if corpora is not None and cfg.class_masking else None
    if mask is not None and mask.all():
        mask = None
    sw_kind = getattr(cfg, "sample_weight", "none")
    if sw_kind == "corpus" and corpora is None:
        raise RrpoError("sample_weight: corpus needs the corpus of every utterance (several manifests)")
    sw_groups = None if sw_kind == "none" else np.asarray(corpora if sw_kind == "corpus" else speakers).astype(str)

    def fit(xtr, ytr, c, mtr=None, gtr=None):
        mean, scale = xtr.mean(0), np.maximum(xtr.std(0), 1e-8)
        sw = None if gtr is None else group_weights(gtr)
        if mtr is None:
            clf = LogisticRegression(C=c, max_iter=cfg.max_iter, class_weight=weight)
            clf.fit((xtr - mean) / scale, ytr, sample_weight=sw)
        else:
            clf = _MaskedClassifier(c, cfg.max_iter, weight).fit((xtr - mean) / scale, ytr, mtr, len(classes), sw)
        return mean, scale, clf

    n_spk = len(np.unique(speakers))
    if n_spk >= 2:
        folds = list(GroupKFold(n_splits=min(n_spk, 5)).split(x, y, speakers))
    else:
        k = int(min(5, np.bincount(y).min()))
        folds = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=cfg.seed).split(x, y)) if k >= 2 else []
    cv = {}
    for c in cfg.c_grid:
        if not folds:
            cv[c] = float("nan")
            continue
        ua = []
        for tr, te in folds:
            mean, scale, clf = fit(
                x[tr], y[tr], c, None if mask is None else mask[tr], None if sw_groups is None else sw_groups[tr]
            )
            pb = clf.predict_proba((x[te] - mean) / scale)
            if mask is not None:  # a test utterance is scored among its own corpus' classes
                pb = np.where(mask[te][:, clf.classes_], pb, -1.0)
            pred = clf.classes_[pb.argmax(1)]
            ua.append(np.mean([np.mean(pred[y[te] == k] == k) for k in np.unique(y[te])]))
        cv[c] = float(np.mean(ua))
    best = max(cfg.c_grid, key=lambda c: (np.nan_to_num(cv[c], nan=-1.0), -c))
    mean, scale, clf = fit(x, y, best, mask, sw_groups)
    coef = np.zeros((len(classes), x.shape[1]))
    intercept = np.zeros(len(classes))
    if clf.coef_.shape[0] == 1:  # binary: sklearn keeps one row w for class 1; softmax([-w/2, w/2]) = sigmoid(w)
        coef[clf.classes_[0]], coef[clf.classes_[1]] = -clf.coef_[0] / 2, clf.coef_[0] / 2
        intercept[clf.classes_[0]], intercept[clf.classes_[1]] = -clf.intercept_[0] / 2, clf.intercept_[0] / 2
    else:
        coef[clf.classes_], intercept[clf.classes_] = clf.coef_, clf.intercept_
    info = {
        "C": best,
        "cv_ua": {str(c): v for c, v in cv.items()},
        "n_train": int(len(y)),
        "train_speakers": sorted(np.unique(speakers).tolist()),
        "train_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)},
    }
    if corpora is not None:
        corp = np.asarray(corpora).astype(str)
        info["corpora"] = {
            k: {"n": int((corp == k).sum()), "classes": [c for c in classes if ((corp == k) & (labels == c)).any()]}
            for k in sorted(set(corp.tolist()))
        }
        info["class_masking"] = mask is not None
    info["sample_weight"] = sw_kind
    judge_cls = MelStatsJudge if getattr(cfg, "features", "egemaps") == "logmel-stats" else EgemapsJudge
    judge = judge_cls(classes, mean, scale, coef, intercept, cfg.normalization, cfg.min_group, meta={"training": info})
    return judge, info


# -- several corpora ----------------------------------------------------------------------------


def corpus_class_mask(labels: Sequence[str], corpora: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """(N, K) bool: utterance i may be any class that occurs among the labels of its corpus.

    Example: labels (a, b, a, c), corpora (x, x, y, y), classes (a, b, c) → rows x: (1, 1, 0),
    y: (1, 0, 1)."""
    labels = np.asarray(labels).astype(str)
    corpora = np.asarray(corpora).astype(str)
    if len(labels) != len(corpora):
        raise RrpoError(f"{len(labels)} labels but {len(corpora)} corpus names")
    mask = np.zeros((len(labels), len(classes)), dtype=bool)
    for k in np.unique(corpora):
        m = corpora == k
        mask[m] = [bool((labels[m] == c).any()) for c in classes]
    return mask


class _MaskedClassifier:
    """The slice of scikit-learn's classifier interface ``fit_judge`` uses, over the masked fit."""

    def __init__(self, c: float, max_iter: int, class_weight: str | None):
        self.c, self.max_iter, self.class_weight = c, max_iter, class_weight

    def fit(
        self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, k: int, sample_weight: np.ndarray | None = None
    ) -> _MaskedClassifier:
        from rrpo.audit.masked_logreg import balanced_weights, fit_masked_logreg

        present = np.unique(y)  # the classes of this (fold's) training set, as sklearn keeps them
        remap = {int(c): i for i, c in enumerate(present)}
        yy = np.array([remap[int(v)] for v in y])
        w = balanced_weights(yy, len(present)) if self.class_weight == "balanced" else None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64) * (1.0 if w is None else w)
        self.coef_, self.intercept_ = fit_masked_logreg(x, yy, mask[:, present], self.c, w, self.max_iter)
        self.classes_ = present
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.coef_.T + self.intercept_
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(1, keepdims=True)


def select_corpora(manifests, cfg: JudgeConfig) -> tuple[list[tuple[Path, object]], list[str], list[str], dict]:
    """Training records of several manifests for ``fit_judge``: (audio path, utterance) pairs, their
    corpus names and their speaker groups, and what was dropped.

    A manifest is one corpus (named by its records' ``extra['corpus']`` when set, else the file's
    stem). Speaker groups are ``corpus/speaker`` when there are several corpora (speaker ids of two
    corpora may coincide). With speaker normalisation, speakers with fewer than ``min_group`` records
    (``small_groups: drop``) and speakers whose records cover fewer than ``min_group_classes`` classes
    are left out (listed in the returned dict)."""
    sel, corpora, groups = [], [], []
    for man in manifests:
        name = Path(man.path).stem if man.path is not None else "manifest"
        for u in man.select(
            split=cfg.splits or None,
            language=cfg.languages or None,
            emotions=cfg.classes,
            speakers=cfg.speakers or None,
            exclude_speakers=cfg.exclude_speakers or None,
        ):
            sel.append((man.audio_path(u), u))
            corpora.append(str(u.extra.get("corpus", name)))
    several = len(set(corpora)) > 1
    groups = [f"{c}/{u.speaker}" if several else u.speaker for c, (_, u) in zip(corpora, sel)]
    dropped: dict[str, int] = {}
    narrow: dict[str, int] = {}
    if cfg.normalization == "speaker":
        from collections import Counter

        if cfg.small_groups == "drop":
            n = Counter(groups)
            dropped = {g: k for g, k in sorted(n.items()) if k < cfg.min_group}
        covered: dict[str, set] = {}
        for g, (_, u) in zip(groups, sel):
            covered.setdefault(g, set()).add(u.emotion)
        min_classes = getattr(cfg, "min_group_classes", 1)
        narrow = {g: len(c) for g, c in sorted(covered.items()) if len(c) < min_classes and g not in dropped}
        keep = [i for i, g in enumerate(groups) if g not in dropped and g not in narrow]
        sel, corpora, groups = [sel[i] for i in keep], [corpora[i] for i in keep], [groups[i] for i in keep]
    return sel, corpora, groups, {"dropped_speakers": dropped, "narrow_speakers": narrow}
