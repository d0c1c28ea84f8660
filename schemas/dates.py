"""Dates (birth dates) in the many shapes departments write them, parsed strictly.

Accepted: ``1990-03-07``, ``19900307``, ``1990/3/7``, ``1990.3.7``, ``1990年3月7日``, full-width
digits, stray spaces, a trailing time of day (``1990-03-07 00:00:00``) and Excel serial numbers
(1900 date system). Day-first and month-first forms are ambiguous and are read only through a
source's own ``formats``. A date that does not exist (1990-02-30) is reported, never rolled over.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from schemas.text import TEXT, WHITESPACE, blank_or_null, distinct, expand, flag, nfkc, squeeze

VALID = "valid"
EXCEL_SERIAL = "excel_serial"
MISSING = "missing"
PLACEHOLDER = "placeholder"
IMPOSSIBLE = "impossible"
OUT_OF_RANGE = "out_of_range"
UNPARSEABLE = "unparseable"
STATUSES = (VALID, EXCEL_SERIAL, OUT_OF_RANGE, IMPOSSIBLE, PLACEHOLDER, UNPARSEABLE, MISSING)
USABLE = (VALID, EXCEL_SERIAL)

EARLIEST = dt.date(1870, 1, 1)

_PLACEHOLDER_WORDS = "^(?:无|暂无|不详|未知|不知道|空|NULL|NONE|NAN|NAT|N/?A|0+|[-/\\\\_.*?？—]+)$"
# a time of day after the date; a time zone makes the calendar date uncertain, so it is not accepted
_TIME_OF_DAY = f"[{WHITESPACE}T]+[0-9]{{1,2}}:[0-9]{{2}}(?::[0-9]{{2}}(?:\\.[0-9]{{1,9}})?)?$"
_SHAPES = (
    "^(?:(?P<y>[0-9]{4})(?:[-/.年](?P<m>[0-9]{1,2})[-/.月](?P<d>[0-9]{1,2})日?|(?P<m8>[0-9]{2})(?P<d8>[0-9]{2})(?:\\.0+)?)"
    "|(?P<serial>[0-9]{1,5})(?:\\.[0-9]+)?)$"
)
# Excel's 1900 date system counts 1900-02-29, which never was: serial 60 is that day
_EXCEL_EPOCH = np.datetime64("1899-12-30")
_EXCEL_FAKE_LEAP_DAY = 60

_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def days_from_ymd(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(datetime64[D] dates, exists) for integer year/month/day arrays; dates that do not exist are NaT."""
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    month_ok = (m >= 1) & (m <= 12)
    last_day = _DAYS_IN_MONTH[np.where(month_ok, m, 0)] + (leap & (m == 2))
    exists = month_ok & (d >= 1) & (d <= last_day) & (y >= 1)
    months = np.where(exists, (y - 1970) * 12 + (m - 1), 0).astype("timedelta64[M]")
    days = np.datetime64("1970-01", "M") + months
    dates = days.astype("datetime64[D]") + np.where(exists, d - 1, 0).astype("timedelta64[D]")
    return np.where(exists, dates, np.datetime64("NaT")), exists


def as_dates(days: np.ndarray) -> np.ndarray:
    """datetime64[D] values as an object array of ``datetime.date`` (None for NaT), converting each distinct day once."""
    distinct_days, positions = np.unique(days, return_inverse=True)
    objects = distinct_days.astype(object)
    objects[np.isnat(distinct_days)] = None
    return objects[positions.reshape(-1)]


def _ints(values: pa.Array) -> np.ndarray:
    """Digits as int64; empty/null as -1."""
    text = pc.if_else(pc.equal(pc.utf8_length(values), 0), pa.scalar(None, values.type), values)
    return pc.fill_null(pc.cast(text, pa.int64()), -1).to_numpy(zero_copy_only=False)


_DIRECTIVES = {
    "Y": "(?P<y>[0-9]{4})", "m": "(?P<m>[0-9]{1,2})", "d": "(?P<d>[0-9]{1,2})",
    "H": "[0-9]{1,2}", "M": "[0-9]{1,2}", "S": "[0-9]{1,2}", "f": "[0-9]{1,9}", "%": "%",
}


@lru_cache(maxsize=64)
def format_pattern(fmt: str) -> str:
    """A strptime-style format as an anchored RE2 pattern with y/m/d groups.

    Only %Y %m %d (and %H %M %S %f, which are matched and ignored) are understood: a two-digit
    year or a month name is a guess about the century or the language, so such formats are refused.
    """
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%":
            directive = fmt[i + 1:i + 2]
            if directive not in _DIRECTIVES:
                raise ValueError(f"date format {fmt!r}: %{directive} is not supported (use %Y %m %d %H %M %S %f)")
            out.append(_DIRECTIVES[directive])
            i += 2
        else:
            out.append(re.escape(fmt[i]))
            i += 1
    pattern = "".join(out)
    if not all(f"(?P<{g}>" in pattern for g in "ymd"):
        raise ValueError(f"date format {fmt!r} must contain %Y, %m and %d")
    return f"^{pattern}$"


