"""English and Chinese labels for the model's comparisons and levels, as explanations show them.

Levels are keyed by (comparison, the level's ``label_for_charts`` in the model file): a level the
model gains without a row here has no Chinese label, and ``tests/test_waterfall_offline.py`` fails
until one is added. The null level of every comparison reads "missing on one or both records".
"""

from __future__ import annotations

from typing import NamedTuple


class Label(NamedTuple):
    en: str
    zh: str


COMPARISONS: dict[str, Label] = {
    "id": Label("ID number", "身份证号"),
    "name": Label("name", "姓名"),
    "dob": Label("birth date", "出生日期"),
    "sex": Label("sex", "性别"),
    "phone": Label("phone", "电话"),
    "address": Label("address", "地址"),
}

PRIOR = Label("prior: two records picked at random are one person", "先验：随机两条记录为同一人")
NULL_LEVEL = Label("missing on one or both records", "一方或双方缺失")
ELSE = "All other comparisons"  # Splink's label of every comparison's last level

LEVELS: dict[tuple[str, str], Label] = {
    ("id", "same valid ID number"): Label("same valid ID number", "身份证号相同且有效"),
    ("id", "same ID body (check character or form differs)"):
        Label("same ID body (check character or form differs)", "身份证号前17位相同（校验位或新旧版式不同）"),
    ("id", "two different valid ID numbers"): Label("two different valid ID numbers", "两个不同的有效身份证号"),
    ("id", "one digit differs"): Label("one digit differs", "身份证号有一位数字不同"),
    ("id", "adjacent digits transposed"):
        Label("adjacent digits transposed", "身份证号相邻两位颠倒"),
    ("id", ELSE): Label("ID numbers differ", "身份证号不同"),
    ("name", "same name"): Label("same name", "姓名相同"),
    ("name", "same pinyin (homophone)"): Label("same pinyin (homophone)", "姓名拼音相同（同音字）"),
    ("name", "same surname, given name one character apart"):
        Label("same surname, given name one character apart", "姓相同，名字差一个字"),
    ("name", "same surname, similar given-name pinyin"):
        Label("same surname, similar given-name pinyin", "姓相同，名字拼音相近"),
    ("name", ELSE): Label("names differ", "姓名不同"),
    ("dob", "same birth date"): Label("same birth date", "出生日期相同"),
    ("dob", "day and month swapped"): Label("day and month swapped", "出生日期的月、日颠倒"),
    ("dob", "within one day"): Label("within one day", "出生日期相差不超过一天"),
    ("dob", "same year and month"): Label("same year and month", "出生年月相同"),
    ("dob", "birth date is the other's lunar date"):
        Label("birth date is the other's lunar date", "一方为农历生日"),
    ("dob", "lunar/solar offset"): Label("birth date is the other's lunar date", "一方为农历生日"),
    ("dob", "one digit differs"): Label("one digit of the birth date differs", "出生日期一位数字不同"),
    ("dob", "one digit of the birth date differs"):
        Label("one digit of the birth date differs", "出生日期一位数字不同"),
    ("dob", "one digit of the date differs"): Label("one digit of the birth date differs", "出生日期一位数字不同"),
    ("dob", "within a week"): Label("within a week", "出生日期相差不超过一周"),
    ("dob", "same year, one a year-only placeholder date"):
        Label("same year, one a year-only placeholder date (1 January or 1 July)",
              "同年，一方为只知年份的占位日期（1月1日或7月1日）"),
    ("dob", ELSE): Label("birth dates differ", "出生日期不同"),
    ("sex", "Exact match on sex"): Label("same sex", "性别相同"),
    ("sex", ELSE): Label("sex differs", "性别不同"),
    ("phone", "Exact match on phone"): Label("same phone number", "电话号码相同"),
    ("phone", ELSE): Label("phone numbers differ", "电话号码不同"),
    ("address", "same house"): Label("same house", "同一门牌地址"),
    ("address", "same village or community"): Label("same village or community", "同一村（社区）"),
    ("address", ELSE): Label("different villages or communities", "不同村（社区）"),
}


def comparison_label(comparison: str) -> Label:
    """The comparison's name in both languages (the name itself when it has no entry)."""
    return COMPARISONS.get(comparison, Label(comparison, comparison))


def level_label(comparison: str, level: dict) -> Label | None:
    """Both labels of a level of the model file (a ``comparison_levels`` entry), None when missing."""
    if level.get("is_null_level"):
        return NULL_LEVEL
    return LEVELS.get((comparison, level.get("label_for_charts") or ""))


def unlabelled_levels(settings: dict) -> list[tuple[str, str]]:
    """(comparison, label_for_charts) of every level of the model with no labels here."""
    return [(c["output_column_name"], lv.get("label_for_charts") or lv.get("sql_condition") or "?")
            for c in settings["comparisons"] for lv in c["comparison_levels"]
            if level_label(c["output_column_name"], lv) is None]
