"""One emotion vocabulary for every corpus, and the per-corpus label mappings into it."""

from __future__ import annotations

from rrpo.errors import RrpoError

#: The toolkit's emotion vocabulary. Every manifest uses these labels.
EMOTIONS: tuple[str, ...] = ("neutral", "happy", "angry", "sad", "surprise", "fear", "disgust", "calm")

#: The five ESD emotions, the default class set of the reward model and policy.
ESD_CLASSES: tuple[str, ...] = ("neutral", "happy", "angry", "sad", "surprise")

#: Corpus label -> vocabulary label. Keys are compared case-insensitively.
CORPUS_MAPPINGS: dict[str, dict[str, str]] = {
    "casia": {
        "neutral": "neutral",
        "happy": "happy",
        "angry": "angry",
        "sad": "sad",
        "surprise": "surprise",
        "fear": "fear",
    },
    "esd": {
        "neutral": "neutral",
        "happy": "happy",
        "angry": "angry",
        "sad": "sad",
        "surprise": "surprise",
        # Mandarin labels in the transcripts of speakers 0001-0010
        "中立": "neutral",
        "快乐": "happy",
        "生气": "angry",
        "伤心": "sad",
        "惊喜": "surprise",
    },
    # RAVDESS file-name code 03 (emotion): 01 neutral ... 08 surprised
    "ravdess": {
        "01": "neutral",
        "02": "calm",
        "03": "happy",
        "04": "sad",
        "05": "angry",
        "06": "fear",
        "07": "disgust",
        "08": "surprise",
    },
    "crema-d": {"neu": "neutral", "hap": "happy", "ang": "angry", "sad": "sad", "fea": "fear", "dis": "disgust"},
    # IEMOCAP: the usual 4-class setting merges excited into happy
    "iemocap": {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"},
    # ASED (Amharic): folder names 01Neutral..05Angry and the file names' first letter (n f h s a)
    "ased": {
        "neutral": "neutral",
        "fearful": "fear",
        "happy": "happy",
        "sad": "sad",
        "angry": "angry",
        "n": "neutral",
        "f": "fear",
        "h": "happy",
        "s": "sad",
        "a": "angry",
    },
    # nEMO (Polish): the labels of its data.tsv and file names
    "nemo": {
        "anger": "angry",
        "fear": "fear",
        "happiness": "happy",
        "neutral": "neutral",
        "sadness": "sad",
        "surprised": "surprise",
    },
    # URDU: folder names and the file names' emotion letter (A H N S)
    "urdu": {
        "angry": "angry",
        "happy": "happy",
        "neutral": "neutral",
        "sad": "sad",
        "a": "angry",
        "h": "happy",
        "n": "neutral",
        "s": "sad",
    },
    # the generic importer accepts the vocabulary itself and common synonyms
    "generic": {
        **{e: e for e in EMOTIONS},
        "joy": "happy",
        "happiness": "happy",
        "anger": "angry",
        "sadness": "sad",
        "surprised": "surprise",
        "fearful": "fear",
        "afraid": "fear",
        "disgusted": "disgust",
        "neu": "neutral",
        "hap": "happy",
        "ang": "angry",
    },
}


def normalise_emotion(label: str, corpus: str = "generic", where: str | None = None) -> str:
    """Map a corpus' own label to the vocabulary, or raise naming the label and ``where``."""
    mapping = CORPUS_MAPPINGS.get(corpus)
    if mapping is None:
        raise RrpoError(f"no emotion mapping for corpus '{corpus}' (known: {', '.join(CORPUS_MAPPINGS)})")
    key = label.strip()
    out = mapping.get(key, mapping.get(key.lower()))
    if out is None:
        raise RrpoError(
            f"emotion label '{label}' is not in the {corpus} mapping (known: {', '.join(sorted(mapping))})", where
        )
    return out


def check_classes(classes: list[str] | tuple[str, ...], key: str | None = None) -> tuple[str, ...]:
    """Validate a model's class set (a subset of the vocabulary, no repeats, at least two).

    With ``key`` (the config key holding the set, e.g. ``"model.classes"``) the error is a
    :class:`~rrpo.errors.ConfigError` naming it, for use in a config's ``__post_init__``.
    """

    def fail(reason: str):
        if key is not None:
            from rrpo.errors import ConfigError

            raise ConfigError(f"config key '{key}': {reason}")
        raise RrpoError(reason)

    bad = [c for c in classes if c not in EMOTIONS]
    if bad:
        fail(f"unknown emotion class(es) {bad}; the vocabulary is {', '.join(EMOTIONS)}")
    if len(set(classes)) != len(classes):
        fail(f"emotion classes repeat: {list(classes)}")
    if len(classes) < 2:
        fail("a class set needs at least two emotions")
    return tuple(classes)
