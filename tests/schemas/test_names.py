import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.masking import mask_id_number, mask_name
from schemas.names import standardize_names


@pytest.mark.parametrize(("raw", "name", "key", "status"), [
    ("张伟", "张伟", "张伟", "valid"),
    ("張偉", "張偉", "张伟", "valid"),                    # traditional kept, key simplified
    ("张 伟", "张伟", "张伟", "valid"),                   # stray ASCII space
    ("王\u3000芳", "王芳", "王芳", "valid"),              # ideographic space
    ("买买提•艾力", "买买提·艾力", "买买提艾力", "valid"),   # bullet separator
    ("买买提.艾力", "买买提·艾力", "买买提艾力", "valid"),
    ("买买提・艾力", "买买提·艾力", "买买提艾力", "valid"),  # katakana middle dot
    ("欧阳娜娜", "欧阳娜娜", "欧阳娜娜", "valid"),
    ("无", None, None, "placeholder"),
    ("不详", None, None, "placeholder"),
    ("", None, None, "missing"),
    (None, None, None, "missing"),
    ("李1娜", None, None, "malformed"),
])
def test_tricky_names(raw, name, key, status):
    out = standardize_names(pd.Series([raw], dtype=object)).iloc[0]
    assert out["name_status"] == status
    assert (None if pd.isna(out["name"]) else out["name"]) == name
    assert (None if pd.isna(out["name_key"]) else out["name_key"]) == key


@given(st.lists(st.one_of(st.text(max_size=60), st.none()), max_size=20))
def test_hostile_names_never_raise(values):
    out = standardize_names(pd.Series(values, dtype=object))
    assert out["name_status"].notna().all()


def test_masks_hide_the_middle_of_id_numbers_and_given_names():
    assert mask_id_number("34152219800101123X") == "341522********123X"
    assert mask_id_number("12345") == "*****"
    assert mask_id_number(None) == "<empty>"
    assert mask_name("欧阳娜娜") == "欧***"
