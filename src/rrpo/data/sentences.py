"""Built-in sentences for the synthetic corpus, written for this project.

Neutral content on purpose (no word carries an emotion), so that only the prosody tells the
emotions apart. Every sentence is spoken in every emotion by every voice (a parallel corpus).
The two lists are independent of each other; both are plain statements of everyday facts.
"""

from __future__ import annotations

SENTENCES: dict[str, tuple[str, ...]] = {
    "zh": (
        "图书馆每天早上九点开门。",
        "她把蓝色的文件夹放在桌子上。",
        "我们星期六坐火车去海边。",
        "这份报告要在月底之前交。",
        "他哥哥在一家小店里修自行车。",
        "会议改到了二楼的会议室。",
        "长桌子旁边放着七把椅子。",
        "我把雨伞忘在车的后座上了。",
        "公共汽车就停在面包店门口。",
        "去年夏天他们把围墙刷成了白色。",
        "这条河从老磨坊和石桥旁边流过。",
        "请在邮局关门以前把信寄出去。",
        "七月的花园需要隔一天浇一次水。",
        "我的邻居养了三只猫和一只小狗。",
        "博物馆每个月的第一个星期一闭馆。",
        "他午饭点了一碗汤和两个馒头。",
        "书桌上的台灯用的是黄色的灯泡。",
        "我们的航班中午从十二号登机口出发。",
        "孩子们沿着河边走路去上学。",
        "这家商店卖纸、笔和信封。",
        "她每天早上用手机看新闻。",
        "走廊里的钟慢了五分钟。",
        "我们在墙边种了西红柿和豆角。",
        "新修的公路绕着城市的边上走。",
        "他把工具放在一个木头箱子里。",
        "卧室的窗户朝着大街。",
        "包裹到了以后我给你打电话。",
        "天气预报说明天是阴天。",
        "他们搬到了车站附近的一套房子里。",
        "短暂休息以后讲座继续进行。",
        "墙上挂着一张城市地图。",
        "晚饭大概二十分钟以后就好。",
    ),
    "en": (
        "The library opens at nine on weekday mornings.",
        "She put the blue folder on the kitchen table.",
        "We will take the train to the coast on Saturday.",
        "The report is due at the end of the month.",
        "His brother repairs old bicycles in a small shop.",
        "The meeting has been moved to the second floor.",
        "There are seven chairs around the long table.",
        "I left my umbrella in the back of the car.",
        "The bus stops right in front of the bakery.",
        "They painted the fence white last summer.",
        "The river runs past the old mill and the bridge.",
        "Please send the letter before the post office closes.",
        "The garden needs water every other day in July.",
        "My neighbour keeps three cats and a small dog.",
        "The museum is closed on the first Monday of each month.",
        "He ordered soup and bread for lunch.",
        "The lamp on the desk uses a yellow bulb.",
        "Our flight leaves from gate twelve at noon.",
        "The children walk to school along the canal.",
        "The shop sells paper, pens and envelopes.",
        "She reads the news on her phone every morning.",
        "The clock in the hall is five minutes slow.",
        "We planted tomatoes and beans near the wall.",
        "The new road goes around the edge of the town.",
        "He keeps his tools in a wooden box.",
        "The window in the bedroom faces the street.",
        "I will call you when the package arrives.",
        "The forecast says it will be cloudy tomorrow.",
        "They moved into a flat near the station.",
        "The lecture starts after the short break.",
        "There is a map of the city on the wall.",
        "Dinner will be ready in about twenty minutes.",
    ),
}


def count_syllables(text: str, language: str) -> int:
    """Syllables in ``text``: Han characters for Mandarin (one syllable each), vowel groups for
    English (a rough count, but the same for a sentence in every emotion, which is what rate
    comparisons need)."""
    if language == "zh":
        return sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    import re

    n = 0
    for word in re.findall(r"[a-z]+", text.lower()):
        groups = re.findall(r"[aeiouy]+", word)
        k = len(groups)
        if word.endswith("e") and k > 1 and not word.endswith(("le", "ee")):
            k -= 1  # silent final e: "stone", "white"
        n += max(1, k)
    return n


# ------------------------------------------------------------------------------------------------
# Generated sentences: a small seeded grammar per language for corpora far larger than the lists
# above. Same rule as the lists: everyday statements, no word that carries an emotion.

