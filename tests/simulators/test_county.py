"""The synthetic county and its rolls: deterministic, and statistically like the real thing."""

import numpy as np
import pandas as pd
import pytest

from simulators.county import SimulatedCounty
from simulators.errors import ErrorProfile
from simulators.population import CountySpec, generate_county
from simulators.subsystems import SUBSYSTEMS

W = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])


@pytest.fixture(scope="module")
def big():
    return SimulatedCounty.create(CountySpec(persons=100_000, seed=5))


def _valid_id(s: str) -> bool:
    return "10X98765432"[int(np.dot([int(c) for c in s[:17]], W)) % 11] == s[17]


def test_deterministic_for_a_seed():
    a = generate_county(CountySpec(persons=2000, seed=3))
    b = generate_county(CountySpec(persons=2000, seed=3))
    c = generate_county(CountySpec(persons=2000, seed=4))
    pd.testing.assert_frame_equal(a, b)
    assert not a["name"].equals(c["name"])
    ra = SimulatedCounty.create(CountySpec(persons=2000, seed=3))
    rb = SimulatedCounty.create(CountySpec(persons=2000, seed=3))
    for name in SUBSYSTEMS:
        pd.testing.assert_frame_equal(ra.served(name), rb.served(name))


def test_population_shape(big):
    pop = big.population
    ids = pop["id_number"].dropna()
    assert ids.is_unique
    assert all(_valid_id(s) for s in ids.sample(2000, random_state=1))
    seventeenth = ids.str.slice(16, 17).astype(int)
    assert ((seventeenth % 2 == 1) == (pop.loc[ids.index, "sex"] == 1)).all()
    assert (ids.str.slice(6, 14) == pd.to_datetime(pop.loc[ids.index, "birth_date"]).dt.strftime("%Y%m%d")).all()
    # locals and migrants, old and new local codes, minority names with the · separator
    assert {"341522", "342423"} <= set(pop["region_code"])
    assert 0.05 < pop["migrant"].mean() < 0.15
    assert pop.loc[pop["minority"], "name"].str.contains("·").all() and pop["minority"].any()
    # households share the phone; deaths and disabilities exist
    assert (pop.groupby("household_id")["phone"].nunique() == 1).all()
    assert 0.005 < pop["deceased_on"].notna().mean() < 0.05
    assert 0.01 < pop["disabled"].mean() < 0.08
    assert pop["relation"].value_counts().to_dict().keys() >= {"head", "spouse", "child", "parent"}


def test_twin_rate_within_tolerance(big):
    pop = big.population
    later_children = pop[(pop["relation"] == "child")].groupby("household_id").cumcount() > 0
    twins = pop["twin_of"].notna().sum()
    rate = twins / later_children.sum()
    assert abs(rate - CountySpec().twin_share) < 0.006, rate
    twin = pop[pop["twin_of"].notna()].merge(pop, left_on="twin_of", right_on="person_id", suffixes=("", "_sib"))
    assert (twin["birth_date"] == twin["birth_date_sib"]).all()
    assert (twin["household_id"] == twin["household_id_sib"]).all()


def test_same_name_same_birthday_strangers_occur(big):
    pop = big.population
    groups = pop.groupby(["name", "birth_date"])["person_id"].transform("size")
    share = (groups > 1).mean()
    # at county scale common names make such strangers certain, but they stay rare
    assert 0.0005 < share < 0.02, share


def test_subsystem_coverage(big):
    pop = big.population.set_index("person_id")
    age = (pd.Timestamp("2026-11-01") - pd.to_datetime(pop["birth_date"])).dt.days // 365
    alive = pop["deceased_on"].isna()
    persons = {name: set(roll["_person_id"]) for name, roll in big.rolls.items()}
    assert persons["mz_gaoling"] == set(pop.index[age >= 80])
    assert persons["mz_dibao"] <= set(pop.index[pop["dibao_household"]])
    assert persons["wj_yuling"] == set(pop.index[(pop["sex"] == 2) & age.between(15, 49) & alive])
    assert persons["wj_liudong"] == set(pop.index[pop["migrant"] & alive])
    assert persons["mz_canji"] == set(pop.index[pop["disabled"] & alive])
    assert persons["wj_chusheng"] == set(pop.index[age <= 2])
    adults = set(pop.index[age >= 16])
    assert 0.8 < len(persons["rs_yanglao"] & adults) / len(adults) < 0.9
    assert 0.85 < len(persons["rs_yiliao"]) / len(pop) < 0.95
    assert len({s.department for s in SUBSYSTEMS.values()}) == 3 and len(SUBSYSTEMS) >= 8


@pytest.mark.parametrize("kind", ["id_typo", "id_transposition", "id_placeholder", "id_full_width", "wrong_sex",
                                  "duplicate", "stale_phone", "name_space"])
