"""A synthetic county: persons in households, with valid GB 11643 ID numbers.

Deterministic for a given seed and vectorized, so a million persons generate in seconds.
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
# the given names everybody seems to have: same-name strangers come from these
COMMON_GIVEN = {1: ["伟", "强", "磊", "军", "勇", "杰", "涛", "斌", "超", "明"],
                2: ["芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "燕", "玲"]}
GIVEN_CHARS = {1: list("建国华文平志明永海东春林军德成福生金龙辉宏俊浩宇鹏飞刚峰子轩"),
               2: list("秀英兰梅凤玉桂珍红霞丽萍慧婷雪琳佳欣雨晶月莉颖倩洁雅子涵")}
# minority names written with the · separator (migrants from Xinjiang)
MINORITY_GIVEN = {1: ["买买提", "艾力", "阿不都", "吐尔逊", "依明"], 2: ["阿依古丽", "古丽", "热依拉", "帕提古丽", "再娜甫"]}
MINORITY_FAMILY = ["艾力", "吐尔逊", "卡德尔", "热合曼", "依明", "买合木提"]

LOCAL_COUNTY = "341522"  # 霍邱县, 六安市, 安徽省
LOCAL_COUNTY_BEFORE_2000 = "342423"  # the same county's code until the 1999 reorganization
MIGRANT_COUNTIES = ["341502", "341503", "341523", "341524", "340121", "320382", "410526", "510129",
                    "130424", "370828", "420116"]
MINORITY_COUNTIES = ["650102", "650121"]
TOWNS = ["城关镇", "新店镇", "石店镇", "马店镇", "孟集镇", "花园镇", "扈胡镇", "长集镇", "周集镇", "临水镇"]
VILLAGES = ["东湖村", "西岗村", "南塘村", "北圩村", "新河村", "王楼村", "李台村", "张庄村", "和平社区", "建设社区",
            "红星村", "桥口村", "陈湾村", "大桥社区"]
MOBILE_PREFIXES = ["38", "39", "51", "58", "77", "86", "87", "99", "36", "52"]

TODAY = dt.date(2026, 11, 1)
ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
ID_CHECK = np.array(list("10X98765432"))


@dataclass(frozen=True)
class CountySpec:
    """What to generate: the size, the seed, and the shares that shape the county."""

    persons: int = 2000
    seed: int = 20261121
    migrant_share: float = 0.10          # households registered elsewhere (流动人口)
    minority_share: float = 0.01         # of migrant households: minority names with ·
    twin_share: float = 0.02             # of second-or-later children: a twin of the first
    dibao_share: float = 0.06            # of households: minimum living allowance
    disability_share: float = 0.04       # of persons
    death_share: float = 0.08            # of persons aged 70+: already deceased
    infant_without_id_share: float = 0.7  # of children under 1: no ID number yet


def id_numbers(region: np.ndarray, birth: pd.Series, sex: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unique valid ID numbers: sequence parity follows sex (odd male, even female)."""
    seq = rng.integers(0, 500, len(region)) * 2 + np.where(sex == 1, 1, 0)
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


def _households(spec: CountySpec, rng: np.random.Generator) -> tuple[pd.DataFrame, int]:
    """Members by household: head, spouse (80%), 0-3 children, an elderly parent (25%)."""
    n_house = max(1, int(spec.persons / 2.9))
    has_spouse = rng.random(n_house) < 0.8
    n_children = rng.choice([0, 1, 2, 3], n_house, p=[0.2, 0.4, 0.3, 0.1])
    has_parent = rng.random(n_house) < 0.25
    head_age = rng.integers(22, 80, n_house)
    head_sex = np.where(rng.random(n_house) < 0.85, 1, 2)
    house = np.arange(n_house)
    child_house = np.repeat(house, n_children)
    child_order = pd.Series(child_house).groupby(child_house).cumcount().to_numpy()
    parts = [
        pd.DataFrame({"hh": house, "relation": "head", "sex": head_sex, "age": head_age, "order": 0}),
        pd.DataFrame({"hh": house[has_spouse], "relation": "spouse", "sex": 3 - head_sex[has_spouse], "order": 0,
                      "age": np.clip(head_age[has_spouse] + rng.integers(-4, 5, has_spouse.sum()), 20, 99)}),
        pd.DataFrame({"hh": child_house, "relation": "child", "sex": rng.integers(1, 3, len(child_house)),
                      "order": child_order,
                      "age": head_age[child_house] - rng.integers(20, 36, len(child_house))}),
        pd.DataFrame({"hh": house[has_parent], "relation": "parent", "sex": rng.integers(1, 3, has_parent.sum()),
                      "order": 0, "age": np.clip(head_age[has_parent] + rng.integers(22, 32, has_parent.sum()), 45, 104)}),
    ]
    people = pd.concat(parts, ignore_index=True)
    people = people[people["age"] >= 0]  # no children for heads too young to have them
    people = people.sort_values(["hh", "relation"], kind="stable")
    return people.head(spec.persons).reset_index(drop=True), n_house


