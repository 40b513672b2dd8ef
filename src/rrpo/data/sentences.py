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