def test_error_rates_within_tolerance(big, kind):
    for name, sub in SUBSYSTEMS.items():
        roll = big.rolls[name]
        if len(roll) < 3000:
            continue
        observed = roll["_errors"].str.split(";").apply(lambda ks: kind in ks).mean()
        expected = getattr(sub.errors, kind)
        if kind == "duplicate":
            expected = expected / (1 + expected)  # duplicates are a share of the enrolled, counted over the roll
        assert abs(observed - expected) <= max(0.35 * expected, 0.002), (name, kind, observed, expected)


def test_the_errors_are_really_in_the_served_values(big):
    roll = big.rolls["wj_liudong"]
    served = big.served("wj_liudong")
    pop = big.population.set_index("person_id")
    truth_ids = roll["_person_id"].map(pop["id_number"])
    clean = (roll["_errors"] == "") & truth_ids.notna()
    assert (served.loc[clean, "公民身份号码"].str.upper() == truth_ids[clean]).all()
    typo = roll["_errors"].str.contains("id_typo")
    assert (served.loc[typo, "公民身份号码"] != truth_ids[typo]).all()
    assert not any(_valid_id(s) for s in served.loc[typo, "公民身份号码"])
    wrong_sex = roll["_errors"].str.contains("wrong_sex")
    assert (served.loc[wrong_sex, "性别"] != roll.loc[wrong_sex, "_person_id"].map(pop["sex"]).map({1: "男", 2: "女"})).all()


def test_planted_inconsistencies(big):
    found = big.planted_inconsistencies()
    assert set(found["kind"]) == {"deceased_active", "exclusive_programs", "shared_id_number", "sex_conflict",
                                  "birth_date_conflict"}
    pop = big.population.set_index("person_id")
    dead = found[found["kind"] == "deceased_active"]
    assert pop.loc[dead["person_id"], "deceased_on"].notna().all()
    # a birth-date conflict is a record whose birth date was typed wrong; one a generation off its own
    # ID number's is a shared number instead
    errors = big.truth().set_index(["source", "source_record_id"])["errors"]
    for kind in ("birth_date_conflict", "shared_id_number"):
        keys = found.loc[found["kind"] == kind, ["source", "source_record_id"]].itertuples(index=False)
        typed = [errors[tuple(k)] for k in keys]
        assert all("dob_" in e and "dob_generation" not in e for e in typed) if kind == "birth_date_conflict" \
            else all("id_family_member" in e or "dob_generation" in e for e in typed)


def test_next_day_changes_and_keeps_record_ids():
    day0 = SimulatedCounty.create(CountySpec(persons=30_000, seed=9))
    day1 = day0.next_day()
    assert day1.day == 1 and all(v > 0 for v in day1.changes.values()), day1.changes
    for name in SUBSYSTEMS:
        before, after = day0.rolls[name], day1.rolls[name]
        assert after["record_id"].iloc[: len(before)].tolist() == before["record_id"].tolist()
    births = day1.rolls["wj_chusheng"].iloc[len(day0.rolls["wj_chusheng"]):]
    assert len(births) == day1.changes["births"] and births["id_number"].isna().all()
    changed = sum(int((r["_updated"] > day0.as_of).sum()) for r in day1.rolls.values())
    assert changed >= day1.changes["deletions"] + day1.changes["corrections"]
    assert sum(int(r["_deleted"].sum()) for r in day1.rolls.values()) == day1.changes["deletions"]


def test_error_profile_rates_are_configurable():
    quiet = ErrorProfile(id_typo=0, id_transposition=0, id_lower_x=0, id_full_width=0, id_placeholder=0,
                         id_family_member=0, name_homophone=0, name_traditional=0, name_space=0,
                         minority_separator=0, wrong_sex=0, stale_phone=0, duplicate=0, dob_lunar=0, dob_swap=0,
                         dob_digit=0, dob_registration=0, dob_year_only=0, dob_near=0)
    from dataclasses import replace

    from simulators.subsystems import build_roll

    pop = generate_county(CountySpec(persons=5000, seed=2))
    roll = build_roll(replace(SUBSYSTEMS["rs_yiliao"], errors=quiet), pop, 1)
    assert (roll["_errors"] == "").all()


def test_a_small_county_with_no_deaths_yet_moves_on_day_by_day():
    from simulators.county import county_with_days

    county = county_with_days(CountySpec(persons=200, seed=1), 3)  # nobody had died on day 0
    assert county.day == 3 and len(county.population) >= 200


def test_a_county_served_ahead_of_today_is_named():
    import datetime as dt
    from types import SimpleNamespace
    from zoneinfo import ZoneInfo

    from hub.simulation import days_in_the_future

    now = dt.datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)
    assert days_in_the_future(SimpleNamespace(as_of=now + dt.timedelta(days=2, hours=12))) == 3
    assert days_in_the_future(SimpleNamespace(as_of=now - dt.timedelta(days=5))) == 0
