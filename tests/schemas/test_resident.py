import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from schemas import addresses, dates, id_number, names, phones, sex
from schemas.resident import STD_COLUMNS, standardize_frame

TODAY = dt.date(2026, 11, 21)
SURROGATE = re.compile("[\ud800-\udfff]")


def _frame(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"source": ["test"] * n, "source_record_id": [str(i) for i in range(n)], "name": ["张伟"] * n,
            "id_number": ["11010519491231002X"] * n}
    return pd.DataFrame(base | columns)


def test_every_field_gets_clean_values_and_statuses_beside_the_raw_ones():
    raw = _frame(name=["曾 志伟", "無"], id_number=["110105491231002", "11010519491231003X"], sex=["男", "F"],
                 birth_date=["1949/12/31", "32939"], phone=["010-62345678转1", "无"],
                 address=["城关镇东湖村三组12号", None], status=["正常", "死亡"], program=["dibao", "dibao"])
    out = standardize_frame(raw, default_county="341522", today=TODAY)
    assert list(out.columns) == [*STD_COLUMNS, "program"]
    first, second = out.iloc[0], out.iloc[1]
    assert (first["name"], first["name_pinyin"], first["name_surname"]) == ("曾志伟", "zengzhiwei", "曾")
    assert (first["id_number"], first["id_number_status"]) == ("11010519491231002X", "upgraded_from_15")
    assert (first["sex"], first["sex_status"]) == (1, "conflict_with_id")  # the ID number says female
    assert (first["birth_date"], first["birth_date_status"]) == (dt.date(1949, 12, 31), "valid")
    assert (first["phone"], first["phone_type"], first["phone_status"]) == ("+861062345678", "landline", "valid")
    assert (first["address_key"], first["address_status"]) == ("341522|城关镇|东湖村|3|12", "county_assumed")
    assert first["status_raw"] == "正常" and first["program"] == "dibao"
    assert (second["name_status"], second["id_number_status"], second["birth_date_status"], second["phone_status"],
            second["address_status"]) == ("placeholder", "checksum_error", "excel_serial", "placeholder", "missing")
    assert second["sex_status"] == "valid"  # no usable ID number: nothing to conflict with


def test_source_dialects_are_passed_through():
    raw = _frame(sex=["0", "1"], birth_date=["07/03/1990", "1990-03-07"], phone=[None, None], address=[None, None])
    out = standardize_frame(raw, sex_codes={"0": 2, "1": 1}, date_formats=["%d/%m/%Y"], today=TODAY)
    assert out["sex"].tolist() == [2, 1]
    assert out["birth_date"].tolist() == [dt.date(1990, 3, 7)] * 2


def test_optional_columns_may_be_absent_and_the_index_is_kept():
    raw = _frame(name=["张伟", "李娜"]).set_axis([7, 7], axis=0)
    out = standardize_frame(raw, today=TODAY)
    assert out.index.tolist() == [7, 7]
    assert out["name"].tolist() == ["张伟", "李娜"]
    assert out.iloc[1][["sex_status", "birth_date_status", "phone_status", "address_status"]].tolist() == ["missing"] * 4


def test_missing_and_clashing_columns_are_errors():
    with pytest.raises(ValueError, match="id_number"):
        standardize_frame(pd.DataFrame({"source": [], "source_record_id": [], "name": []}))
    with pytest.raises(ValueError, match="name_key"):
        standardize_frame(_frame(name_key=["x"]))


# --- fuzz: 100,000 hostile values through every column ------------------------------------------

def _random_text(rng: np.random.Generator, count: int, max_len: int) -> list[str]:
    """Strings from hostile code point ranges: controls, combining marks, RTL, PUA, surrogates, astral, CJK."""
    ranges = np.array([(0x00, 0x1F), (0x20, 0x7E), (0x7F, 0x9F), (0x300, 0x36F), (0x590, 0x8FF), (0x200B, 0x202E),
                       (0x3000, 0x303F), (0x4E00, 0x9FFF), (0xD800, 0xDFFF), (0xE000, 0xF8FF), (0xFF00, 0xFFEF),
                       (0xFFF0, 0xFFFF), (0x1F300, 0x1FAFF), (0x20000, 0x2A6DF), (0xF0000, 0x10FFFF)])
    lengths = rng.integers(1, max_len + 1, count)
    which = rng.integers(0, len(ranges), lengths.sum())
    points = rng.integers(ranges[which, 0], ranges[which, 1] + 1)
    chars = [chr(p) for p in points]
    ends = np.cumsum(lengths)
    return ["".join(chars[e - k:e]) for e, k in zip(ends, lengths)]


