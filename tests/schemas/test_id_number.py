import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.id_number import check_character, standardize_id_numbers

TRICKY = [
    # raw value, expected status, expected clean value
    ("11010519491231002X", "valid", "11010519491231002X"),            # GB 11643 example (Beijing)
    ("34052419800101001X", "valid", "34052419800101001X"),            # appendix B example
    ("440524188001010014", "valid", "440524188001010014"),            # born 1880
    ("11010519491231002x", "valid", "11010519491231002X"),            # lower-case x
    ("１１０１０５１９４９１２３１００２Ｘ", "valid", "11010519491231002X"),  # full-width
    (" 1101 0519 4912 3100 2X\u3000", "valid", "11010519491231002X"),  # spaces, ideographic space
    ("110105491231002", "upgraded_from_15", "11010519491231002X"),    # first generation
    ("11010519491231003X", "checksum_error", None),                   # one digit typed wrong
    ("11010519491321002X", "checksum_error", None),                   # adjacent digits transposed
    ("11010519491331002X", "checksum_error", None),
    ("无", "placeholder", None),
    ("/", "placeholder", None),
    ("000000000000000000", "placeholder", None),
    ("111111111111111111", "placeholder", None),
    ("", "missing", None),
    (None, "missing", None),
    ("   ", "missing", None),
    ("1101051949123100", "malformed", None),                          # 16 digits
    ("11010519491231002Y", "malformed", None),
    ("abc", "malformed", None),
    # went through a floating-point number: the last digits are made up, whatever the checksum says
    ("3.41522199001018e+17", "precision_lost", None),                 # an Excel numeric cell, read as a float
    ("3.41522E+17", "precision_lost", None),                          # a JSON number as the platform sent it
    ("341522199001010688.0", "precision_lost", None),                 # passes the checksum without the tail
    ("110105491231002.0", "precision_lost", None),
    (341522199001010661.0, "precision_lost", None),                   # a float object (reads 341522199001010688)
    ("12.5", "malformed", None),
]


@pytest.mark.parametrize(("raw", "status", "clean"), TRICKY)
def test_tricky_values(raw, status, clean):
    out = standardize_id_numbers(pd.Series([raw], dtype=object)).iloc[0]
    assert out["id_number_status"] == status
    assert (None if pd.isna(out["id_number"]) else out["id_number"]) == clean


def _with_check(body: str) -> str:
    return body + check_character(body)


def test_bad_date_and_bad_region_are_flagged_not_corrected():
    future = _with_check("11010520991231002")
    impossible = _with_check("11010519490231002")  # 31 February... well, 1949-02-31
    nowhere = _with_check("99010519491231002")
    out = standardize_id_numbers(pd.Series([future, impossible, nowhere]), today=dt.date(2026, 11, 21))
    assert out["id_number_status"].tolist() == ["bad_date", "bad_date", "bad_region"]
    assert out["id_number"].isna().all()


def test_derived_birth_date_sex_and_region():
    out = standardize_id_numbers(pd.Series(["34052419800101001X", "11010519491231002X"]))
    assert out["id_birth_date"].tolist() == [dt.date(1980, 1, 1), dt.date(1949, 12, 31)]
    assert out["id_sex"].tolist() == [1, 2]
    assert out["id_region"].tolist() == ["340524", "110105"]


def test_historical_and_residence_permit_regions_are_valid():
    old_code = _with_check("34242319700101001")  # 霍邱县 before 1999
    hk = _with_check("81000019900101001")
    out = standardize_id_numbers(pd.Series([old_code, hk]))
    assert out["id_number_status"].tolist() == ["valid", "valid"]


bodies = st.builds(
    lambda region, day, seq: region + (dt.date(1920, 1, 1) + dt.timedelta(days=day)).strftime("%Y%m%d") + f"{seq:03d}",
    st.sampled_from(["110105", "341522", "342423", "440524", "510129"]),
    st.integers(0, 36000),
    st.integers(0, 999),
)


@given(bodies)
def test_every_well_formed_number_is_valid(body):
    out = standardize_id_numbers(pd.Series([_with_check(body)])).iloc[0]
    assert out["id_number_status"] == "valid"
    assert out["id_sex"] == (1 if int(body[16]) % 2 else 2)


@given(bodies, st.integers(0, 16), st.integers(1, 9))
def test_any_single_digit_error_is_caught(body, position, delta):
    good = _with_check(body)
    wrong = good[:position] + str((int(good[position]) + delta) % 10) + good[position + 1:]
    out = standardize_id_numbers(pd.Series([wrong])).iloc[0]
    assert out["id_number_status"] != "valid"
    assert pd.isna(out["id_number"])


@given(bodies, st.integers(0, 15))
def test_adjacent_transpositions_are_caught(body, position):
    good = _with_check(body)
    if good[position] == good[position + 1]:
        return
    swapped = good[:position] + good[position + 1] + good[position] + good[position + 2:]
    assert standardize_id_numbers(pd.Series([swapped])).iloc[0]["id_number_status"] != "valid"


@given(bodies)
def test_fifteen_digit_upgrade_round_trip(body):
    if not body[6:8] == "19":
        return
    fifteen = body[:6] + body[8:17]
    out = standardize_id_numbers(pd.Series([fifteen])).iloc[0]
    assert out["id_number_status"] == "upgraded_from_15"
    assert out["id_number"] == _with_check(body)


@settings(max_examples=300)
@given(st.lists(st.one_of(st.text(max_size=40), st.none(), st.integers().map(str)), max_size=20))
def test_hostile_input_never_raises_and_always_has_a_status(values):
    out = standardize_id_numbers(pd.Series(values, dtype=object))
    assert len(out) == len(values)
    assert out["id_number_status"].notna().all()