def _names(rng: np.random.Generator, people: pd.DataFrame, sex: np.ndarray, hh: np.ndarray, n_house: int,
           twin: np.ndarray, first_child_of: np.ndarray, minority: np.ndarray) -> np.ndarray:
    """Full names: household surnames (spouses and parents married in), given names by sex, twins sharing
    a first given character, minority names with the middle dot."""
    n = len(sex)
    weights = np.array([w for _, w in SURNAMES], dtype=float)
    surname_vals = np.array([s for s, _ in SURNAMES])
    p = weights / weights.sum()
    surname = rng.choice(surname_vals, n_house, p=p)[hh]
    married_in = people["relation"].isin(["spouse", "parent"]).to_numpy()
    surname[married_in] = rng.choice(surname_vals, married_in.sum(), p=p)

    given = np.empty(n, dtype=object)
    for code in (1, 2):
        idx = np.flatnonzero(sex == code)
        common = rng.random(len(idx)) < 0.15
        two = rng.random(len(idx)) < 0.7
        first = rng.choice(GIVEN_CHARS[code], len(idx)).astype(str)
        second = rng.choice(GIVEN_CHARS[code], len(idx)).astype(str)
        plain = np.where(two, np.char.add(first, second), first)
        given[idx] = np.where(common, rng.choice(COMMON_GIVEN[code], len(idx)), plain)
    # twins share the first given character with their sibling: hard negatives for matching
    twin_idx = np.flatnonzero(twin)
    given[twin_idx] = (pd.Series(given[first_child_of[twin_idx]]).str.slice(0, 1)
                       + pd.Series(rng.choice(GIVEN_CHARS[1] + GIVEN_CHARS[2], len(twin_idx)))).to_numpy()
    names = np.char.add(surname.astype(str), given.astype(str)).astype(object)
    mino = np.flatnonzero(minority)
    if len(mino):
        own = np.where(sex[mino] == 1, rng.choice(MINORITY_GIVEN[1], len(mino)), rng.choice(MINORITY_GIVEN[2], len(mino)))
        names[mino] = (pd.Series(own) + "·" + pd.Series(rng.choice(MINORITY_FAMILY, len(mino)))).to_numpy()
    return names


