"""Phonemes of a text, the phone set of a model, and the edit distance behind phone error rates.

A text becomes a list of phonemes through espeak-ng (:mod:`rrpo.data.espeak`), in its ASCII
phoneme names with a ``|`` between the phonemes of a word. What is kept of each name:

- stress marks (``'`` primary, ``,`` secondary) are removed: ``'oU`` -> ``oU``;
- tone digits are removed (Mandarin ``i55`` -> ``i``, ``Au214`` -> ``Au``): tone is carried by
  pitch, which rrpo's tokens encode in their own factor, and a phone recogniser of 25 Hz frames
  is judged on segments; so are the variant digits of other names (English ``t2`` -> ``t``,
  ``@2`` -> ``@``), but a name of digits only is a phoneme and stays (English ``0``, the vowel of
  "hot", and ``3``, the r-coloured schwa of "butter");
- pauses (``_``, ``_|``, a lone ``:``) and espeak's language-switch tags (``(en)``) are dropped;
- length marks and variants stay part of the name (``3:``, ``t#``).

Word boundaries are not phonemes. The phone error rate (PER) is the Levenshtein distance between
the reference and the recognised phonemes (substitutions, deletions, insertions, each cost 1)
divided by the reference's length: ``(S + D + I) / N``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from rrpo.errors import RrpoError

#: espeak-ng voice per manifest language (the project's languages; others: pass ``voice=``).
VOICES: dict[str, str] = {"zh": "cmn", "en": "en-us", "pl": "pl", "am": "am", "ur": "ur"}

#: bump when :func:`parse_phonemes` changes what it keeps (cached phonemes are keyed by it)
PARSE_VERSION = 2

_TAG = re.compile(r"\([a-z-]+\)")
_STRIP = str.maketrans("", "", "',")
_TONE = re.compile(r"(?<=\D)\d+$")  # trailing digits after a letter: a name of digits only is a phoneme


def voice_for(language: str) -> str:
    try:
        return VOICES[language]
    except KeyError:
        raise RrpoError(
            f"no espeak-ng voice known for language '{language}' (known: {', '.join(sorted(VOICES))})"
        ) from None


def parse_phonemes(espeak_output: str) -> list[str]:
    """espeak-ng's ``|``-separated phoneme string -> phoneme names (see the module docstring).

    >>> parse_phonemes("h|@|l|'oU w|'3:|l|d")
    ['h', '@', 'l', 'oU', 'w', '3:', 'l', 'd']
    >>> parse_phonemes("tS;|'i55|n|_| th|'iE55|n|_|")
    ['tS;', 'i', 'n', 'th', 'iE', 'n']
    >>> parse_phonemes("h|'0|t b|'V|t#|3")
    ['h', '0', 't', 'b', 'V', 't#', '3']
    """
    out = []
    for word in _TAG.sub(" ", espeak_output).split():
        for sym in word.split("|"):
            sym = _TONE.sub("", sym.translate(_STRIP)).strip("_")
            if sym.strip(":"):  # a lone ':' or '::' is a short pause
                out.append(sym)
    return out


@lru_cache(maxsize=65536)
def phonemise(text: str, language: str) -> tuple[str, ...]:
    """The phonemes of ``text`` read in ``language`` (a manifest language code: zh, en, ...)."""
    from rrpo.data import espeak

    voice = voice_for(language)
    # upper-case words (LibriSpeech, AN4 transcripts) would be read as acronyms
    spoken = text.lower() if language == "en" else text
    return tuple(parse_phonemes(espeak.phonemes(spoken, voice, separator="|")))


class PhoneSet:
    """The symbols a model recognises; id 0 is the CTC blank, ids 1.. the phonemes."""

    BLANK = "<blank>"

    def __init__(self, symbols: Sequence[str]):
        symbols = list(symbols)
        if len(set(symbols)) != len(symbols):
            raise RrpoError("phone set has duplicate symbols")
        self.symbols = [self.BLANK] + [s for s in symbols if s != self.BLANK]
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def from_sequences(cls, seqs: Iterable[Sequence[str]]) -> PhoneSet:
        return cls(sorted({p for s in seqs for p in s}))

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, phones: Sequence[str]) -> list[int]:
        """Ids of ``phones``; symbols the set lacks are left out (counted by :meth:`unknown`)."""
        return [self.index[p] for p in phones if p in self.index]

    def unknown(self, phones: Sequence[str]) -> int:
        return sum(p not in self.index for p in phones)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.symbols[i] for i in ids if i != 0]


def edit_ops(ref: Sequence, hyp: Sequence) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of a minimum-cost alignment of ``hyp`` to ``ref``.

    Among alignments of equal cost the one with most substitutions is taken (ties broken alike
    everywhere, so the counts are reproducible).

    >>> edit_ops("abc", "abd")
    (1, 0, 0)
    >>> edit_ops("abc", "ac")
    (0, 1, 0)
    >>> edit_ops("", "xy")
    (0, 0, 2)
    """
    n, m = len(ref), len(hyp)
    # cell: (cost, -substitutions, deletions, insertions) compared lexicographically
    prev = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            c, s, d, ins = prev[j - 1]
            if ref[i - 1] == hyp[j - 1]:
                diag = (c, s, d, ins)
            else:
                diag = (c + 1, s - 1, d, ins)
            c, s, d, ins = prev[j]
            up = (c + 1, s, d + 1, ins)
            c, s, d, ins = cur[j - 1]
            left = (c + 1, s, d, ins + 1)
            cur.append(min(diag, up, left))
        prev = cur
    _, s, d, ins = prev[m]
    return -s, d, ins


def error_rate(ref: Sequence, hyp: Sequence) -> float:
    """(S + D + I) / len(ref); ``nan`` for an empty reference."""
    if not len(ref):
        return float("nan")
    return sum(edit_ops(ref, hyp)) / len(ref)
