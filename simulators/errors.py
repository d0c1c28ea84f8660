"""The errors departmental data really contains, injected at configurable rates.

Every function takes the true values and returns the values as a clerk typed them, plus a boolean
mask of the rows it changed, so the ground truth can say which error hit which record.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

FULL_WIDTH = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")
TRADITIONAL = str.maketrans({"张": "張", "刘": "劉", "陈": "陳", "杨": "楊", "黄": "黃", "赵": "趙", "吴": "吳",
                             "孙": "孫", "马": "馬", "郑": "鄭", "华": "華", "国": "國", "丽": "麗", "红": "紅",
                             "龙": "龍", "东": "東", "凤": "鳳", "兰": "蘭", "宏": "宏", "伟": "偉", "军": "軍"})
# same sound, different character: what a clerk types from hearing a name
HOMOPHONES = {"伟": "卫", "丽": "莉", "张": "章", "静": "晶", "敏": "民", "芳": "方", "军": "君", "勇": "永",
              "杰": "洁", "娟": "涓", "明": "铭", "华": "桦", "玲": "铃", "燕": "艳", "强": "蔷", "林": "琳"}
SEPARATOR_VARIANTS = ["•", ".", "・", " ", ""]
ID_PLACEHOLDERS = ["无", "/", "000000000000000000", "", "不详"]


@dataclass(frozen=True)
class ErrorProfile:
    """Share of records hit by each kind of error (of eligible records, where noted)."""

    id_typo: float = 0.004            # one digit replaced: the check character catches it
    id_transposition: float = 0.002   # two adjacent digits swapped
    id_fifteen: float = 0.0           # of persons born 1900-1979: the first-generation 15-digit form
    id_lower_x: float = 0.3           # of IDs ending in X
    id_full_width: float = 0.003
    id_placeholder: float = 0.004
    id_family_member: float = 0.002   # the ID number of another member of the household
    name_homophone: float = 0.004
    name_traditional: float = 0.004
    name_space: float = 0.006
    minority_separator: float = 0.6   # of minority names: a separator other than U+00B7
    wrong_sex: float = 0.002
    stale_phone: float = 0.05         # an old phone number
    duplicate: float = 0.01           # the same person entered twice in one system
    date_serial: float = 0.0          # of dates: an Excel serial number instead of the system's format
    # Birth dates typed wrong while the ID number (from the household register) stays right. The
    # register and the ID number must carry the Gregorian date, but older rural registrations were
    # often taken down as the family gave them — by the lunar calendar — and clerks outside the
    # public-security system copy dates by hand. China's censuses show little age heaping (Jowett & Li
    # 1982 census; Gu & Feng, IJPS 2019), so year-only placeholders are rare and confined to the very
    # old; lunar birthdays are mostly an older rural habit (the young celebrate the Gregorian date).
    # Rates are of eligible records, as estimated from those sources and county trials:
    dob_lunar: float = 0.06           # of rural records of persons 60+ (x0.4 at 40-59, x0.1 younger):
    #                                   the lunar birthday written as a Gregorian date (weeks early;
    #                                   for a January/February birth often in the previous year)
    dob_swap: float = 0.002           # of dates whose day is 1-12: day and month swapped
    dob_digit: float = 0.002          # one digit of the year's last two, the month or the day mistyped
    dob_registration: float = 0.05    # of infants (0-2): the registration date, 1958 Regulations art. 7
    #                                   give a month to register a birth (late ones take longer)
    dob_year_only: float = 0.02       # of persons 80+ (x0.25 at 65-79): only the year known, written as
    #                                   1 January or 1 July of it
    dob_near: float = 0.002           # a date a few days off (1-7), e.g. the day the family recalled
    dob_archive_year: float = 0.0     # of persons 40+: the personnel-file (档案) year, 1-3 years off the
    #                                   ID's with the same month and day — ages altered for enlistment,
    #                                   school or work; retirement goes by the earliest file date
    #                                   (MOHRSS 1999 No. 8), so pension rolls keep it


def _rng_mask(rng: np.random.Generator, n: int, rate: float, eligible: np.ndarray | None = None) -> np.ndarray:
    mask = rng.random(n) < rate
    return mask & eligible if eligible is not None else mask


def mess_ids(ids: pd.Series, birth: pd.Series, family_ids: pd.Series, p: ErrorProfile,
             rng: np.random.Generator) -> tuple[pd.Series, dict[str, np.ndarray]]:
    """ID numbers as typed: returns the values and a mask per error kind."""
    ids = ids.astype(object).copy()
    n = len(ids)
    has = ids.notna().to_numpy()
    s = ids.fillna("").astype(str)
    hits: dict[str, np.ndarray] = {}

    family = _rng_mask(rng, n, p.id_family_member, has & family_ids.notna().to_numpy())
    s[family] = family_ids[family]
    hits["id_family_member"] = family

    year = pd.to_datetime(birth).dt.year.to_numpy()
    fifteen = _rng_mask(rng, n, p.id_fifteen, has & ~family & (year >= 1900) & (year < 1980))
    s[fifteen] = s[fifteen].str.slice(0, 6) + s[fifteen].str.slice(8, 17)
    hits["id_fifteen"] = fifteen

    ok18 = has & ~family & ~fifteen
    typo = _rng_mask(rng, n, p.id_typo, ok18)
    pos = rng.integers(6, 17, n)
    shift = rng.integers(1, 10, n)
    arr = s.to_numpy(dtype=object)
    for i in np.flatnonzero(typo):  # few rows: one digit replaced by another
        v = arr[i]
        arr[i] = v[: pos[i]] + str((int(v[pos[i]]) + shift[i]) % 10) + v[pos[i] + 1:]
    swap = _rng_mask(rng, n, p.id_transposition, ok18 & ~typo)
    for i in np.flatnonzero(swap):
        v = arr[i]
        j = pos[i]
        if v[j] == v[j + 1]:
            j = 6 if v[6] != v[7] else j
        arr[i] = v[:j] + v[j + 1] + v[j] + v[j + 2:]
    swap &= pd.Series(arr).ne(s).to_numpy()  # a swap of equal digits changes nothing
    s = pd.Series(arr, index=ids.index)
    hits["id_typo"], hits["id_transposition"] = typo, swap

    lower = _rng_mask(rng, n, p.id_lower_x, has & s.str.endswith("X").to_numpy())
    s[lower] = s[lower].str.lower()
    hits["id_lower_x"] = lower
    wide = _rng_mask(rng, n, p.id_full_width, has)
    s[wide] = s[wide].str.translate(FULL_WIDTH)
    hits["id_full_width"] = wide
    placeholder = _rng_mask(rng, n, p.id_placeholder, has)
    s[placeholder] = rng.choice(ID_PLACEHOLDERS, placeholder.sum())
    hits["id_placeholder"] = placeholder
    out = s.where(has | placeholder, None)
    return out, hits


def mess_names(names: pd.Series, minority: pd.Series, p: ErrorProfile,
               rng: np.random.Generator) -> tuple[pd.Series, dict[str, np.ndarray]]:
    names = names.astype(str).copy()
    n = len(names)
    hits: dict[str, np.ndarray] = {}
    mino = minority.to_numpy(dtype=bool)
    sep = _rng_mask(rng, n, p.minority_separator, mino)
    variants = pd.Series(rng.choice(SEPARATOR_VARIANTS, n), index=names.index)
    names[sep] = [a.replace("·", b) for a, b in zip(names[sep], variants[sep])]
    hits["minority_separator"] = sep

    has_homophone = names.str.contains("|".join(HOMOPHONES)).to_numpy()
    homo = _rng_mask(rng, n, p.name_homophone, has_homophone & ~mino)
    names[homo] = names[homo].str.translate(str.maketrans(HOMOPHONES))
    hits["name_homophone"] = homo
    trad_able = names.str.contains("|".join(chr(k) for k, v in TRADITIONAL.items() if chr(k) != v)).to_numpy()
    trad = _rng_mask(rng, n, p.name_traditional, trad_able & ~mino)
    names[trad] = names[trad].str.translate(TRADITIONAL)
    hits["name_traditional"] = trad
    space = _rng_mask(rng, n, p.name_space, ~mino & (names.str.len() >= 2).to_numpy())
    names[space] = names[space].str.slice(0, 1) + pd.Series(rng.choice([" ", "\u3000", "  "], n),
                                                             index=names.index)[space] + names[space].str.slice(1)
    hits["name_space"] = space
    return names, hits


def mess_sex(sex: pd.Series, p: ErrorProfile, rng: np.random.Generator) -> tuple[pd.Series, dict[str, np.ndarray]]:
    wrong = _rng_mask(rng, len(sex), p.wrong_sex)
    out = sex.copy()
    out[wrong] = 3 - out[wrong]
    return out, {"wrong_sex": wrong}


_PLACEHOLDER_DAYS = ((1, 1), (7, 1))


def _replace_ymd(d: dt.date, y: int, m: int, day: int) -> dt.date | None:
    try:
        return dt.date(y, m, day)
    except ValueError:
        return None


def lunar_as_gregorian(d: dt.date) -> dt.date | None:
    """The lunar (农历) birthday of Gregorian date ``d`` written as if it were a Gregorian date (None when
    the lunar day, e.g. the 30th of the 2nd month, has no Gregorian twin)."""
    from lunardate import LunarDate

    lunar = LunarDate.from_solar_date(d.year, d.month, d.day)
    return _replace_ymd(d, lunar.year, lunar.month, lunar.day)


def _digit_typo(d: dt.date, pos: int, shift: int) -> dt.date | None:
    """``d`` with one digit of YYYYMMDD (positions 2-7: the year's last two, month, day) changed."""
    s = d.strftime("%Y%m%d")
    for k in range(9):
        t = s[:pos] + str((int(s[pos]) + shift + k) % 10) + s[pos + 1:]
        if t == s:
            continue
        out = _replace_ymd(d, int(t[:4]), int(t[4:6]), int(t[6:]))
        if out is not None:
            return out
    return None


GENERATION_DAYS = 15 * 365  # dates this far apart are a parent's and a child's, not one person's


def mess_birth_dates(birth: pd.Series, age: np.ndarray, rural: np.ndarray, today: dt.date, p: ErrorProfile,
                     rng: np.random.Generator) -> tuple[pd.Series, dict[str, np.ndarray]]:
    """Birth dates as typed (``birth``: the true Gregorian dates); at most one date error per record."""
    dates = pd.to_datetime(pd.Series(birth)).dt.date.to_numpy(dtype=object)
    n = len(dates)
    has = pd.notna(pd.Series(dates)).to_numpy()
    out = dates.copy()
    hits: dict[str, np.ndarray] = {}
    free = has.copy()

    def take(kind: str, rate, eligible: np.ndarray, change) -> None:
        nonlocal free
        mask = (rng.random(n) < rate) & eligible & free
        for i in np.flatnonzero(mask):
            new = change(i)
            if new is None or new == dates[i] or new > today:
                mask[i] = False
            else:
                out[i] = new
        hits[kind] = mask
        free = free & ~mask

    weight = np.where(age >= 60, 1.0, np.where(age >= 40, 0.4, 0.1))
    take("dob_lunar", p.dob_lunar * weight, rural, lambda i: lunar_as_gregorian(dates[i]))
    infant = age <= 2
    late = rng.integers(7, 61, n)
    take("dob_registration", p.dob_registration, infant, lambda i: dates[i] + dt.timedelta(days=int(late[i])))
    which = rng.integers(0, len(_PLACEHOLDER_DAYS), n)
    take("dob_year_only", p.dob_year_only * np.where(age >= 80, 1.0, 0.25), age >= 65,
         lambda i: dt.date(dates[i].year, *_PLACEHOLDER_DAYS[which[i]]))
    day = np.array([d.day if d is not None else 0 for d in dates])
    month = np.array([d.month if d is not None else 0 for d in dates])
    take("dob_swap", p.dob_swap, (day <= 12) & (day != month),
         lambda i: _replace_ymd(dates[i], dates[i].year, dates[i].day, dates[i].month))
    pos = rng.integers(2, 8, n)
    shift = rng.integers(1, 10, n)
    take("dob_digit", p.dob_digit, has, lambda i: _digit_typo(dates[i], int(pos[i]), int(shift[i])))
    near = rng.integers(1, 8, n) * rng.choice([-1, 1], n)
    take("dob_near", p.dob_near, has, lambda i: dates[i] + dt.timedelta(days=int(near[i])))
    years = rng.integers(1, 4, n) * rng.choice([-1, 1], n)
    take("dob_archive_year", p.dob_archive_year, age >= 40,
         lambda i: _replace_ymd(dates[i], dates[i].year + int(years[i]), dates[i].month, dates[i].day))
    # a slip that puts a generation between the typed date and the true one (a decade digit): no one can
    # tell it from a parent's or child's ID number typed on the record, so it reads as a shared number
    generation = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(has & ~free):
        generation[i] = abs((out[i] - dates[i]).days) >= GENERATION_DAYS
    hits["dob_generation"] = generation
    return pd.Series(out, index=birth.index), hits


def excel_serial(dates: pd.Series) -> pd.Series:
    """Excel (1900 system) serial numbers of dates."""
    return (pd.to_datetime(dates) - pd.Timestamp("1899-12-30")).dt.days


def format_dates(dates: pd.Series, fmt: str, p: ErrorProfile, rng: np.random.Generator) -> tuple[pd.Series, dict]:
    """Dates in the system's format; a share as Excel serial numbers where the profile says so."""
    ts = pd.to_datetime(pd.Series(dates))
    out = ts.dt.strftime(fmt).astype(object)
    if fmt == "%Y年%-m月%-d日":  # strftime has no portable unpadded form
        out = (ts.dt.year.astype(str) + "年" + ts.dt.month.astype(str) + "月" + ts.dt.day.astype(str) + "日").astype(object)
    serial = _rng_mask(rng, len(out), p.date_serial, ts.notna().to_numpy())
    out[serial] = excel_serial(ts[serial]).astype(str)
    out[ts.isna().to_numpy()] = None
    return out, {"date_serial": serial}


def stale_phones(phones: pd.Series, p: ErrorProfile, rng: np.random.Generator) -> tuple[pd.Series, dict]:
    stale = _rng_mask(rng, len(phones), p.stale_phone, phones.notna().to_numpy())
    out = phones.astype(object).copy()
    out[stale] = ("13" + pd.Series(rng.integers(0, 10**9, stale.sum())).astype(str).str.zfill(9)).to_numpy()
    return out, {"stale_phone": stale}