def generate_county(spec: CountySpec = CountySpec()) -> pd.DataFrame:
    """Persons of one county, one row each, grouped in households.

    Columns: person_id, household_id, relation (head/spouse/child/parent), name, sex (1/2),
    birth_date, id_number (None for some infants), region_code, address, phone, mobile,
    migrant, minority, dibao_household, disabled, disability_level, deceased_on, mother_id,
    twin_of.
    """
    rng = np.random.default_rng(spec.seed)
    people, n_house = _households(spec, rng)
    n = len(people)
    hh = people["hh"].to_numpy()
    sex = people["sex"].to_numpy()
    age = people["age"].to_numpy()

    birth = pd.Series(pd.to_datetime(TODAY) - pd.to_timedelta(age * 365 + rng.integers(0, 365, n), unit="D"))
    # twins: some later children share the first child's birth date (and often a given-name character)
    is_child = (people["relation"] == "child").to_numpy()
    first_child_of = pd.Series(np.where(is_child & (people["order"].to_numpy() == 0), np.arange(n), -1)) \
        .groupby(hh).transform("max").to_numpy()
    twin = is_child & (people["order"].to_numpy() > 0) & (first_child_of >= 0) & (rng.random(n) < spec.twin_share)
    birth[twin] = birth[first_child_of[twin]].to_numpy()

    migrant_house = rng.random(n_house) < spec.migrant_share
    minority_house = migrant_house & (rng.random(n_house) < spec.minority_share)
    migrant = migrant_house[hh]
    minority = minority_house[hh]

    names = _names(rng, people, sex, hh, n_house, twin, first_child_of, minority)

    county = np.where(migrant_house, rng.choice(MIGRANT_COUNTIES, n_house), LOCAL_COUNTY)[hh]
    county[minority] = rng.choice(MINORITY_COUNTIES, minority.sum())
    old_local = (county == LOCAL_COUNTY) & (birth.dt.year.to_numpy() < 1995) & (rng.random(n) < 0.5)
    county = np.where(old_local, LOCAL_COUNTY_BEFORE_2000, county)
    ids = id_numbers(county, birth, sex, rng).astype(object)
    infant = (age == 0) & (rng.random(n) < spec.infant_without_id_share)
    ids[infant] = None

    town = rng.choice(TOWNS, n_house)
    village = rng.choice(VILLAGES, n_house)
    group = rng.integers(1, 16, n_house)
    house_no = rng.integers(1, 120, n_house)
    address = (pd.Series(town) + pd.Series(village) + pd.Series(group).astype(str) + "组"
               + pd.Series(house_no).astype(str) + "号").to_numpy()

    def mobiles(k: int) -> np.ndarray:
        return ("1" + pd.Series(rng.choice(MOBILE_PREFIXES, k))
                + pd.Series(rng.integers(0, 10**8, k)).astype(str).str.zfill(8)).to_numpy()

    house_phone = mobiles(n_house)
    own_mobile = (age >= 18) & (age <= 70) & (rng.random(n) < 0.6)
    mobile = np.where(own_mobile, mobiles(n), None)

    dibao_house = rng.random(n_house) < spec.dibao_share
    disabled = rng.random(n) < spec.disability_share * np.where(age >= 60, 2.0, 0.7)
    level = np.where(disabled, rng.choice([1, 2, 3, 4], n, p=[0.1, 0.25, 0.3, 0.35]), 0)
    dead = (age >= 70) & (rng.random(n) < spec.death_share)
    deceased_on = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]")
    deceased_on[dead] = pd.Timestamp(TODAY) - pd.to_timedelta(rng.integers(1, 700, dead.sum()), unit="D")

    person_ids = pd.Series(np.arange(n)).map("P{:07d}".format).to_numpy()
    # the mother of a child: the head or spouse of the household who is female
    female_adult = np.where(people["relation"].isin(["head", "spouse"]).to_numpy() & (sex == 2), np.arange(n), -1)
    mother_idx = pd.Series(female_adult).groupby(hh).transform("max").to_numpy()
    mother_id = np.where(is_child & (mother_idx >= 0), person_ids[np.clip(mother_idx, 0, None)], None)

    return pd.DataFrame({
        "person_id": person_ids,
        "household_id": pd.Series(hh).map("H{:07d}".format).to_numpy(),
        "relation": people["relation"].to_numpy(),
        "name": names,
        "sex": sex,
        "birth_date": birth.dt.date.to_numpy(),
        "id_number": ids,
        "region_code": county,
        "address": address[hh],
        "phone": house_phone[hh],
        "mobile": mobile,
        "migrant": migrant,
        "minority": minority,
        "dibao_household": dibao_house[hh],
        "disabled": disabled,
        "disability_level": level,
        "deceased_on": np.array([d if pd.notna(d) else None for d in deceased_on.dt.date], dtype=object),
        "mother_id": mother_id,
        "twin_of": np.where(twin, person_ids[np.clip(first_child_of, 0, None)], None),
    })
