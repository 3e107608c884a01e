"""Address text as callers say and type it, made comparable with gazetteer names.

`clean` turns raw input into one canonical form (half-width, simplified, lower-case ASCII,
Chinese numerals in house numbers as digits, noise words and punctuation as blanks).
`split_house_part` sets the building / unit / floor / room tail aside; `core_names` gives
the place name a gazetteer address point or a confirmed case is remembered by.
"""
from __future__ import annotations

import re
import unicodedata

# Words that place the problem *near* something; they say nothing about which place.
NOISE = ("附近的", "附近", "旁边", "对面", "门口", "路口处", "这边", "那边", "周边", "一带", "隔壁",
         "楼下", "里面", "外面", "后面", "前面", "斜对面", "交汇处", "交叉口", "交界处", "十字路口")
_NOISE_RE = re.compile("|".join(sorted(map(re.escape, NOISE), key=len, reverse=True)))

_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
           "八": 8, "九": 9}
_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_NUMBER = "零〇一二两三四五六七八九十百千"
# A Chinese numeral directly before a house-number word; names such as 梅林一村 or 二期 stay as they are.
_CN_HOUSE_RE = re.compile(f"[{_CN_NUMBER}]+(?=号|栋|幢|座|层|楼|单元|室|弄|巷)")

# Where the place name ends and the building part begins: "5栋", "C座", "一期", "第6层", "(南区)".
HOUSE_PART_RE = re.compile(
    r"(?:第?[0-9a-z][0-9a-z\-]*|[一二三四五六七八九十]+)(?:期|栋|幢|座|号楼|号院|号|单元|层|楼|室|区|组团|街坊|坊)"
    r"|第[0-9一二三四五六七八九十]|[(\[]|\s")
# Generic endings of estate names; "金海燕花园" is also known as "金海燕".
GENERIC_SUFFIXES = ("住宅小区", "住宅区", "生活区", "花园", "小区", "家园", "大厦", "公寓", "广场", "新村", "大院",
                    "山庄", "花苑")
_ALLOWED = re.compile(r"[^0-9a-z\u3400-\u4dbf\u4e00-\u9fff\-#(]+")


def chinese_numeral(text: str) -> int:
    """一千零八 → 1008, 三十八 → 38, 一二三 → 123 (digit by digit when no unit words)."""
    if not any(ch in _UNITS for ch in text):
        return int("".join(str(_DIGITS[ch]) for ch in text))
    total, digit = 0, 0
    for ch in text:
        if ch in _UNITS:
            total += (digit or 1) * _UNITS[ch]
            digit = 0
        else:
            digit = _DIGITS[ch]
    return total + digit


class Cleaner:
    """Canonical form of address text; `to_simplified` is a str.translate table (traditional → simplified)."""

    def __init__(self, to_simplified: dict[int, str]) -> None:
        self.to_simplified = to_simplified

    def clean(self, text: str) -> str:
        text = unicodedata.normalize("NFKC", text).lower().translate(self.to_simplified)
        text = _CN_HOUSE_RE.sub(lambda m: str(chinese_numeral(m.group())), text)
        text = _NOISE_RE.sub(" ", text)
        # "(" survives as the start of a house part; anything else not a letter, digit or Han is a blank
        return " ".join(_ALLOWED.sub(" ", text.replace("[", "(")).split())


def split_house_part(name_text: str) -> tuple[str, str]:
    """("金海燕花园", "4栋1单元4层4d") from "金海燕花园4栋1单元4层4d"."""
    m = HOUSE_PART_RE.search(name_text)
    if m is None:
        return name_text, ""
    return name_text[:m.start()], name_text[m.start():]


def core_names(name_text: str) -> list[str]:
    """The names an estate is remembered by: its full name, the part up to a generic ending
    inside it (中山颐景花园景C座 → 中山颐景花园), and either without the generic ending when
    enough is left to be distinctive (three characters or more)."""
    core, _ = split_house_part(name_text)
    core = core.strip(" -#")
    half = len(core) // 2
    if len(core) % 2 == 0 and core[:half] == core[half:]:   # "景苑大厦景苑大厦": building named as its estate
        core = core[:half]
    if len(core) < 3 or any(core.endswith(g) and len(core) - len(g) < 2 for g in GENERIC_SUFFIXES):
        return []   # too short, or a generic ending with one character before it (安花园): a cut in the wrong place
    names = [core]
    for suffix in GENERIC_SUFFIXES:
        at = core.find(suffix)
        if at < 0:
            continue
        head = core[: at + len(suffix)]
        if head != core and len(head) >= 4:
            names.append(head)
        if at >= 3:
            names.append(core[:at])
        break
    return names
