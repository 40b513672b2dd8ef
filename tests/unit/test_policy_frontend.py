"""The text frontend (numbers, symbols, sentence splitting for zh and en), worked by hand, and its
use in SFT, optimisation prompts and generation alike (all go through TTSPolicy.encode_prompts)."""

from __future__ import annotations

import json

import pytest

from rrpo.policy.frontend import en_cardinal, en_ordinal, normalize, split_sentences, zh_cardinal


@pytest.mark.parametrize(
    "n,words",
    [
        (0, "零"),
        (10, "十"),
        (12, "十二"),
        (101, "一百零一"),
        (110, "一百一十"),
        (212, "二百一十二"),
        (1005, "一千零五"),
        (10086, "一万零八十六"),
        (120000, "十二万"),
        (1000001, "一百万零一"),
        (100000000, "一亿"),
        (200000010, "二亿零一十"),
    ],
)
def test_zh_cardinal_hand_worked(n, words):
    assert zh_cardinal(n) == words


@pytest.mark.parametrize(
    "n,words",
    [
        (0, "zero"),
        (13, "thirteen"),
        (105, "one hundred and five"),
        (1100, "one thousand, one hundred"),
        (2024, "two thousand and twenty-four"),
        (1000001, "one million and one"),
        (1234567, "one million, two hundred and thirty-four thousand, five hundred and sixty-seven"),
    ],
)
def test_en_cardinal_hand_worked(n, words):
    """inflect's spelling (what CosyVoice's English frontend feeds its LM); checked against
    inflect 7.6 on 0..2099 and 3,600 random numbers below 1e12 while writing it (all equal)."""
    assert en_cardinal(n) == words


def test_en_ordinal_hand_worked():
    assert [en_ordinal(n) for n in (1, 2, 3, 12, 20, 22, 100)] == [
        "first",
        "second",
        "third",
        "twelfth",
        "twentieth",
        "twenty-second",
        "one hundredth",
    ]


@pytest.mark.parametrize(
    "text,spoken",
    [
        ("今天是2024年5月1日，气温30°C，涨了12.5%！", "今天是二零二四年五月一日，气温三十摄氏度，涨了百分之十二点五！"),
        ("价格¥5或$3.5, 共-3个 (测试)", "价格五元或三点五美元，共负三个测试"),
        ("10:30出发，8:00到.", "十点三十分出发，八点到。"),
        ("我 爱 你 ＯＫ １２", "我爱你 OK 十二"),
        ("x²+y³=1", "x平方加y立方等于一"),
        ("<|endofprompt|>第1名[laughter]", "<|endofprompt|>第一名[laughter]"),
        ("一二三", "一二三"),
    ],
)
def test_normalize_zh(text, spoken):
    assert normalize(text, "zh") == spoken


@pytest.mark.parametrize(
    "text,spoken",
    [
        (
            "I was 1st of 2,024 runners, 50% faster & $1 richer.",
            "I was first of two thousand and twenty-four runners, fifty percent faster and one dollar richer.",
        ),
        (
            "It is -5.25°C at 10:30 or 9:05.",
            "It is minus five point two five degrees Celsius at ten thirty or nine oh five.",
        ),
        ("2+2=4 @home", "two plus two equals four at home"),
    ],
)
def test_normalize_en(text, spoken):
    assert normalize(text, "en") == spoken


def test_normalize_none_and_idempotent():
    assert normalize("第1名", "zh", "none") == "第1名"
    once = normalize("今天是2024年，涨了12.5%！", "zh")
    assert normalize(once, "zh") == once


def test_split_sentences_hand_worked():
    """zh, max 5, min_tail 2: the second sentence (12 characters) is cut at its comma and its first
    part (7) hard at 5; no neighbours fit together. max 8: sentences packed while they fit.
    en, max 6 words: the long sentence is cut at its comma; the short last one joins the piece
    before it (4 + 1 words)."""
    assert split_sentences("你好。今天天气很好，我们走吧。", "zh", max_tokens=5, min_tail=2) == [
        "你好。",
        "今天天气很",
        "好，",
        "我们走吧。",
    ]
    assert split_sentences("你好。今天好。我们走吧！再见。", "zh", max_tokens=8, min_tail=3) == [
        "你好。今天好。",
        "我们走吧！再见。",
    ]
    assert split_sentences(
        "Hello there. This is a long sentence, with a comma in it. Bye.", "en", max_tokens=6, min_tail=2
    ) == ["Hello there.", "This is a long sentence,", "with a comma in it. Bye."]
    assert split_sentences("短句。", "zh") == ["短句。"]


def test_sft_trains_on_normalised_text_and_the_policy_reads_digits(tmp_path):
    """A corpus whose text has digits: the character tokenizer holds the spelled-out characters
    (not the digits), and the trained policy reads '第1名' (SFT, optimisation and generation all
    encode through the same frontend). A policy folder without the key reads as 'none'."""
    from rrpo.config import load_config
    from rrpo.policy.io import load_policy
    from rrpo.policy.sft import SFTConfig, run_sft

    from tests.unit.policy_fixtures import make_corpus, sft_overrides

    texts = ["第1名到了", "我们走吧", "你好世界", "明天见"]
    make_corpus(tmp_path / "data", texts=texts)
    run_sft(load_config(SFTConfig, None, sft_overrides(tmp_path / "data", tmp_path / "run", steps=1)))
    pol = load_policy(tmp_path / "run")
    assert pol.text_frontend == "basic"
    assert "一" in pol.tokenizer.stoi and "1" not in pol.tokenizer.stoi
    pr = pol.encode_prompts(["第1名"], ["angry"], "zh", ["s1"])
    assert pr.content_lens.tolist() == [3]  # 第 一 名
    meta = json.loads((tmp_path / "run" / "policy" / "policy.json").read_text())
    meta["info"].pop("text_frontend")
    (tmp_path / "run" / "policy" / "policy.json").write_text(json.dumps(meta))
    old = load_policy(tmp_path / "run")
    assert old.text_frontend == "none"
    from rrpo.errors import RrpoError

    with pytest.raises(RrpoError, match="outside the policy's vocabulary: '1'"):
        old.encode_prompts(["第1名"], ["angry"], "zh", ["s1"])


def test_generate_splits_long_text_into_pieces(tmp_path):
    """max_text_tokens=4: '你好世界明天见' (7 characters, no punctuation) is cut hard into '你好世界'
    and '明天见' (the short tail cannot join: 7 > 4); one sample per piece, each record naming it."""
    from rrpo.policy.commands import GenerateConfig, run_generate
    from rrpo.policy.io import save_policy

    from tests.unit.test_policy import small_policy

    pol = small_policy()
    pol.info["text_frontend"] = "basic"
    save_policy(pol, tmp_path / "p")
    cfg = GenerateConfig(
        policy=str(tmp_path / "p"),
        texts=["你好世界明天见"],
        emotions=["angry"],
        out=str(tmp_path / "g"),
        device="cpu",
        max_text_tokens=4,
    )
    cfg.sampling.max_ratio = 2
    out = run_generate(cfg)
    rows = [json.loads(x) for x in (tmp_path / "g" / "tokens.jsonl").read_text().splitlines()]
    assert out["samples"] == 2 and [r["spoken"] for r in rows] == ["你好世界", "明天见"]
    assert [r["piece"] for r in rows] == [0, 1] and all(r["text"] == "你好世界明天见" for r in rows)
