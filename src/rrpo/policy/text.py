"""Text side of the policy: emotion instructions and the two text tokenizers.

The policy reads ``instruction + "<|endofprompt|>" + text`` through one text embedding, as
CosyVoice2's instruct mode does. Two tokenizers produce those ids:

- :class:`CharTokenizer` (the tiny default): one id per character seen in the training
  manifests and the instructions, plus ``<pad>`` (0) and ``<|endofprompt|>`` (1). A character it
  has not seen is an input error (one line naming the characters), never a silent ``<unk>``.
- :class:`QwenTextTokenizer`: the Qwen2 BPE tokenizer a CosyVoice2 directory ships under
  ``CosyVoice-BlankEN/``, with the special tokens CosyVoice2 adds to it (``<|endofprompt|>``,
  ``[breath]``, ...), in CosyVoice2's order so the ids match the checkpoint's embedding rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from rrpo.errors import RrpoError
from rrpo.io import write_json

ENDOFPROMPT = "<|endofprompt|>"

#: emotion -> instruction text, per language (CosyVoice2 instruct style).
INSTRUCTIONS: dict[str, dict[str, str]] = {
    "zh": {
        "neutral": "请用平静的语气说。",
        "happy": "请用开心的语气说。",
        "angry": "请用生气的语气说。",
        "sad": "请用伤心的语气说。",
        "surprise": "请用惊讶的语气说。",
        "fear": "请用害怕的语气说。",
        "disgust": "请用厌恶的语气说。",
        "calm": "请用平和的语气说。",
    },
    "en": {
        "neutral": "Speak in a neutral tone.",
        "happy": "Speak happily.",
        "angry": "Speak angrily.",
        "sad": "Speak sadly.",
        "surprise": "Speak with surprise.",
        "fear": "Speak fearfully.",
        "disgust": "Speak with disgust.",
        "calm": "Speak calmly.",
    },
    "pl": {
        "neutral": "Mów neutralnym tonem.",
        "happy": "Mów radośnie.",
        "angry": "Mów ze złością.",
        "sad": "Mów smutno.",
        "surprise": "Mów ze zdziwieniem.",
        "fear": "Mów ze strachem.",
        "disgust": "Mów z obrzydzeniem.",
        "calm": "Mów spokojnie.",
    },
}

#: The special tokens CosyVoice2's QwenTokenizer adds, in its order (their ids depend on it).
COSYVOICE2_SPECIAL_TOKENS = [
    "<|im_start|>",
    "<|im_end|>",
    ENDOFPROMPT,
    "[breath]",
    "<strong>",
    "</strong>",
    "[noise]",
    "[laughter]",
    "[cough]",
    "[clucking]",
    "[accent]",
    "[quick_breath]",
    "<laughter>",
    "</laughter>",
    "[hissing]",
    "[sigh]",
    "[vocalized-noise]",
    "[lipsmack]",
    "[mn]",
]


def instruction_for(emotion: str, language: str, emotions: Iterable[str] | None = None) -> str:
    """The instruction text for ``emotion`` in ``language``; ``emotions`` (if given) are the ones
    the policy was trained on, and any other emotion is an input error."""
    if emotions is not None:
        emotions = list(emotions)
        if emotion not in emotions:
            raise RrpoError(f"the policy was not trained on emotion '{emotion}' (it knows: {', '.join(emotions)})")
    table = INSTRUCTIONS.get(language)
    if table is None:
        raise RrpoError(f"no emotion instructions for language '{language}' (known: {', '.join(INSTRUCTIONS)})")
    if emotion not in table:
        raise RrpoError(f"no instruction for emotion '{emotion}' (known: {', '.join(table)})")
    return table[emotion]


class TextTokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (may contain ``<|endofprompt|>``); RrpoError on unknown characters."""
        ...

    def save(self, folder: str | os.PathLike) -> None: ...


class CharTokenizer:
    """One id per character. ``<pad>`` = 0, ``<|endofprompt|>`` = 1, characters from 2 on.

    Example: built from ``["ab", "ba"]`` the vocabulary is ``<pad>, <|endofprompt|>, a, b`` and
    ``encode("b<|endofprompt|>a") == [3, 1, 2]``.
    """

    FILE = "text_tokenizer.json"
    SPECIALS = ("<pad>", ENDOFPROMPT)

    def __init__(self, chars: Iterable[str]):
        chars = [c for c in chars if c not in self.SPECIALS]
        self.itos = list(self.SPECIALS) + sorted(set(chars))
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.vocab_size = len(self.itos)

    @classmethod
    def build(cls, texts: Iterable[str]) -> CharTokenizer:
        chars: set[str] = set()
        for t in texts:
            chars.update(t.replace(ENDOFPROMPT, ""))
        return cls(chars)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        unknown: list[str] = []
        parts = text.split(ENDOFPROMPT)
        for n, part in enumerate(parts):
            if n:
                ids.append(self.stoi[ENDOFPROMPT])
            for c in part:
                i = self.stoi.get(c)
                if i is None:
                    if c not in unknown:
                        unknown.append(c)
                else:
                    ids.append(i)
        if unknown:
            shown = "".join(unknown[:20])
            raise RrpoError(
                f"text has {len(unknown)} character(s) outside the policy's vocabulary: {shown!r} (in {text!r})"
            )
        return ids

    def save(self, folder: str | os.PathLike) -> None:
        write_json(Path(folder) / self.FILE, {"kind": "char", "itos": self.itos})

    @classmethod
    def load(cls, folder: str | os.PathLike) -> CharTokenizer:
        path = Path(folder) / cls.FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            itos = data["itos"]
        except FileNotFoundError:
            raise RrpoError("policy folder has no text tokenizer", path) from None
        except (ValueError, KeyError, TypeError):
            raise RrpoError("not a readable text tokenizer file", path) from None
        if list(itos[:2]) != list(cls.SPECIALS):
            raise RrpoError("text tokenizer file does not start with <pad>, <|endofprompt|>", path)
        tok = cls(itos[2:])
        if tok.itos != itos:
            raise RrpoError("text tokenizer file is not sorted and unique", path)
        return tok


class QwenTextTokenizer:
    """The Qwen2 tokenizer of a CosyVoice2 directory, with CosyVoice2's special tokens added."""

    def __init__(self, path: str | os.PathLike):
        try:
            from transformers import AutoTokenizer

            self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise RrpoError(f"cannot read the Qwen tokenizer ({' '.join(str(e).split())[:200]})", path) from None
        self.tok.add_special_tokens(
            {
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "additional_special_tokens": COSYVOICE2_SPECIAL_TOKENS,
            }
        )
        self.path = Path(path)
        self.vocab_size = len(self.tok)

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def save(self, folder: str | os.PathLike) -> None:  # the tokenizer stays in the CosyVoice2 folder
        pass
