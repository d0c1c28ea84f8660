"""Person names: normalize for display, build matching keys, flag placeholders.

The legal name stays as written (after NFKC and space removal); traditional→simplified
conversion is applied to the matching key only. ``name_pinyin`` reads the surname with its
surname reading (曾 zeng, not ceng), so that homophone spellings of a name meet in one key.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from schemas.text import NULL, TEXT, blank_or_null, distinct, expand, flag, nfkc, series, squeeze

SEPARATOR = "\u00b7"  # the minority-name separator mandated in 2016
# what systems store instead: bullet, katakana middle dot, hyphenation point, dot operators, full stop
_SEPARATOR_VARIANTS = "[\u2022\u30fb\uff65\u2027\u2219\u22c5\u318d\u0387.]"

VALID = "valid"
MISSING = "missing"
PLACEHOLDER = "placeholder"
MALFORMED = "malformed"
STATUSES = (VALID, MALFORMED, PLACEHOLDER, MISSING)

MAX_LENGTH = 50  # the 2016 notice: name fields hold at least 50 characters
_PLACEHOLDERS = "^(?:无|无名|暂无|不详|未知|待补|测试|某某|無|無名|暫無|不詳|NULL|NONE|NAN|N/?A|[/\\\\\\-—_.*?？·]+)$"
# a name is made of ideographs (CJK blocks, 〇), Latin letters, the separator, hyphen and apostrophe;
# anything else (digits, symbols, emoji, private-use code points standing in for rare characters) is malformed
_NAME_CHARS = (
    "^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f\u3007"
    f"A-Za-z\u00c0-\u024f{SEPARATOR}'\\-]+$"
)
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f\u3007]")

# compound surnames, detected before single-character ones (only when a given name follows)
COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 万俟 长孙 慕容 司徒 夏侯 令狐 宇文 公孙 轩辕 端木 独孤 南宫 西门 澹台 公冶 宗政"
    " 濮阳 淳于 单于 太叔 申屠 钟离 闻人 呼延 赫连 百里 东郭 拓跋 司空 羊舌 第五 梁丘 左丘 谷梁 公羊 仲孙 鲜于 闾丘"
    " 亓官 司寇 子车 颛孙 壤驷 公良 漆雕 乐正 宰父 段干 东门 巫马 公西 微生 公户 公仪 夹谷 乌雅 完颜 爱新觉罗".split()
)
# surname readings (the common reading of 曾 is ceng, of 单 dan); a few agree with the common reading
# and are listed anyway, so that this table alone decides how a surname is read
SURNAME_PINYIN = {
    "曾": "zeng", "单": "shan", "解": "xie", "仇": "qiu", "区": "ou", "查": "zha", "朴": "piao", "盖": "ge",
    "乐": "yue", "缪": "miao", "覃": "qin", "燕": "yan", "任": "ren", "员": "yun", "能": "nai", "句": "gou",
    "繁": "po", "秘": "bi", "折": "she", "种": "chong", "召": "shao", "卜": "bu", "隗": "wei", "翟": "zhai",
    "祭": "zhai", "阚": "kan", "牟": "mu", "乜": "nie", "长": "chang", "重": "chong", "都": "du", "薄": "bo",
    "朝": "chao", "尉": "wei", "宿": "su", "沈": "shen", "柏": "bai", "曲": "qu", "纪": "ji", "华": "hua",
    "车": "che", "石": "shi", "贲": "ben", "褚": "chu", "莘": "shen", "冼": "xian", "郇": "huan", "黑": "he",
    "臧": "zang", "谌": "chen", "洗": "xian", "角": "jue", "佴": "nai", "便": "pian", "於": "yu",
    "尉迟": "yuchi", "万俟": "moqi", "长孙": "zhangsun", "单于": "chanyu", "澹台": "tantai", "乐正": "yuezheng",
    "仲孙": "zhongsun", "令狐": "linghu", "皇甫": "huangfu", "濮阳": "puyang",
}


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


@cache
def _char_pinyin(char: str) -> str:
    from pypinyin import lazy_pinyin

    # pypinyin leaves non-Han characters as they are: keep ASCII letters only, so the key is [a-z]*
    return re.sub("[^a-z]", "", "".join(lazy_pinyin(char)).lower())


def _pinyin(text: str) -> str:
    # character by character: the common reading of each ideograph, without pypinyin's phrase
    # guessing (a given name is not a phrase), which also keeps this fast
    return "".join(map(_char_pinyin, text))


def _reading(key: str | None, minority: bool) -> tuple[str | None, str | None]:
    """(surname, pinyin) of a matching key."""
    if key is None:
        return None, None
    if minority or not _HAN.match(key):
        return None, _pinyin(key)
    surname = key[:2] if len(key) > 2 and key[:2] in COMPOUND_SURNAMES else key[:1]
    return surname, (SURNAME_PINYIN.get(surname) or _pinyin(surname)) + _pinyin(key[len(surname):])


def _standardize_distinct(values: pa.Array) -> pd.DataFrame:
    s = squeeze(nfkc(values))  # NFKC has turned the ideographic space into a plain one
    s = pc.replace_substring_regex(s, _SEPARATOR_VARIANTS, SEPARATOR)
    s = pc.replace_substring_regex(s, f"{SEPARATOR}+", SEPARATOR)
    s = pc.utf8_trim(s, SEPARATOR)

    missing = blank_or_null(s)
    placeholder = ~missing & flag(pc.match_substring_regex(pc.utf8_upper(s), _PLACEHOLDERS))
    malformed = ~missing & ~placeholder & (
        ~flag(pc.match_substring_regex(s, _NAME_CHARS)) | flag(pc.greater(pc.utf8_length(s), MAX_LENGTH)))
    status = np.select([missing, placeholder, malformed], [MISSING, PLACEHOLDER, MALFORMED], VALID)

    name = pc.if_else(pa.array(status == VALID), s, NULL)
    convert = _t2s().convert
    key = pa.array([None if v is None else convert(v).replace(SEPARATOR, "").upper() for v in name.to_pylist()],
                   type=pa.large_string())
    minority = flag(pc.match_substring(name, SEPARATOR))
    surname, pinyin = zip(*map(_reading, key.to_pylist(), minority)) if len(key) else ((), ())
    return pd.DataFrame({
        "name": series(name),
        "name_key": series(key),
        "name_pinyin": pd.array(pinyin, dtype=TEXT),
        "name_surname": pd.array(surname, dtype=TEXT),
        "name_status": pd.array(status, dtype=TEXT),
    })


def standardize_names(raw: pd.Series) -> pd.DataFrame:
    """Standardize raw names.

    Returns ``name`` (clean, as written), ``name_key`` (simplified, no separator, upper-case: for
    matching), ``name_pinyin`` (lower-case pinyin of the key without spaces, surname read as a
    surname), ``name_surname`` (the surname in the key; null for minority names) and ``name_status``
    (valid, missing, placeholder, malformed). Only valid names get clean values.
    """
    codes, values = distinct(raw)
    per_value = _standardize_distinct(values)
    return expand(per_value, codes, raw.index)