#: (subject, when, place, verb phrase, object) slots per language; a sentence joins one choice of
#: each (when and place may be left out) by the language's template (:func:`_join`).
GRAMMAR: dict[str, dict[str, tuple[str, ...]]] = {
    "zh": {
        "subject": (
            "我",
            "他",
            "她",
            "我们",
            "他们",
            "我的邻居",
            "她的哥哥",
            "他的妹妹",
            "老师",
            "司机",
            "店员",
            "我的同事",
            "那位医生",
            "小王",
            "李师傅",
            "张老师",
            "孩子们",
            "楼下的大爷",
            "我的朋友",
            "新来的学生",
        ),
        "when": (
            "今天上午",
            "昨天下午",
            "星期一",
            "星期三晚上",
            "周末",
            "上个月",
            "前天",
            "早上八点",
            "中午",
            "下班以后",
            "春天的时候",
            "去年冬天",
            "每个星期五",
            "吃完饭以后",
            "开会之前",
        ),
        "place": (
            "在车站旁边",
            "在图书馆里",
            "在商店门口",
            "在厨房里",
            "在公园东边",
            "在二楼的办公室",
            "在市场上",
            "在学校对面",
            "在银行附近",
            "在河边",
            "在院子里",
            "在邮局",
            "在会议室",
            "在小区门口",
            "在书店里",
        ),
        "verb": (
            "买了",
            "看到了",
            "找到了",
            "带回了",
            "借来了",
            "搬走了",
            "放好了",
            "洗干净了",
            "拿出了",
            "收到了",
            "修好了",
            "整理了",
        ),
        "object": (
            "一把木头椅子",
            "两本旧书",
            "一张城市地图",
            "一个蓝色的杯子",
            "三个信封",
            "一台旧电脑",
            "一辆自行车",
            "几支铅笔",
            "一盏台灯",
            "一块手表",
            "一个纸箱",
            "两双鞋",
            "一条围巾",
            "一把雨伞",
            "一袋大米",
            "几个苹果",
            "一张桌子",
            "一件外套",
            "一本日历",
            "一个背包",
            "两把钥匙",
            "一盒茶叶",
            "一个花盆",
            "三张照片",
            "一份报纸",
        ),
    },
    "en": {
        "subject": (
            "I",
            "He",
            "She",
            "We",
            "They",
            "My neighbour",
            "Her brother",
            "His sister",
            "The teacher",
            "The driver",
            "The clerk",
            "My colleague",
            "The doctor",
            "Our friend",
            "The student",
            "The old man next door",
            "Her cousin",
            "The new tenant",
            "The postman",
            "My uncle",
        ),
        "when": (
            "this morning",
            "yesterday afternoon",
            "on Monday",
            "on Wednesday evening",
            "at the weekend",
            "last month",
            "two days ago",
            "at eight o'clock",
            "at noon",
            "after work",
            "in the spring",
            "last winter",
            "every Friday",
            "after lunch",
            "before the meeting",
        ),
        "place": (
            "near the station",
            "in the library",
            "outside the shop",
            "in the kitchen",
            "in the park",
            "in the office upstairs",
            "at the market",
            "across from the school",
            "near the bank",
            "by the river",
            "in the yard",
            "at the post office",
            "in the meeting room",
            "at the front gate",
            "in the bookshop",
        ),
        "verb": (
            "bought",
            "saw",
            "found",
            "brought home",
            "borrowed",
            "moved",
            "put away",
            "cleaned",
            "took out",
            "received",
            "fixed",
            "sorted",
        ),
        "object": (
            "a wooden chair",
            "two old books",
            "a map of the city",
            "a blue cup",
            "three envelopes",
            "an old computer",
            "a bicycle",
            "some pencils",
            "a desk lamp",
            "a watch",
            "a cardboard box",
            "two pairs of shoes",
            "a scarf",
            "an umbrella",
            "a bag of rice",
            "a few apples",
            "a table",
            "a coat",
            "a calendar",
            "a backpack",
            "two keys",
            "a box of tea",
            "a flower pot",
            "three photos",
            "a newspaper",
        ),
    },
}


def _join(language: str, subject: str, when: str, place: str, verb: str, obj: str) -> str:
    """One sentence from its slots ('' = slot left out)."""
    if language == "zh":
        return f"{when}{subject}{place}{verb}{obj}。"
    words = [subject, verb, obj, place, when]
    return " ".join(w for w in words if w) + "."


def grammar_size(language: str) -> int:
    """How many distinct sentences :func:`generate_sentences` can make for ``language``."""
    g = GRAMMAR[language]
    return len(g["subject"]) * (len(g["when"]) + 1) * (len(g["place"]) + 1) * len(g["verb"]) * len(g["object"])


def generate_sentences(language: str, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences of ``language`` from :data:`GRAMMAR`, reproducibly.

    Sentence ``i`` is the ``i``-th distinct draw of a generator seeded by ``(seed, language)``, so the
    first ``k`` sentences of ``n`` are those of ``k`` (a bigger corpus extends a smaller one). Each
    slot is drawn uniformly; ``when`` and ``place`` are left out with probability 1/(size + 1)."""
    import hashlib

    import numpy as np

    from rrpo.errors import RrpoError

    if language not in GRAMMAR:
        raise RrpoError(f"no sentence grammar for language '{language}' (known: {', '.join(GRAMMAR)})")
    cap = grammar_size(language)
    if not 0 <= n <= cap // 2:
        raise RrpoError(
            f"asked for {n} generated {language} sentences; the grammar makes at most {cap // 2} "
            "without long searches for unused ones"
        )
    g = GRAMMAR[language]
    digest = hashlib.sha256(f"{seed}\x1fsentences\x1f{language}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        pick = {k: ("",) + v if k in ("when", "place") else v for k, v in g.items()}
        s = _join(
            language,
            *(pick[k][int(rng.integers(len(pick[k])))] for k in ("subject", "when", "place", "verb", "object")),
        )
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
