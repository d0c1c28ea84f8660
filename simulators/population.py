"""A synthetic county: persons in households, with valid GB 11643 ID numbers.

Deterministic for a given seed and vectorized, so large populations generate quickly.
The ``person_id`` column is the ground truth of who is who; the platforms never serve it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

# surname, relative frequency (per mille, rounded from national statistics)
SURNAMES = [
    ("王", 74), ("李", 72), ("张", 70), ("刘", 54), ("陈", 46), ("杨", 33), ("黄", 24), ("赵", 23),
    ("吴", 20), ("周", 20), ("徐", 17), ("孙", 16), ("马", 15), ("朱", 14), ("胡", 13), ("郭", 12),
    ("何", 12), ("林", 11), ("高", 11), ("罗", 10), ("郑", 10), ("梁", 9), ("谢", 8), ("宋", 8),
    ("唐", 8), ("许", 7), ("韩", 7), ("冯", 7), ("邓", 7), ("曹", 6), ("彭", 6), ("曾", 6),
    ("肖", 6), ("田", 5), ("董", 5), ("袁", 5), ("潘", 5), ("于", 5), ("蒋", 5), ("蔡", 5),
    ("余", 5), ("杜", 4), ("叶", 4), ("程", 4), ("苏", 4), ("魏", 4), ("吕", 4), ("丁", 4),
    ("任", 4), ("沈", 4), ("姚", 4), ("卢", 4), ("姜", 3), ("崔", 3), ("钟", 3), ("谭", 3),
    ("陆", 3), ("汪", 3), ("范", 3), ("金", 3), ("单", 1), ("解", 1), ("仇", 1), ("欧阳", 1),
]
COMMON_GIVEN = {1: ["伟", "强", "磊", "军", "勇", "杰", "涛", "斌", "超", "明"],
                2: ["芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "燕", "玲"]}
GIVEN_CHARS = {1: list("建国华文平志明永海东春林军德成福生金龙辉宏俊浩宇鹏飞刚峰"),
               2: list("秀英兰梅凤玉桂珍红霞丽萍慧婷雪琳佳欣雨晶月莉颖倩洁雅")}

LOCAL_COUNTY = "341522"  # 霍邱县, 六安市, 安徽省
LOCAL_COUNTY_BEFORE_2000 = "342423"  # the same county's code until the 1999 reorganization
MIGRANT_COUNTIES = ["341502", "341503", "341523", "341524", "340121", "320382", "410526", "510129",
                    "130424", "370828", "420116"]
TOWNS = ["城关镇", "新店镇", "石店镇", "马店镇", "孟集镇", "花园镇", "扈胡镇", "长集镇"]
VILLAGES = ["东湖村", "西岗村", "南塘村", "北圩村", "新河村", "王楼村", "李台村", "张庄村", "和平社区", "建设社区"]

TODAY = dt.date(2026, 11, 1)
ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
ID_CHECK = np.array(list("10X98765432"))


@dataclass(frozen=True)
class CountySpec:
    persons: int = 2000
    seed: int = 20261121
    migrant_share: float = 0.12


def _id_numbers(region: np.ndarray, birth: pd.Series, sex: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unique valid ID numbers: sequence parity follows sex (odd male, even female)."""
    n = len(region)
    seq = rng.integers(0, 500, n) * 2 + np.where(sex == 1, 1, 0)
    stem = pd.Series(region).str.cat(birth.dt.strftime("%Y%m%d").to_numpy())
    for _ in range(50):  # re-draw the few sequence numbers that collide
        bodies = stem + pd.Series(seq).astype(str).str.zfill(3)
        dup = bodies.duplicated().to_numpy()
        if not dup.any():
            break
        seq[dup] = rng.integers(0, 500, dup.sum()) * 2 + np.where(sex[dup] == 1, 1, 0)
    digits = np.frombuffer("".join(bodies).encode("ascii"), dtype=np.uint8).reshape(-1, 17) - 48
    checks = ID_CHECK[(digits.astype(np.int64) @ ID_WEIGHTS) % 11]
    return (bodies + pd.Series(checks)).to_numpy()


