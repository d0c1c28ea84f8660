"""The civil-affairs (民政) platform: minimum living allowance and elderly subsidy rolls.

Records are written the way the platform's clerks write them: pinyin-abbreviated field names
(xm 姓名, sfzh 身份证号, xb 性别, csrq 出生日期, jtdz 家庭地址, lxdh 联系电话), sex as 男/女,
compact dates, and the typing errors real rolls contain. The true person of every record is
kept apart in ``truth``; it is never served.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from simulators.population import CountySpec, generate_county

FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
TRADITIONAL = str.maketrans({"张": "張", "刘": "劉", "陈": "陳", "杨": "楊", "黄": "黃", "赵": "趙", "吴": "吳",
                             "孙": "孫", "马": "馬", "郑": "鄭", "华": "華", "国": "國", "丽": "麗", "红": "紅"})


@dataclass(frozen=True)
class ErrorRates:
    """Share of records affected by each kind of error."""

    lower_x: float = 0.3          # of IDs ending in X
    full_width: float = 0.01
    fifteen_digit: float = 0.02   # of persons born before 1980
    typo: float = 0.005           # one digit changed: the check character catches it
    placeholder: float = 0.005
    name_space: float = 0.01
    traditional: float = 0.01
    duplicate: float = 0.01       # the same person entered twice


@dataclass
class Platform:
    """Rolls of one platform: ``resources[name]`` is the served list, ``truth[name]`` maps record id → person."""

    name: str
    resources: dict[str, list[dict]] = field(default_factory=dict)
    truth: dict[str, dict[str, str]] = field(default_factory=dict)


def _messy_ids(ids: pd.Series, birth_year: pd.Series, rates: ErrorRates, rng) -> pd.Series:
    ids = ids.copy()
    n = len(ids)
    r = rng.random((5, n))
    ends_x = ids.str.endswith("X").to_numpy()
    lower = ends_x & (r[0] < rates.lower_x)
    ids[lower] = ids[lower].str.lower()
    old = (birth_year < 1980).to_numpy() & (r[1] < rates.fifteen_digit)
    ids[old] = ids[old].str.slice(0, 6) + ids[old].str.slice(8, 17)
    typo = (r[2] < rates.typo) & ~old
    pos = rng.integers(6, 17, n)
    for i in np.flatnonzero(typo):  # a handful of rows: one digit replaced by a different digit
        s = ids.iat[i]
        d = str((int(s[pos[i]]) + rng.integers(1, 10)) % 10)
        ids.iat[i] = s[: pos[i]] + d + s[pos[i] + 1 :]
    wide = r[3] < rates.full_width
    ids[wide] = ids[wide].str.upper().str.translate(FULL_WIDTH)
    ph = r[4] < rates.placeholder
    ids[ph] = rng.choice(["无", "/", "000000000000000000", ""], ph.sum())
    return ids


def _messy_names(names: pd.Series, rates: ErrorRates, rng) -> pd.Series:
    names = names.copy()
    r = rng.random((2, len(names)))
    sp = (r[0] < rates.name_space) & (names.str.len() >= 2).to_numpy()
    names[sp] = names[sp].str.slice(0, 1) + rng.choice([" ", "\u3000"]) + names[sp].str.slice(1)
    trad = r[1] < rates.traditional
    names[trad] = names[trad].str.translate(TRADITIONAL)
    return names


def _roll(persons: pd.DataFrame, prefix: str, extra: dict[str, object], rates: ErrorRates, rng,
          updated: dt.datetime) -> tuple[list[dict], dict[str, str]]:
    dup = persons[rng.random(len(persons)) < rates.duplicate]
    rows = pd.concat([persons, dup]).sample(frac=1.0, random_state=int(rng.integers(1 << 31)))
    rows = rows.reset_index(drop=True)
    record_ids = [f"{prefix}{i:07d}" for i in range(1, len(rows) + 1)]
    birth = pd.to_datetime(rows["birth_date"])
    frame = pd.DataFrame({
        "id": record_ids,
        "xm": _messy_names(rows["name"], rates, rng),
        "sfzh": _messy_ids(rows["id_number"], birth.dt.year, rates, rng),
        "xb": np.where(rows["sex"] == 1, "男", "女"),
        "csrq": birth.dt.strftime("%Y%m%d"),
        "jtdz": rows["address"],
        "lxdh": rows["phone"],
        "gxsj": updated.isoformat(timespec="seconds"),
    })
    for key, value in extra.items():
        frame[key] = value
    truth = dict(zip(record_ids, rows["person_id"]))
    return frame.to_dict(orient="records"), truth


def civil_affairs_platform(county: pd.DataFrame | None = None, *, seed: int = 7,
                           rates: ErrorRates = ErrorRates()) -> Platform:
    """Build the civil-affairs rolls from a county population.

    - ``dibao``: minimum living allowance, whole households (about 8% of households);
    - ``gaoling``: elderly subsidy, living persons aged 80 and over.
    """
    county = generate_county(CountySpec()) if county is None else county
    rng = np.random.default_rng(seed)
    updated = dt.datetime(2026, 11, 20, 22, 0, 0)
    alive = county[county["deceased_on"].isna()]

    households = alive["household_id"].unique()
    poor = rng.choice(households, max(1, int(len(households) * 0.08)), replace=False)
    dibao = alive[alive["household_id"].isin(poor)]
    age = (pd.Timestamp("2026-11-01") - pd.to_datetime(alive["birth_date"])).dt.days // 365
    elderly = alive[age >= 80]

    platform = Platform("civil_affairs")
    for name, persons, prefix, extra in [
        ("dibao", dibao, "DB", {"bzzt": "在保"}),
        ("gaoling", elderly, "GL", {"btzt": "正常发放"}),
    ]:
        records, truth = _roll(persons, prefix, extra, rates, rng, updated)
        platform.resources[name] = records
        platform.truth[name] = truth
    return platform
