"""Birth dates typed wrong while the ID number stays right: each kind at about its rate, where it
really happens (lunar birthdays among older rural residents, registration dates among infants), and
really in the served values."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from lunardate import LunarDate

from simulators.county import SimulatedCounty
from simulators.errors import ErrorProfile, lunar_as_gregorian, mess_birth_dates
from simulators.population import TODAY, CountySpec

N = 200_000
KINDS = ("dob_lunar", "dob_swap", "dob_digit", "dob_registration", "dob_year_only", "dob_near", "dob_archive_year")
# the default profile, with the personnel-file year the pension roll has switched on
PROFILE = replace(ErrorProfile(), dob_archive_year=0.004)


@pytest.fixture(scope="module")
def messed():
    rng = np.random.default_rng(11)
    age = rng.integers(0, 100, N)
    birth = pd.Series(pd.to_datetime(TODAY) - pd.to_timedelta(age * 365 + rng.integers(0, 365, N), unit="D"))
    rural = rng.random(N) < 0.6
    typed, hits = mess_birth_dates(birth, age, rural, TODAY, PROFILE, np.random.default_rng(12))
    return birth.dt.date, typed, hits, age, rural


def test_each_kind_at_about_its_rate_among_the_eligible(messed):
    birth, typed, hits, age, rural = messed
    p = PROFILE
    day = np.array([d.day for d in birth])
    month = np.array([d.month for d in birth])
    expected = {  # share of eligible records, eligible
        "dob_lunar": (p.dob_lunar, rural & (age >= 60)),
        "dob_registration": (p.dob_registration, age <= 2),
        "dob_year_only": (p.dob_year_only, age >= 80),
        "dob_swap": (p.dob_swap, (day <= 12) & (day != month)),
        "dob_digit": (p.dob_digit, np.ones(N, dtype=bool)),
        "dob_near": (p.dob_near, np.ones(N, dtype=bool)),
        "dob_archive_year": (p.dob_archive_year, age >= 40),
    }
    for kind, (rate, eligible) in expected.items():
        observed = hits[kind][eligible].mean()
        assert abs(observed - rate) <= max(0.3 * rate, 0.0005), (kind, observed, rate)
    assert not hits["dob_lunar"][~rural].any()  # lunar birthdays: rural residents
    assert not hits["dob_registration"][age > 2].any()  # registration dates: infants
    assert not hits["dob_year_only"][age < 65].any()  # year-only dates: the old
    # older rural residents far more than the young
    assert hits["dob_lunar"][rural & (age >= 60)].mean() > 5 * hits["dob_lunar"][rural & (age < 40)].mean()
    # at most one date error per record
    assert (np.sum([hits[k] for k in KINDS], axis=0) <= 1).all()


def test_each_kind_looks_like_itself(messed):
    birth, typed, hits, _, _ = messed
    for i in np.flatnonzero(hits["dob_lunar"])[:200]:
        lunar = LunarDate.from_solar_date(birth[i].year, birth[i].month, birth[i].day)
        assert typed[i] == dt.date(lunar.year, lunar.month, lunar.day)
        assert typed[i] < birth[i]  # the lunar date runs weeks behind the Gregorian one
    for i in np.flatnonzero(hits["dob_swap"]):
        assert (typed[i].year, typed[i].month, typed[i].day) == (birth[i].year, birth[i].day, birth[i].month)
    for i in np.flatnonzero(hits["dob_digit"]):
        a, b = typed[i].strftime("%Y%m%d"), birth[i].strftime("%Y%m%d")
        assert sum(x != y for x, y in zip(a, b)) == 1 and a[:2] == b[:2]
    for i in np.flatnonzero(hits["dob_registration"]):
        assert 7 <= (typed[i] - birth[i]).days <= 60
    for i in np.flatnonzero(hits["dob_year_only"]):
        assert typed[i].year == birth[i].year and (typed[i].month, typed[i].day) in {(1, 1), (7, 1)}
    for i in np.flatnonzero(hits["dob_near"]):
        assert 1 <= abs((typed[i] - birth[i]).days) <= 7
    for i in np.flatnonzero(hits["dob_archive_year"]):
        assert (typed[i].month, typed[i].day) == (birth[i].month, birth[i].day)
        assert 1 <= abs(typed[i].year - birth[i].year) <= 3
    changed = np.any([hits[k] for k in KINDS], axis=0)
    assert (typed[~changed] == birth[~changed]).all() and (typed[changed] != birth[changed]).all()
    assert (typed <= TODAY).all()


def test_a_lunar_birthday_in_january_is_written_in_the_previous_year():
    assert lunar_as_gregorian(dt.date(1948, 1, 25)) == dt.date(1947, 12, 15)
    assert lunar_as_gregorian(dt.date(1950, 3, 20)) == dt.date(1950, 2, 3)


def test_the_served_birth_dates_carry_the_errors_and_the_id_numbers_do_not():
    county = SimulatedCounty.create(CountySpec(persons=20_000, seed=7))
    roll = county.rolls["rs_yanglao"]
    served = county.served("rs_yanglao")
    pop = county.population.set_index("person_id")
    true = pd.to_datetime(roll["_person_id"].map(pop["birth_date"])).dt.strftime("%Y%m%d")
    hit = roll["_errors"].str.contains("dob_")
    assert hit.sum() > 50 and roll["_errors"].str.contains("dob_lunar").sum() > 20
    assert roll["_errors"].str.contains("dob_archive_year").sum() > 5
    assert (served.loc[hit, "aac006"] != true[hit]).all()
    clean = roll["_errors"] == ""
    assert (served.loc[clean, "aac006"] == true[clean]).all()
    # the ID number is untouched by a date error: it still encodes the true date
    only_dob = hit & ~roll["_errors"].str.contains("id_")
    assert (served.loc[only_dob, "aac002"].str.slice(6, 14) == true[only_dob]).all()
    # birth certificates carry the hospital's date
    births = county.rolls["wj_chusheng"]["_errors"]
    assert not births.str.contains("dob_lunar|dob_registration").any()