def generate_county(spec: CountySpec = CountySpec()) -> pd.DataFrame:
    """Persons of one county, one row each, grouped in households.

    Columns: person_id, household_id, relation (head/spouse/child/parent), name, sex (1/2),
    birth_date, id_number, address, phone, deceased_on (or NaT).
    """
    rng = np.random.default_rng(spec.seed)
    rows_needed = spec.persons
    # households: head + spouse (80%), 0-3 children, an elderly parent (25%)
    n_house = max(1, int(rows_needed / 3.0))
    has_spouse = rng.random(n_house) < 0.8
    n_children = rng.choice([0, 1, 2, 3], n_house, p=[0.2, 0.4, 0.3, 0.1])
    has_parent = rng.random(n_house) < 0.25
    head_age = rng.integers(24, 75, n_house)

    parts = []
    house_ids = np.arange(n_house)
    head_sex = np.where(rng.random(n_house) < 0.85, 1, 2)
    parts.append(pd.DataFrame({"household_id": house_ids, "relation": "head", "sex": head_sex, "age": head_age}))
    sp = house_ids[has_spouse]
    parts.append(pd.DataFrame({"household_id": sp, "relation": "spouse", "sex": 3 - head_sex[has_spouse],
                               "age": np.clip(head_age[has_spouse] + rng.integers(-4, 5, len(sp)), 20, 95)}))
    child_house = np.repeat(house_ids, n_children)
    child_age = np.clip(head_age[child_house] - rng.integers(20, 36, len(child_house)), 0, 60)
    parts.append(pd.DataFrame({"household_id": child_house, "relation": "child",
                               "sex": rng.integers(1, 3, len(child_house)), "age": child_age}))
    ph = house_ids[has_parent]
    parts.append(pd.DataFrame({"household_id": ph, "relation": "parent", "sex": rng.integers(1, 3, len(ph)),
                               "age": np.clip(head_age[has_parent] + rng.integers(22, 32, len(ph)), 50, 102)}))
    people = pd.concat(parts, ignore_index=True).sort_values(["household_id", "relation"], kind="stable")
    people = people.head(rows_needed).reset_index(drop=True)
    n = len(people)

    # twins: a share of second children copy the first child's birth date
    birth = pd.to_datetime(TODAY) - pd.to_timedelta(people["age"] * 365 + rng.integers(0, 365, n), unit="D")
    children = people.index[people["relation"] == "child"]
    first_child = people.loc[children].groupby("household_id").head(1)
    twins = people.loc[children].drop(first_child.index)
    twin_pick = twins[rng.random(len(twins)) < 0.04]
    twin_src = first_child.set_index("household_id").index.get_indexer(twin_pick["household_id"])
    birth.loc[twin_pick.index] = birth.loc[first_child.index[twin_src]].to_numpy()

    surname_vals = np.array([s for s, _ in SURNAMES])
    weights = np.array([w for _, w in SURNAMES], dtype=float)
    house_surname = rng.choice(surname_vals, n_house, p=weights / weights.sum())
    surname = house_surname[people["household_id"].to_numpy()]
    spouse_or_parent = people["relation"].isin(["spouse", "parent"]).to_numpy()
    surname[spouse_or_parent] = rng.choice(surname_vals, spouse_or_parent.sum(), p=weights / weights.sum())

    sex = people["sex"].to_numpy()
    given = np.empty(n, dtype=object)
    for code in (1, 2):
        idx = np.flatnonzero(sex == code)
        common = rng.random(len(idx)) < 0.15
        two = rng.random(len(idx)) < 0.7
        first = rng.choice(GIVEN_CHARS[code], len(idx))
        second = rng.choice(GIVEN_CHARS[code], len(idx))
        plain = np.where(two, np.char.add(first.astype(str), second.astype(str)), first)
        given[idx] = np.where(common, rng.choice(COMMON_GIVEN[code], len(idx)), plain)
    names = np.char.add(surname.astype(str), given.astype(str))

    migrant = rng.random(n_house) < spec.migrant_share
    house_county = np.where(migrant, rng.choice(MIGRANT_COUNTIES, n_house), LOCAL_COUNTY)
    county = house_county[people["household_id"].to_numpy()]
    old_local = (county == LOCAL_COUNTY) & (birth.dt.year.to_numpy() < 1995) & (rng.random(n) < 0.5)
    county = np.where(old_local, LOCAL_COUNTY_BEFORE_2000, county)
    ids = _id_numbers(county, birth, sex, rng)

    town = rng.choice(TOWNS, n_house)
    village = rng.choice(VILLAGES, n_house)
    group = rng.integers(1, 12, n_house)
    house_no = rng.integers(1, 99, n_house)
    address = (pd.Series(town) + pd.Series(village) + pd.Series(group).astype(str) + "组"
               + pd.Series(house_no).astype(str) + "号").to_numpy()
    phone = ("1" + pd.Series(rng.choice(["38", "39", "51", "58", "77", "86", "87", "99"], n_house))
             + pd.Series(rng.integers(0, 10**8, n_house)).astype(str).str.zfill(8)).to_numpy()

    hh = people["household_id"].to_numpy()
    out = pd.DataFrame({
        "person_id": [f"P{i:07d}" for i in range(n)],
        "household_id": [f"H{h:06d}" for h in hh],
        "relation": people["relation"].to_numpy(),
        "name": names,
        "sex": sex,
        "birth_date": birth.dt.date.to_numpy(),
        "id_number": ids,
        "address": address[hh],
        "phone": phone[hh],
    })
    deaths = (people["age"].to_numpy() >= 70) & (rng.random(n) < 0.08)
    out["deceased_on"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns]")
    out.loc[deaths, "deceased_on"] = pd.Timestamp(TODAY) - pd.to_timedelta(rng.integers(1, 700, deaths.sum()), unit="D")
    return out
