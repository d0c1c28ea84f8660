import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.dates import STATUSES, USABLE, format_pattern, standardize_dates

TODAY = dt.date(2026, 11, 21)
D = dt.date(1990, 3, 7)

TRICKY = [
    # raw value, expected status, expected date
    ("1990-03-07", "valid", D),
    ("19900307", "valid", D),
    ("1990/3/7", "valid", D),
    ("1990.3.7", "valid", D),
    ("1990年03月07日", "valid", D),
    ("1990年3月7日", "valid", D),
    ("１９９０－０３－０７", "valid", D),              # full-width
    (" 1990 - 03 - 07\u3000", "valid", D),            # stray spaces
    ("1990-03-07 00:00:00", "valid", D),              # a datetime from a database export
    ("1990/3/7 0:00", "valid", D),
    ("1990-03-07T13:45:10.123", "valid", D),
    (19900307.0, "valid", D),                          # a compact date stored as a number
    ("32939", "excel_serial", D),
    (32939.0, "excel_serial", D),
    (32939, "excel_serial", D),
    ("32939.5", "excel_serial", D),                    # noon of that day
    ("59", "excel_serial", dt.date(1900, 2, 28)),
    ("60", "impossible", None),                        # Excel's 1900-02-29, which never was
    ("61", "excel_serial", dt.date(1900, 3, 1)),       # after it, serials are one day ahead
    ("2000-02-29", "valid", dt.date(2000, 2, 29)),
    ("1900-02-29", "impossible", None),                # 1900 was not a leap year
    ("1990-02-30", "impossible", None),
    ("1990-13-01", "impossible", None),
    ("1990-00-00", "impossible", None),
    ("19900230", "impossible", None),
    ("0", "placeholder", None),
    ("00000000", "placeholder", None),
    ("0000-00-00", "placeholder", None),
    ("1900-01-01", "placeholder", None),
    ("1899-12-30", "placeholder", None),
    ("1900-01-00", "placeholder", None),
    ("1", "placeholder", None),                        # serial 1 is 1900-01-01
    ("无", "placeholder", None),
    ("不详", "placeholder", None),
    ("--", "placeholder", None),
    ("1869-12-31", "out_of_range", None),
    ("2026-11-22", "out_of_range", None),              # tomorrow
    ("99999", "out_of_range", None),                   # serial in 2173
    ("2026-11-21", "valid", TODAY),
    ("", "missing", None),
    ("   ", "missing", None),
    (None, "missing", None),
    (float("nan"), "missing", None),
    ("1990", "unparseable", None),                     # a bare year, not serial 1990 (1905)
    ("07/03/1990", "unparseable", None),               # day-first or month-first: only with a format
    ("90-03-07", "unparseable", None),                 # which century?
    ("1990-03-07Z", "unparseable", None),              # a time zone may move the calendar day
    ("1990年3月", "unparseable", None),
    ("abc", "unparseable", None),
    (True, "unparseable", None),
]


@pytest.mark.parametrize(("raw", "status", "date"), TRICKY)
def test_tricky_values(raw, status, date):
    out = standardize_dates(pd.Series([raw], dtype=object), today=TODAY).iloc[0]
    assert out["date_status"] == status
    assert (None if pd.isna(out["date"]) else out["date"]) == date


def test_source_formats_come_first_and_impossible_dates_are_not_rolled_over():
    raw = pd.Series(["07/03/1990", "31/02/1990", "7/3/1990 10:00:00", "1990-03-07", "03/07/90"])
    out = standardize_dates(raw, formats=["%d/%m/%Y", "%d/%m/%Y %H:%M:%S"], today=TODAY)
    assert out["date_status"].tolist() == ["valid", "impossible", "valid", "valid", "unparseable"]
    assert out["date"].tolist()[:4] == [D, None, D, D]


def test_unsupported_formats_are_refused():
    with pytest.raises(ValueError, match="%y"):
        format_pattern("%d/%m/%y")
    with pytest.raises(ValueError, match="must contain"):
        format_pattern("%Y-%m")


def test_earliest_and_today_bound_the_range():
    out = standardize_dates(pd.Series(["1950-01-01", "2000-01-01"]), earliest=dt.date(1960, 1, 1), today=dt.date(1999, 1, 1))
    assert out["date_status"].tolist() == ["out_of_range", "out_of_range"]


def test_index_is_kept_and_values_are_python_dates():
    out = standardize_dates(pd.Series(["1990-03-07", None, "1990-03-07"], index=[5, 9, 5]), today=TODAY)
    assert out.index.tolist() == [5, 9, 5]
    assert type(out["date"].iloc[0]) is dt.date and out["date"].iloc[1] is None


days = st.dates(min_value=dt.date(1870, 1, 1), max_value=TODAY)
SHAPES = [
    lambda d: d.isoformat(), lambda d: d.strftime("%Y%m%d"), lambda d: f"{d.year}/{d.month}/{d.day}",
    lambda d: f"{d.year}.{d.month}.{d.day}", lambda d: f"{d.year}年{d.month:02d}月{d.day:02d}日",
    lambda d: f"{d.year}年{d.month}月{d.day}日", lambda d: d.strftime("%Y-%m-%d 00:00:00"),
    lambda d: d.isoformat().translate(str.maketrans("0123456789-", "０１２３４５６７８９－")),
]


@settings(deadline=None)  # the first example loads the code tables
@given(days, st.sampled_from(SHAPES))
def test_every_real_date_in_every_shape_parses_back(day, shape):
    out = standardize_dates(pd.Series([shape(day)]), today=TODAY).iloc[0]
    if (day.year, day.month, day.day) in {(1900, 1, 1), (1899, 12, 30), (1899, 12, 31)}:
        assert out["date_status"] == "placeholder"
    else:
        assert out["date_status"] == "valid"
        assert out["date"] == day


@settings(deadline=None)  # the first example loads the code tables
@given(st.dates(min_value=dt.date(1900, 3, 1), max_value=TODAY))
def test_excel_serials_round_trip(day):
    serial = (day - dt.date(1899, 12, 30)).days
    if 1800 <= serial <= 2100:  # read as a bare year
        return
    out = standardize_dates(pd.Series([float(serial)]), today=TODAY).iloc[0]
    assert out["date_status"] == "excel_serial"
    assert out["date"] == day


@settings(deadline=None)  # the first example loads the code tables
@given(st.integers(1870, 2026), st.integers(1, 12), st.integers(29, 31))
def test_days_past_the_end_of_the_month_are_impossible(year, month, day):
    try:
        dt.date(year, month, day)
        exists = True
    except ValueError:
        exists = False
    out = standardize_dates(pd.Series([f"{year}-{month:02d}-{day:02d}"]), today=dt.date(2100, 1, 1)).iloc[0]
    if (year, month) == (1899, 12) and day >= 30:  # OLE's and Excel's day 0: a system's default, not a date
        assert out["date_status"] == "placeholder"
        return
    assert out["date_status"] == ("valid" if exists else "impossible")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=30), st.none(), st.floats(), st.integers(), st.booleans()), max_size=20))
def test_hostile_input_never_raises_and_always_has_a_status(values):
    out = standardize_dates(pd.Series(values, dtype=object), today=TODAY)
    assert len(out) == len(values)
    assert out["date_status"].isin(STATUSES).all()
    usable = out["date_status"].isin(USABLE).to_numpy()
    assert np.array_equal(usable, out["date"].notna().to_numpy())