def hostile_corpus(n: int = 100_000, seed: int = 20261121) -> np.ndarray:
    """Deterministic hostile values of every kind that reaches a text column."""
    rng = np.random.default_rng(seed)
    realistic = ["11010519491231002X", "110105491231002", "１１０１０５１９４９１２３１００２Ｘ", "张伟", "买买提•艾力",
                 "1990-03-07", "32939", "1990年3月7日", "男", "F", "1.0", "13812345678", "010-62345678转1",
                 "安徽省六安市霍邱县城关镇东湖村3组12号", "城关镇东湖村三组十二号", "无", "不详", "/", "0", "00000000", "", " ",
                 "\u3000", "\ufeff", "NULL", "nan"]
    numbers = [0, 1, -1, 2**63, -(2**70), 3.14, float("nan"), float("inf"), -0.0, 1e308, 32939.0, 13812345678.0,
               True, False, None, np.nan, np.int64(7), np.float32(2.5), b"\xff\xfe", b"13812345678", {"a": 1}, [1, 2],
               pd.NaT, pd.Timestamp("1990-03-07"), dt.date(1990, 3, 7), complex(1, 2)]
    kinds = rng.choice(6, n, p=[0.45, 0.2, 0.15, 0.1, 0.095, 0.005])
    values = np.empty(n, dtype=object)
    short = kinds == 0
    values[short] = _random_text(rng, short.sum(), 12)
    values[kinds == 1] = np.array(realistic, dtype=object)[rng.integers(0, len(realistic), (kinds == 1).sum())]
    numeric = np.flatnonzero(kinds == 2)
    values[numeric] = [numbers[i] for i in rng.integers(0, len(numbers), len(numeric))]
    # realistic values with hostile characters spliced in
    spliced = np.flatnonzero(kinds == 3)
    bases = np.array(realistic, dtype=object)[rng.integers(0, len(realistic), len(spliced))]
    noise = _random_text(rng, len(spliced), 3)
    cut = rng.integers(0, 8, len(spliced))
    values[spliced] = [b[:c] + x + b[c:] for b, x, c in zip(bases, noise, cut)]
    values[kinds == 4] = _random_text(rng, (kinds == 4).sum(), 60)
    values[kinds == 5] = _random_text(rng, (kinds == 5).sum(), 10_000)  # very long
    return values


STATUSES = {
    "name_status": names.STATUSES, "id_number_status": id_number.STATUSES, "sex_status": sex.STATUSES,
    "birth_date_status": dates.STATUSES, "phone_status": phones.STATUSES, "address_status": addresses.STATUSES,
}
CLEAN = {  # status column -> (clean column, statuses that come with a clean value)
    "name_status": ("name", ("valid",)), "id_number_status": ("id_number", id_number.USABLE),
    "sex_status": ("sex", ("valid", "conflict_with_id")), "birth_date_status": ("birth_date", dates.USABLE),
    "phone_status": ("phone", phones.USABLE),
}


def test_fuzz_hostile_values_never_raise_and_always_get_a_status():
    corpus = hostile_corpus()
    rng = np.random.default_rng(7)
    fields = ["name", "id_number", "sex", "birth_date", "phone", "address", "status", "source", "source_record_id"]
    raw = pd.DataFrame({field: corpus[rng.permutation(len(corpus))] for field in fields})
    out = standardize_frame(raw, today=TODAY)

    assert len(out) == len(raw) and out.index.equals(raw.index)
    for column, allowed in STATUSES.items():
        assert out[column].notna().all(), column
        assert out[column].isin(allowed).all(), (column, set(out[column].unique()) - set(allowed))
    for column, (clean, usable) in CLEAN.items():
        accepted = out[column].isin(usable).to_numpy()
        assert np.array_equal(accepted, out[clean].notna().to_numpy()), column
    # the raw text is kept as received (lone surrogates, which UTF-8 cannot hold, become U+FFFD)
    text = np.array([isinstance(v, str) and not SURROGATE.search(v) for v in raw["name"]])
    assert (out["name_raw"].to_numpy()[text] == raw["name"].to_numpy()[text]).all()
