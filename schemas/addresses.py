"""Addresses: province / city / county / town / village / group / house number, and a house key.

Departments write the same house as ``安徽省六安市霍邱县城关镇东湖村3组12号``, ``城关镇东湖村三组12号``
or ``霍邱县城关镇东湖村第3村民小组``. The parser reads the levels that are there, normalizes Chinese
numerals in group and house numbers, and finds the county's GB/T 2260 code where the county is
named and unambiguous. ``address_key`` puts the levels that identify a house into one string.

Province, city and county are read against the current GB/T 2260 names. The text before the
first digit (province down to village) repeats across a whole county and the numbers after it
(3组12号) are few, so each part is parsed once per distinct value, not once per row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from schemas.regions import current_regions
from schemas.text import TEXT, arrow, blank_or_null, distinct, expand, flag, lit, map_distinct, nfkc, series, squeeze

VALID = "valid"
COUNTY_ASSUMED = "county_assumed"
PARTIAL = "partial"
MISSING = "missing"
UNPARSEABLE = "unparseable"
STATUSES = (VALID, COUNTY_ASSUMED, PARTIAL, UNPARSEABLE, MISSING)

COLUMNS = ("address_province", "address_city", "address_county", "address_town", "address_village",
           "address_group", "address_house_no", "address_county_code", "address_key", "address_status")

_WORDS = "^(?:无|暂无|不详|未知|空|NULL|NONE|NAN|N/?A|[-/\\\\_.*?？—]+)$"
_NUMERAL = "0-9零〇一二两三四五六七八九十百千"
# below the county: names are Chinese (no ASCII) and may not run across the next level's marker
_TAIL = (
    "^(?P<town>[^\\x00-\\x7f省市县村组号]{1,10}?(?:街道办事处|街道|镇|乡|苏木))?"
    "(?P<village>[^\\x00-\\x7f省市县镇乡组号]{1,10}?(?:村民委员会|村委会|社区居民委员会|社区居委会|居民委员会|居委会|社区|村|嘎查))?"
    f"(?P<grp>第?[{_NUMERAL}]{{1,4}}(?:村民小组|居民小组|小组|组|生产队|队))?"
    "(?P<road>[^\\x00-\\x7f省市县镇乡村组号]{1,12}?(?:大街|大道|路|街|巷|弄|胡同))?"
    f"(?P<house>[{_NUMERAL}]{{1,8}}(?:-[0-9]{{1,4}})?号)?"
)
_VILLAGE_SUFFIXES = (("村民委员会$|村委会$", "村"), ("社区居民委员会$|社区居委会$|居民委员会$|居委会$", "社区"))

_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
_UNITS = {"十": 10, "百": 100, "千": 1000}


def chinese_number(text: str) -> str:
    """``十二`` → ``12``, ``二十一`` → ``21``, ``一百零三`` → ``103``, ``03`` → ``3``; digit runs pass through."""
    if not text:
        return text
    if text.isdigit():
        return str(int(text))
    if all(c in _DIGITS for c in text):  # 一二 written digit by digit
        return str(int("".join(str(_DIGITS[c]) for c in text)))
    total, digit = 0, None
    for c in text:
        if c in _UNITS:
            total += (1 if digit is None else digit) * _UNITS[c]
            digit = None
        elif c in _DIGITS:
            digit = _DIGITS[c]
        elif c.isdigit():
            digit = (digit or 0) * 10 + int(c)
    return str(total + (digit or 0))


# a county missing from the table (abolished, misspelt) is still read as a county, without a code
_GENERIC_COUNTY = re.compile("[^\x00-\x7f省市县区镇乡村组号]{1,6}?(?:县|旗)")
_NATION = ("中华人民共和国", "中国")


class _Names:
    """Names of one level, matched as the longest name at a position."""

    def __init__(self, names):
        self.names = set(names)
        self.lengths = sorted({len(n) for n in self.names}, reverse=True)

    def match(self, text: str, pos: int) -> str:
        for length in self.lengths:
            if text[pos:pos + length] in self.names:
                return text[pos:pos + length]
        return ""


@dataclass(frozen=True)
class _Gazetteer:
    provinces: _Names
    short_provinces: _Names               # 安徽 for 安徽省: only taken when a lower level follows
    cities: _Names
    short_cities: _Names                  # 六安 for 六安市: only taken when a county follows
    counties: _Names
    county_codes: dict[str, list[str]]    # county name -> current codes
    city_prefixes: dict[str, set[str]]    # city name (full or short) -> 4-digit prefixes
    province_prefixes: dict[str, str]     # province name (full or short) -> 2-digit prefix
    city_names: dict[str, str]            # 4-digit prefix -> prefecture name
    names: dict[str, str]                 # current code -> name


@lru_cache(maxsize=1)
def _gazetteer() -> _Gazetteer:
    import opencc

    t2s = opencc.OpenCC("t2s").convert  # a few names in the table are in traditional characters
    names = {code: t2s(name) for code, name in current_regions().items()}
    provinces = {code[:2]: name for code, name in names.items() if code.endswith("0000")}
    cities = {code[:4]: name for code, name in names.items()
              if code.endswith("00") and not code.endswith("0000") and re.search("(市|州|盟|地区)$", name)}
    counties = {code: name for code, name in names.items() if not code.endswith("00") and name != "市辖区"}

    county_codes: dict[str, list[str]] = {}
    for code, name in counties.items():
        county_codes.setdefault(name, []).append(code)
    lower = set(cities.values()) | set(counties.values())

    def unclaimed(short: str, full: str) -> bool:
        # 吉林 begins 吉林市 and 朝阳 begins 朝阳区: such a short name would steal the start of another name
        return len(short) >= 2 and not any(name.startswith(short) and name != full for name in lower)

    province_prefixes: dict[str, str] = {}
    short_provinces = set()
    for prefix, name in provinces.items():
        province_prefixes[name] = prefix
        short = re.sub("(省|市|壮族自治区|回族自治区|维吾尔自治区|自治区|特别行政区)$", "", name)
        if short != name and unclaimed(short, name):
            province_prefixes[short] = prefix
            short_provinces.add(short)
    city_prefixes: dict[str, set[str]] = {}
    short_cities = set()
    for prefix, name in cities.items():
        city_prefixes.setdefault(name, set()).add(prefix)
        short = name[:-1] if name.endswith("市") else name
        if short != name and unclaimed(short, name):
            city_prefixes.setdefault(short, set()).add(prefix)
            short_cities.add(short)
    return _Gazetteer(
        provinces=_Names(provinces.values()), short_provinces=_Names(short_provinces),
        cities=_Names(cities.values()), short_cities=_Names(short_cities), counties=_Names(county_codes),
        county_codes=county_codes, city_prefixes=city_prefixes, province_prefixes=province_prefixes,
        city_names=cities, names=names)


def _read_admin(text: str, gaz: _Gazetteer) -> tuple[str, str, str, int]:
    """(province, city, county, characters read) at the start of a text."""
    pos = next((len(n) for n in _NATION if text.startswith(n)), 0)
    province = gaz.provinces.match(text, pos) or gaz.short_provinces.match(text, pos)
    at_city = pos + len(province)
    city = gaz.cities.match(text, at_city) or gaz.short_cities.match(text, at_city)
    at_county = at_city + len(city)
    county = gaz.counties.match(text, at_county)
    if not county:
        generic = _GENERIC_COUNTY.match(text, at_county)
        county = generic.group() if generic else ""
    if city and not county and city not in gaz.cities.names:
        city, at_county = "", at_city  # a short city name counts only before a county: 六安 may also start a town
    if province and not city and not county and province not in gaz.provinces.names:
        province, at_county = "", pos
    return province, city, county, at_county + len(county)


def _county_code(province: str, city: str, county: str, gaz: _Gazetteer) -> str | None:
    """The one current code that fits the written levels, or None when none or several do."""
    candidates = gaz.county_codes.get(county, [])
    if province:
        candidates = [c for c in candidates if c[:2] == gaz.province_prefixes[province]]
    if city:
        candidates = [c for c in candidates if c[:4] in gaz.city_prefixes[city]]
    return candidates[0] if len(candidates) == 1 else None


def _admin_levels(leads: list[str], gaz: _Gazetteer) -> pd.DataFrame:
    """Province, city, county, county code and the characters read, for each distinct leading text."""
    rows = []
    for lead in leads:
        province, city, county, consumed = _read_admin(lead, gaz)
        code = _county_code(province, city, county, gaz) if county else None
        if code:
            # a named, unambiguous county gives its city and province their current names
            province, city, county = gaz.names[code[:2] + "0000"], gaz.city_names.get(code[:4]), gaz.names[code]
        else:
            province = gaz.names[gaz.province_prefixes[province] + "0000"] if province else None
            city = gaz.city_names[min(gaz.city_prefixes[city])] if city else None
        rows.append((province or None, city or None, county or None, code, consumed))
    return pd.DataFrame(rows, columns=["province", "city", "county", "code", "consumed"])


def _default_levels(code: str, gaz: _Gazetteer) -> tuple[str, str | None, str, str]:
    """(province, city, county, code) of a configured default county; an unknown code is a configuration error."""
    if code not in gaz.names or code.endswith("00"):
        raise ValueError(f"default_county {code!r} is not a current county-level GB/T 2260 code")
    return gaz.names[code[:2] + "0000"], gaz.city_names.get(code[:4]), gaz.names[code], code


def _house_number(text: str) -> str:
    return "-".join(chinese_number(part) for part in text.split("-"))


def _read_levels(texts: pa.Array) -> pd.DataFrame:
    """Town, village, group, road and house number at the start of each text ('' where absent), normalized."""
    parts = pc.extract_regex(pc.fill_null(texts, ""), _TAIL)
    level = {name: pc.struct_field(parts, name) for name in ("town", "village", "grp", "road", "house")}
    village = level["village"]
    for suffix, short in _VILLAGE_SUFFIXES:
        village = pc.replace_substring_regex(village, suffix, short)
    group = pc.replace_substring_regex(level["grp"], "^第|(?:村民小组|居民小组|小组|组|生产队|队)$", "")
    return pd.DataFrame({
        "town": series(pc.replace_substring_regex(level["town"], "街道办事处$", "街道")),
        "village": series(village),
        "group": series(map_distinct(group, chinese_number)),
        "road": series(level["road"]),
        "house": series(map_distinct(pc.replace_substring_regex(level["house"], "号$", ""), _house_number)),
    })


def _read_places(heads: list[str], gaz: _Gazetteer) -> pd.DataFrame:
    """All levels of each distinct leading text: province to county from the gazetteer, then town and below."""
    admin = _admin_levels(heads, gaz)
    below = pa.array([head[consumed:] for head, consumed in zip(heads, admin["consumed"])], type=pa.large_string())
    return pd.concat([admin, _read_levels(below)], axis=1)


def _parse_distinct(values: pa.Array, gaz: _Gazetteer, default: tuple | None) -> pd.DataFrame:
    text = squeeze(nfkc(values))
    missing = blank_or_null(text)
    missing |= flag(pc.match_substring_regex(pc.utf8_upper(text), _WORDS))
    text = pc.if_else(pa.array(missing), lit(""), text)

    # the text before the first digit names the place and repeats across many rows: it is read once
    # per distinct value; the numbers after it (3组12号) are few distinct values too
    head_codes, heads = pd.factorize(series(pc.replace_substring_regex(text, "[0-9].*$", "")))
    place = _read_places(list(heads), gaz).take(head_codes).reset_index(drop=True)
    tail_codes, tails = pd.factorize(series(pc.replace_substring_regex(text, "^[^0-9]*", "")))
    numbers = _read_levels(arrow(pd.Series(tails, dtype=TEXT))).take(tail_codes).reset_index(drop=True)

    def level(name: str) -> pd.Series:
        value = place[name].where(place[name] != "", numbers[name]) if name in numbers else place[name]
        return value.where(value != "", pd.NA).astype(TEXT)

    number = level("house")
    out = pd.DataFrame({
        "address_province": place["province"], "address_city": place["city"], "address_county": place["county"],
        "address_town": level("town"), "address_village": level("village"), "address_group": level("group"),
        "address_house_no": level("road").fillna("") + number,
        "address_county_code": place["code"],
    }).astype(TEXT)

    no_admin = out[["address_province", "address_city", "address_county"]].isna().all(axis=1).to_numpy()
    locality = out["address_town"].notna().to_numpy() | out["address_village"].notna().to_numpy()
    assumed = np.zeros(len(out), dtype=bool)
    if default is not None:
        assumed = no_admin & locality
        for column, value in zip(("address_province", "address_city", "address_county", "address_county_code"), default):
            out.loc[assumed, column] = value
    complete = out["address_town"].notna().to_numpy() & out["address_village"].notna().to_numpy()
    status = np.select([missing, no_admin & ~locality, assumed, ~complete],
                       [MISSING, UNPARSEABLE, COUNTY_ASSUMED, PARTIAL], VALID)
    out["address_key"] = _house_key(out, locality & out["address_house_no"].notna().to_numpy())
    out["address_status"] = pd.array(status, dtype=TEXT)
    return out[list(COLUMNS)]


def _house_key(out: pd.DataFrame, keyed: np.ndarray) -> pd.Series:
    """county_code|town|village|group|house_no, for rows that name a house: a town or village and a number."""
    levels = ["address_county_code", "address_town", "address_village", "address_group", "address_house_no"]
    key = out[levels[0]].fillna("")
    for column in levels[1:]:
        key = key + "|" + out[column].fillna("")
    return key.where(keyed, pd.NA).astype(TEXT)


def parse_addresses(raw: pd.Series, *, default_county: str | None = None) -> pd.DataFrame:
    """Parse raw addresses into levels.

    Returns ``address_province, address_city, address_county, address_town, address_village,
    address_group, address_house_no`` (group and house numbers as Arabic numerals; a street name is
    kept before the house number), ``address_county_code`` (GB/T 2260, when the county is named and
    unambiguous), ``address_key`` (county_code|town|village|group|house_no) and ``address_status``:
    valid, partial (no town or no village), county_assumed (only town/village were given and
    ``default_county`` filled the levels above), missing, unparseable.
    """
    gaz = _gazetteer()
    default = _default_levels(default_county, gaz) if default_county else None
    codes, values = distinct(raw)
    return expand(_parse_distinct(values, gaz, default), codes, raw.index)