def _ymd(parts: pa.Array, y: str, m: str, d: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _ints(pc.struct_field(parts, y)), _ints(pc.struct_field(parts, m)), _ints(pc.struct_field(parts, d))


def _standardize_distinct(values: pa.Array, formats: list[str] | None, today: dt.date, earliest: dt.date) -> pd.DataFrame:
    n = len(values)
    text = pc.utf8_trim_whitespace(pc.utf8_upper(nfkc(values)))
    compact = squeeze(pc.replace_substring_regex(text, _TIME_OF_DAY, ""))

    missing = blank_or_null(compact)
    placeholder = ~missing & flag(pc.match_substring_regex(squeeze(text), _PLACEHOLDER_WORDS))
    status = np.full(n, UNPARSEABLE, dtype=object)
    dates = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    status[missing] = MISSING
    status[placeholder] = PLACEHOLDER
    open_ = ~missing & ~placeholder

    def settle(shaped: np.ndarray, y: np.ndarray, m: np.ndarray, d: np.ndarray) -> None:
        parsed, exists = days_from_ymd(y, m, d)
        # default dates of systems and spreadsheets: year 0, Excel's day 0 and day 1, OLE's day 0
        zero = shaped & ((y == 0) | ((y == 1900) & (m == 1) & (d <= 1)) | ((y == 1899) & (m == 12) & (d >= 30)))
        ok = shaped & ~zero & exists
        dates[ok] = parsed[ok]
        status[ok] = VALID
        status[zero] = PLACEHOLDER
        status[shaped & ~zero & ~exists] = IMPOSSIBLE

    for fmt in formats or ():
        parts = pc.extract_regex(text, format_pattern(fmt))
        y, m, d = _ymd(parts, "y", "m", "d")
        shaped = open_ & (y >= 0)
        settle(shaped, y, m, d)
        open_ &= ~shaped

    parts = pc.extract_regex(compact, _SHAPES)
    y, m, d = _ymd(parts, "y", "m", "d")
    _, m8, d8 = _ymd(parts, "y", "m8", "d8")
    settle(open_ & (y >= 0), y, np.where(m >= 0, m, m8), np.where(d >= 0, d, d8))

    serial = _ints(pc.struct_field(parts, "serial"))
    # a bare number that reads as a year is a year, not day 1990 of 1900
    as_serial = open_ & (serial >= 0) & ~((serial >= 1800) & (serial <= 2100))
    status[as_serial & (serial <= 1)] = PLACEHOLDER
    status[as_serial & (serial == _EXCEL_FAKE_LEAP_DAY)] = IMPOSSIBLE
    counted = as_serial & (serial > 1) & (serial != _EXCEL_FAKE_LEAP_DAY)
    offset = np.where(serial < _EXCEL_FAKE_LEAP_DAY, serial + 1, serial)  # before the fake leap day: one day on
    dates[counted] = _EXCEL_EPOCH + offset[counted].astype("timedelta64[D]")
    status[counted] = EXCEL_SERIAL

    in_use = np.isin(status, USABLE)
    outside = in_use & ((dates < np.datetime64(earliest, "D")) | (dates > np.datetime64(today, "D")))
    status[outside] = OUT_OF_RANGE
    usable = in_use & ~outside
    clean = as_dates(np.where(usable, dates, np.datetime64("NaT")))
    return pd.DataFrame({"date": clean, "date_status": pd.array(status, dtype=TEXT)})


def standardize_dates(raw: pd.Series, *, formats: list[str] | None = None, today: dt.date | None = None,
                      earliest: dt.date = EARLIEST) -> pd.DataFrame:
    """Standardize raw dates.

    Returns ``date`` (``datetime.date`` or None) and ``date_status``: valid, excel_serial (valid,
    read from a spreadsheet serial), missing, placeholder (无, 0, 1900-01-01, 1899-12-30, …),
    impossible (1990-02-30, month 13, Excel's 1900-02-29), out_of_range (before ``earliest`` or
    after ``today``), unparseable. ``formats`` (strptime, from a source's mapping) are tried first.
    """
    today = today or dt.date.today()
    codes, values = distinct(raw)
    return expand(_standardize_distinct(values, formats, today, earliest), codes, raw.index)
