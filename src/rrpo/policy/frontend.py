"""A minimal text frontend for zh and en: numbers and symbols spelled out, sentence splitting.

CosyVoice normalises text before its LM (WeTextProcessing / ttsfrd for zh, inflect for English
numbers) and cuts long text into pieces of at most 80 tokens. Neither normaliser installs offline
here (WeTextProcessing needs pynini and downloads its grammars), so rrpo carries this small,
documented one; it covers what reaches a TTS prompt most often and leaves everything else as is.

``normalize(text, "zh")``:

* full-width ASCII (``１２３ＡＢ``) to half-width; blanks between two CJK characters dropped, other
  runs of blanks to one space; brackets ``()（）【】[]《》""“”`` removed (their content kept);
* ``12.5%`` -> ``百分之十二点五`` (``-12.5%`` -> ``百分之负十二点五``); ``¥5`` / ``5元`` -> ``五元``; ``$5`` -> ``五美元``;
  ``30°C`` -> ``三十摄氏度``; ``x²``/``x³`` -> ``x平方``/``x立方``;
* a 4-digit number directly before ``年`` is read digit by digit (``2024年`` -> ``二零二四年``);
  numbers of more than 12 digits are read digit by digit; other integers as cardinals
  (``10086`` -> ``一万零八十六``, ``12`` -> ``十二``, ``212`` -> ``二百一十二``), decimals with ``点``
  and every decimal digit (``3.14`` -> ``三点一四``), a leading minus as ``负``;
* times ``H:MM`` -> ``H点MM分`` (``10:30`` -> ``十点三十分``, ``8:00`` -> ``八点``);
* ``+`` -> ``加``, ``&`` -> ``和``, ``=`` -> ``等于``, ``@`` -> ``艾特``; ASCII ``, ! ? ; :`` to
  ``， ！ ？ ； ：``, and ``.`` after a CJK character to ``。``.

``normalize(text, "en")``:

* the same width and blank handling; numbers as inflect spells them (``2024`` -> ``two thousand
  and twenty-four``, ``105`` -> ``one hundred and five``), decimals digit by digit after ``point``,
  ordinals ``1st 2nd 3rd 4th`` -> ``first second third fourth`` (any number), ``-5`` -> ``minus
  five``; times ``10:30`` -> ``ten thirty``, ``9:05`` -> ``nine oh five``, ``8:00`` -> ``eight``
  (years are not special-cased: ``1999`` is read as inflect reads it, as upstream does);
  ``50%`` -> ``fifty percent``; ``$5`` -> ``five dollars``; ``&`` -> ``and``, ``+`` ->
  ``plus``, ``=`` -> ``equals``, ``@`` -> ``at``; ``°C`` -> ``degrees Celsius``.

``split_sentences(text, language, max_tokens=80, count=...)`` cuts after sentence-final
punctuation (``。！？；.!?;`` and ``…``), packs consecutive sentences into pieces of at most
``max_tokens`` (``count`` gives a piece's token count: the policy's tokenizer; default one per
character for zh, one per word for en), cuts a sentence that alone is too long at commas and then
hard at ``max_tokens``, and merges a last piece shorter than ``min_tail`` tokens into the one before
when the two fit together. Text inside ``<|...|>`` or ``[...]`` tags is left alone by both.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

FRONTENDS = ("basic", "none")

_ZH_DIGITS = "零一二三四五六七八九"
_ZH_UNITS = ["", "十", "百", "千"]
_ZH_BIG = ["", "万", "亿"]
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TAG = re.compile(r"(<\|[^|]*\|>|\[[a-z_\-]+\])")


def _zh_under_10000(n: int, leading: bool) -> str:
    """0 < n < 10000. Example: 1005 -> 一千零五, 10 -> 十 (when leading), 10 -> 一十 (inside)."""
    digits = [int(c) for c in f"{n:04d}"]
    out, zero = [], False
    started = False
    for i, d in enumerate(digits):
        unit = _ZH_UNITS[3 - i]
        if d == 0:
            if started:
                zero = True
            continue
        if zero:
            out.append("零")
            zero = False
        if not started and leading and d == 1 and unit == "十":
            out.append("十")
        else:
            out.append(_ZH_DIGITS[d] + unit)
        started = True
    return "".join(out)


def zh_cardinal(n: int) -> str:
    """Chinese reading of an integer. Examples: 0 -> 零, 12 -> 十二, 212 -> 二百一十二, 10086 ->
    一万零八十六, 100000000 -> 一亿, 1000001 -> 一百万零一."""
    if n == 0:
        return "零"
    groups = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    out, zero = [], False
    for i in range(len(groups) - 1, -1, -1):
        g = groups[i]
        if g == 0:
            zero = True
            continue
        leading = i == len(groups) - 1
        if not leading and (zero or g < 1000):
            out.append("零")
        out.append(_zh_under_10000(g, leading) + _ZH_BIG[i])
        zero = False
    return "".join(out)


def _zh_digits(s: str) -> str:
    return "".join(_ZH_DIGITS[int(c)] for c in s)


def _zh_number(sign: str, whole: str, frac: str | None) -> str:
    body = _zh_digits(whole) if len(whole) > 12 else zh_cardinal(int(whole))
    if frac:
        body += "点" + _zh_digits(frac)
    return ("负" if sign else "") + body


_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ["", " thousand", " million", " billion", " trillion"]


def _en_under_1000(n: int) -> str:
    h, r = divmod(n, 100)
    parts = []
    if h:
        parts.append(_ONES[h] + " hundred")
    if r:
        t = _ONES[r] if r < 20 else _TENS[r // 10] + ("-" + _ONES[r % 10] if r % 10 else "")
        parts.append(("and " if h else "") + t)
    return " ".join(parts)


def en_cardinal(n: int) -> str:
    """English cardinal as inflect writes it. Examples: 0 -> zero, 105 -> one hundred and five,
    2024 -> two thousand and twenty-four, 1100 -> one thousand, one hundred, 1000001 -> one million
    and one."""
    if n == 0:
        return "zero"
    groups = []
    while n:
        groups.append(n % 1000)
        n //= 1000
    if len(groups) > len(_SCALES):
        return " ".join(_ONES[int(c)] for c in str(sum(g * 1000**i for i, g in enumerate(groups))))
    words = [_en_under_1000(g) + _SCALES[i] for i, g in reversed(list(enumerate(groups))) if g]
    if len(words) > 1 and 0 < groups[0] < 100:
        last = words.pop()
        return ", ".join(words) + " and " + last.replace("and ", "")
    return ", ".join(words)


_ORD = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def en_ordinal(n: int) -> str:
    """Examples: 1 -> first, 22 -> twenty-second, 100 -> one hundredth."""
    words = en_cardinal(n)
    m = re.search(r"([a-z]+)$", words)
    last = m.group(1)
    if last in _ORD:
        new = _ORD[last]
    elif last.endswith("y"):
        new = last[:-1] + "ieth"
    else:
        new = last + "th"
    return words[: m.start(1)] + new


def _en_number(sign: str, whole: str, frac: str | None) -> str:
    body = " ".join(_ONES[int(c)] for c in whole) if len(whole) > 15 else en_cardinal(int(whole))
    if frac:
        body += " point " + " ".join(_ONES[int(c)] for c in frac)
    return ("minus " if sign else "") + body


def _common(text: str) -> str:
    out = []
    for ch in text:
        if "\uff01" <= ch <= "\uff5e" and (ch.isalnum() or ch in "％＋＆＝＠＄．"):
            ch = unicodedata.normalize("NFKC", ch)
        out.append(ch)
    text = "".join(out)
    text = re.sub(r"[()（）【】\[\]《》\"“”]", "", text)
    text = re.sub(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])", "", text)
    return re.sub(r"\s+", " ", text).strip()


_NUM = r"(?P<sign>(?<![0-9A-Za-z.])-)?(?P<whole>\d+)(?:\.(?P<frac>\d+))?"


def _zh(text: str) -> str:
    text = text.replace("²", "平方").replace("³", "立方")
    text = re.sub(r"(?<!\d)(?P<y>\d{4})(?=年)", lambda m: _zh_digits(m.group("y")), text)
    num = lambda m: _zh_number(m.group("sign"), m.group("whole"), m.group("frac"))  # noqa: E731
    text = re.sub(
        r"(?<!\d)(\d{1,2}):(\d{2})(?!\d)",
        lambda m: (
            zh_cardinal(int(m.group(1))) + "点" + (zh_cardinal(int(m.group(2))) + "分" if int(m.group(2)) else "")
        ),
        text,
    )
    text = re.sub(_NUM + r"\s*%", lambda m: "百分之" + num(m), text)
    text = re.sub(r"\$\s*" + _NUM, lambda m: num(m) + "美元", text)
    text = re.sub(r"[¥￥]\s*" + _NUM, lambda m: num(m) + "元", text)
    text = re.sub(_NUM + r"\s*°C", lambda m: num(m) + "摄氏度", text)
    text = re.sub(_NUM, num, text)
    for a, b in (
        ("+", "加"),
        ("&", "和"),
        ("=", "等于"),
        ("@", "艾特"),
        (",", "，"),
        ("!", "！"),
        ("?", "？"),
        (";", "；"),
        (":", "："),
    ):
        text = text.replace(a, b)
    text = re.sub(rf"(?<=[{_CJK}])\.", "。", text)
    return re.sub(r"\s*([，。！？；：、])\s*", r"\1", text)


def _en(text: str) -> str:
    text = re.sub(r"(?<![\w.])(\d+)(st|nd|rd|th)\b", lambda m: en_ordinal(int(m.group(1))), text)
    num = lambda m: _en_number(m.group("sign"), m.group("whole"), m.group("frac"))  # noqa: E731
    text = re.sub(
        r"(?<!\d)(\d{1,2}):(\d{2})(?!\d)",
        lambda m: (
            en_cardinal(int(m.group(1)))
            + (
                ""
                if m.group(2) == "00"
                else " oh " + _ONES[int(m.group(2))]
                if m.group(2)[0] == "0"
                else " " + en_cardinal(int(m.group(2)))
            )
        ),
        text,
    )
    text = re.sub(_NUM + r"\s*%", lambda m: num(m) + " percent", text)
    text = re.sub(
        r"\$\s*" + _NUM,
        lambda m: num(m) + (" dollar" if m.group("whole") == "1" and not m.group("frac") else " dollars"),
        text,
    )
    text = re.sub(_NUM + r"\s*°C", lambda m: num(m) + " degrees Celsius", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    text = re.sub(_NUM, num, text)
    for a, b in (("&", " and "), ("+", " plus "), ("=", " equals "), ("@", " at ")):
        text = text.replace(a, b)
    return re.sub(r"\s+", " ", text).strip()


def normalize(text: str, language: str, frontend: str = "basic") -> str:
    """Spell out numbers and symbols (see the module docstring); ``frontend="none"`` returns
    ``text`` unchanged. Tags (``<|...|>``, ``[laughter]``) pass through untouched."""
    if frontend == "none" or not text:
        return text
    if frontend not in FRONTENDS:
        raise ValueError(f"unknown text frontend {frontend!r}")
    fn = _zh if language == "zh" else _en
    parts = _TAG.split(text)
    return "".join(p if i % 2 else fn(_common(p)) for i, p in enumerate(parts)).strip()


_END = re.compile(r"(?<=[。！？；.!?;…])(?![。！？；.!?;…”’\"'）)])")


def _default_count(language: str) -> Callable[[str], int]:
    if language == "zh":
        return lambda s: len(s.replace(" ", ""))
    return lambda s: len(s.split())


def split_sentences(
    text: str, language: str, max_tokens: int = 80, count: Callable[[str], int] | None = None, min_tail: int = 20
) -> list[str]:
    """Pieces of ``text`` of at most ``max_tokens`` tokens each, cut at sentence ends (see the
    module docstring). Example (zh, max 5, min_tail 2): ``"你好。今天天气很好，我们走吧。"`` ->
    ``["你好。", "今天天气很", "好，", "我们走吧。"]``: the second sentence (12 characters) is cut at
    its comma, its first part (7) hard at 5; no two neighbours fit together in 5."""
    count = count or _default_count(language)
    sep = "" if language == "zh" else " "
    sentences = [s.strip() for s in _END.split(text) if s.strip()]
    units: list[str] = []
    for s in sentences:
        if count(s) <= max_tokens:
            units.append(s)
            continue
        for c in [c for c in re.split(r"(?<=[，,、])", s) if c.strip()]:
            c = c.strip()
            while count(c) > max_tokens:
                cut = _hard_cut(c, max_tokens, count, language)
                units.append(c[:cut].strip())
                c = c[cut:].strip()
            if c:
                units.append(c)
    pieces: list[str] = []
    for u in units:
        if pieces and count(pieces[-1] + sep + u) <= max_tokens:
            pieces[-1] = pieces[-1] + sep + u
        else:
            pieces.append(u)
    if len(pieces) > 1 and count(pieces[-1]) < min_tail and count(pieces[-2] + sep + pieces[-1]) <= max_tokens:
        pieces[-2:] = [pieces[-2] + sep + pieces[-1]]
    return pieces


def _hard_cut(s: str, max_tokens: int, count, language: str) -> int:
    """Largest prefix length of ``s`` with at most ``max_tokens`` tokens (at a word end for en)."""
    lo, hi = 1, len(s)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(s[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    if language != "zh":
        space = s.rfind(" ", 0, lo + 1)
        if space > 0:
            return space
    return lo
