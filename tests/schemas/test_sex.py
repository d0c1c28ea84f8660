import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.sex import STATUSES, standardize_sex

TRICKY = [
    # raw value, expected code, expected status
    ("男", 1, "valid"), ("女", 2, "valid"), ("男性", 1, "valid"), ("女性", 2, "valid"),
    ("M", 1, "valid"), ("f", 2, "valid"), (" m ", 1, "valid"), ("Ｍ", 1, "valid"), ("male", 1, "valid"),
    ("1", 1, "valid"), ("2", 2, "valid"), (1, 1, "valid"), ("1.0", 1, "valid"), (2.0, 2, "valid"),
    ("0", 0, "valid"), ("9", 9, "valid"), ("未知", 0, "valid"), ("不详", 0, "valid"), ("未说明", 9, "valid"),
    ("男 ", 1, "valid"),
    (None, None, "missing"), ("", None, "missing"), ("  ", None, "missing"), ("无", None, "missing"),
    ("X", None, "unknown_code"), ("3", None, "unknown_code"), ("男女", None, "unknown_code"), (True, None, "unknown_code"),
]


@pytest.mark.parametrize(("raw", "code", "status"), TRICKY)
def test_tricky_values(raw, code, status):
    out = standardize_sex(pd.Series([raw], dtype=object)).iloc[0]
    assert out["sex_status"] == status
    assert (None if pd.isna(out["sex"]) else out["sex"]) == code


def test_a_source_code_map_overrides_the_default_for_its_keys():
    # a system that writes 0 for female: 0 is no longer "unknown", the other defaults still hold
    out = standardize_sex(pd.Series(["0", "1", "男", "9"]), codes={"0": 2, "1": 1})
    assert out["sex"].tolist() == [2, 1, 1, 9]
    assert standardize_sex(pd.Series(["Ｍ"]), codes={"m": 2})["sex"].tolist() == [2]  # keys normalized like values


def test_code_map_values_must_be_gb_codes():
    with pytest.raises(ValueError, match="GB/T 2261.1"):
        standardize_sex(pd.Series(["0"]), codes={"0": 3})


def test_conflict_with_the_id_number_is_reported_and_the_value_kept():
    raw = pd.Series(["男", "女", "男", "0", "男", None], index=[4, 5, 6, 7, 8, 9])
    id_sex = pd.Series([2, 2, pd.NA, 1, 1, 2], index=[4, 5, 6, 7, 8, 9], dtype="Int16")
    out = standardize_sex(raw, id_sex=id_sex)
    assert out["sex_status"].tolist() == ["conflict_with_id", "valid", "valid", "valid", "valid", "missing"]
    assert out["sex"].tolist()[:5] == [1, 2, 1, 0, 1]
    assert str(out["sex"].dtype) == "Int16"


@settings(deadline=None)  # the first example loads the code tables
@given(st.lists(st.one_of(st.text(max_size=10), st.none(), st.integers(), st.floats()), max_size=20))
def test_hostile_input_always_has_a_status(values):
    out = standardize_sex(pd.Series(values, dtype=object))
    assert out["sex_status"].isin(STATUSES).all()
    assert ((out["sex_status"] == "valid") == out["sex"].notna()).all()
