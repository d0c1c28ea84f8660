import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.phones import STATUSES, USABLE, standardize_phones

TRICKY = [
    # raw value, E.164, type, status
    ("13812345678", "+8613812345678", "mobile", "valid"),
    ("138-1234-5678", "+8613812345678", "mobile", "valid"),
    ("138 1234 5678", "+8613812345678", "mobile", "valid"),
    ("(138)1234.5678", "+8613812345678", "mobile", "valid"),
    ("+86 138 1234 5678", "+8613812345678", "mobile", "valid"),
    ("008613812345678", "+8613812345678", "mobile", "valid"),
    ("8613812345678", "+8613812345678", "mobile", "valid"),
    ("１３８１２３４５６７８", "+8613812345678", "mobile", "valid"),
    (13812345678, "+8613812345678", "mobile", "valid"),
    (13812345678.0, "+8613812345678", "mobile", "valid"),      # a float column from a spreadsheet
    ("手机：13812345678", "+8613812345678", "mobile", "valid"),  # a label
    ("13812345678（本人）", "+8613812345678", "mobile", "valid"),  # a note
    ("19912345678", "+8619912345678", "mobile", "valid"),
    ("010-62345678", "+861062345678", "landline", "valid"),
    ("(010)62345678", "+861062345678", "landline", "valid"),
    ("0551-6234567", "+865516234567", "landline", "valid"),
    ("0564 62345678", "+8656462345678", "landline", "valid"),
    ("+86 10 6234 5678", "+861062345678", "landline", "valid"),   # after +86 the trunk 0 is gone
    ("+86 (0)10 62345678", "+861062345678", "landline", "valid"),
    ("010-62345678转123", "+861062345678", "landline", "valid"),   # extension dropped
    ("010-62345678 ext 123", "+861062345678", "landline", "valid"),
    ("0551-6234567-801", "+865516234567", "landline", "valid"),
    ("4008123123", "+864008123123", "service", "valid"),
    ("400-812-3123", "+864008123123", "service", "valid"),
    ("800 810 8888", "+868008108888", "service", "valid"),
    ("13812345678/13987654321", "+8613812345678", "mobile", "multiple"),
    ("13812345678，13987654321", "+8613812345678", "mobile", "multiple"),
    ("13812345678 13987654321", "+8613812345678", "mobile", "multiple"),
    ("13812345678或0564-6234567", "+8613812345678", "mobile", "multiple"),
    ("13812345678\n13987654321", "+8613812345678", "mobile", "multiple"),
    ("62345678", None, None, "no_area_code"),
    ("1381234567", None, None, "invalid"),       # ten digits
    ("12812345678", None, None, "invalid"),      # mobiles start 13-19
    ("138123456789", None, None, "invalid"),
    ("+1 415 555 1234", None, None, "invalid"),  # not a mainland number
    ("abc", None, None, "invalid"),
    ("00000000000", None, None, "placeholder"),
    ("11111111111", None, None, "placeholder"),
    ("12345678901", None, None, "placeholder"),
    ("13800138000", None, None, "placeholder"),
    ("0", None, None, "placeholder"),
    ("无", None, None, "placeholder"),
    ("/", None, None, "placeholder"),
    ("", None, None, "missing"),
    (" ", None, None, "missing"),
    (None, None, None, "missing"),
]


@pytest.mark.parametrize(("raw", "phone", "kind", "status"), TRICKY)
def test_tricky_values(raw, phone, kind, status):
    out = standardize_phones(pd.Series([raw], dtype=object)).iloc[0]
    assert out["phone_status"] == status
    assert (None if pd.isna(out["phone"]) else out["phone"]) == phone
    assert (None if pd.isna(out["phone_type"]) else out["phone_type"]) == kind


@settings(deadline=None)  # the first example loads the code tables
@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True), st.sampled_from(["{}", "+86{}", "+86 {}", "0086{}", "{} "]))
def test_every_mobile_number_in_any_dress_is_the_same_number(number, dress):
    out = standardize_phones(pd.Series([dress.format(number)])).iloc[0]
    if out["phone_status"] == "placeholder":  # 13800138000, 13333333333
        return
    assert out["phone"] == "+86" + number


@settings(deadline=None)  # the first example loads the code tables
@given(st.lists(st.one_of(st.text(max_size=30), st.none(), st.integers(), st.floats()), max_size=20))
def test_hostile_input_always_has_a_status(values):
    out = standardize_phones(pd.Series(values, dtype=object))
    assert out["phone_status"].isin(STATUSES).all()
    assert (out["phone_status"].isin(USABLE) == out["phone"].notna()).all()
    assert out["phone"].dropna().str.fullmatch(r"\+86[0-9]{7,12}").all()
