"""Birth dates typed wrong while the ID number is right: the number still links the record, as long as
the difference looks like a real slip and the name agrees; family members stay apart.

A lunar (农历) birthday written as a Gregorian date, a swapped day and month, one mistyped digit, a
newborn's registration date, a year-only placeholder — each on a record carrying the person's own
valid ID number and name. Twins, a parent and child, and a spouse's number typed on a record are
the cases that must not link. Every case runs through the whole set and through a delta."""

from __future__ import annotations

import pandas as pd
import pytest

from mpi.features import build_features, date_error_kind, lunar_to_gregorian
from tests.mpi.test_link import HOUSE, PATHS, PHONE, link, make_id, same_cluster, std_of


def person(name: str, number: str | None, sex: str, written: str, **extra) -> dict:
    return {"name": name, "id_number": number, "sex": sex, "birth_date": written, "address": HOUSE, "phone": PHONE,
            **extra}


def three_records(name: str, sex: str, born: str, written: str) -> list[dict]:
    """Two clean records of one person and a third with the birth date ``written`` (from another department)."""
    number = make_id(born, "013" if sex == "男" else "024")  # the sequence number's parity is the sex
    return [person(name, number, sex, born), person(name, number, sex, born),
            person(name, number, sex, written, phone=None)]


SLIPS = {
    # 1950-03-20 is the 3rd day of the 2nd lunar month: written 1950-02-03
    "lunar": ("1950-03-20", "1950-02-03"),
    # 1948-01-25 is the 15th day of the 12th lunar month of the previous year
    "lunar, previous year": ("1948-01-25", "1947-12-15"),
    # 1944-06-12 falls in the leap 4th month (闰四月 22)
    "lunar, leap month": ("1944-06-12", "1944-04-22"),
    "day and month swapped": ("1985-04-09", "1985-09-04"),
    "one digit of the day": ("1972-06-18", "1972-06-13"),
    "one digit of the year": ("1972-06-18", "1978-06-18"),
    "registration date": ("2025-10-01", "2025-10-29"),
    "year-only placeholder": ("1935-05-17", "1935-01-01"),
    "a few days off": ("1966-12-30", "1967-01-02"),
    "personnel-file year": ("1959-08-28", "1961-08-28"),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("slip", list(SLIPS))
def test_a_slipped_birth_date_links_on_the_persons_own_id_and_name(slip, path):
    born, written = SLIPS[slip]
    cw, outcome, _ = link(three_records("周桂英", "女", born, written), path)
    assert same_cluster(cw, 0, 2) and same_cluster(cw, 1, 2), (slip, cw)
    assert cw.loc[2, "reason"] == "exact_id"  # the deterministic pass anchors it: the number is trusted


def test_the_slip_is_named_and_the_record_carries_the_id_numbers_date():
    written = pd.Series(["1950-02-03", "1985-09-04", "1972-06-13", "2025-10-29", "1935-01-01", "1961-08-28",
                         "1960-05-05", "1982-02-14", "1955-08-28", None])
    true = pd.Series(["1950-03-20", "1985-04-09", "1972-06-18", "2025-10-01", "1935-05-17", "1959-08-28",
                      "1957-11-23", "1962-02-14", "1963-08-28", "1970-01-01"])
    kinds = date_error_kind(written, true).tolist()
    assert kinds[:6] == ["lunar", "swapped", "one_digit", "near", "placeholder", "archive_year"]
    # years apart: a family member's date; one digit apart but a generation apart: a parent's number;
    # the same day and month eight years apart: a sibling's number
    assert all(pd.isna(k) for k in kinds[6:])
    assert "1950-03-20" in lunar_to_gregorian("1950-02-03")
    assert lunar_to_gregorian("1950-01-31") == ()  # no lunar month has a 31st day

    feats = build_features(std_of(three_records("周桂英", "女", "1950-03-20", "1950-02-03")))
    assert feats["id_valid"].notna().all() and not feats["id_conflict"].any()
    assert set(feats["dob"]) == {"1950-03-20"}


@pytest.mark.parametrize("path", PATHS)
def test_twins_stay_apart_when_one_record_has_a_slipped_date(path):
    a, b = make_id("2012-05-06", "031"), make_id("2012-05-06", "053")
    rows = [
        person("王子涵", a, "男", "2012-05-06"), person("王子涵", a, "男", "2012-05-06"),
        person("王子轩", b, "男", "2012-05-06"),
        # the second twin, his own number, the day and month swapped
        person("王子轩", b, "男", "2012-06-05"),
        # the second twin's name with the first twin's number and a date a day off
        person("王子轩", a, "男", "2012-05-07"),
    ]
    cw, _, _ = link(rows, path)
    assert same_cluster(cw, 0, 1) and same_cluster(cw, 2, 3)
    assert not any(same_cluster(cw, i, j) for i in (0, 1) for j in (2, 3, 4))


@pytest.mark.parametrize("path", PATHS)
def test_parent_and_child_stay_apart_when_the_years_differ_in_one_digit(path):
    father = make_id("1962-02-14", "015")
    rows = [
        person("张伟", father, "男", "1962-02-14"), person("张伟", father, "男", "1962-02-14"),
        # the son, same name and house, with the father's number: 1962 and 1982 differ in one digit
        person("张伟", father, "男", "1982-02-14"),
        person("张伟", None, "男", "1982-02-14"),
    ]
    cw, _, _ = link(rows, path)
    assert same_cluster(cw, 0, 1)
    assert not any(same_cluster(cw, i, j) for i in (0, 1) for j in (2, 3))


@pytest.mark.parametrize("path", PATHS)
def test_a_spouses_number_stays_out_even_when_the_dates_look_like_a_slip(path):
    husband, wife = make_id("1970-10-01", "017"), make_id("1970-10-04", "024")
    rows = [
        person("刘建军", husband, "男", "1970-10-01"), person("刘建军", husband, "男", "1970-10-01"),
        person("陈秀英", wife, "女", "1970-10-04"),
        # her record with his number: her date is three days (one digit) from his, but she is a woman
        person("陈秀英", husband, "女", "1970-10-04"),
    ]
    cw, _, _ = link(rows, path)
    assert same_cluster(cw, 0, 1) and same_cluster(cw, 2, 3)
    assert not any(same_cluster(cw, i, j) for i in (0, 1) for j in (2, 3))
