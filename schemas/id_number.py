"""Citizen ID numbers (GB 11643-1999): normalize, validate, derive — never correct silently.

Every value gets a status. Only ``valid`` and ``upgraded_from_15`` numbers are given a clean
18-character ``id_number``; every other value keeps its raw form beside a null clean value, so a
mistyped number can never act as evidence that two records are the same person.

An ID number is text. A value that went through a floating-point number on its way here — an
Excel numeric cell, a JSON number — has kept at most 15 to 17 significant digits, so its last
digits are made up: such a value (scientific notation like ``3.41522E+17``, a decimal tail like
``341522199001017783.0``, or a float object) gets the status ``precision_lost`` and no clean number,
never ``valid``. Ask the department for the file with the column formatted as text.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from schemas.dates import as_dates, days_from_ymd
from schemas.regions import known_prefixes
from schemas.text import NULL, TEXT, arrow, blank_or_null, flag, lit, nfkc, series, squeeze

WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
CHECK_CHARS = "10X98765432"
EARLIEST_BIRTH = np.datetime64("1870-01-01", "D")

# statuses, in the order they are decided: the first that applies wins
MISSING = "missing"
PLACEHOLDER = "placeholder"
MALFORMED = "malformed"
PRECISION_LOST = "precision_lost"
CHECKSUM_ERROR = "checksum_error"
BAD_DATE = "bad_date"
BAD_REGION = "bad_region"
UPGRADED_FROM_15 = "upgraded_from_15"
VALID = "valid"
STATUSES = (VALID, UPGRADED_FROM_15, CHECKSUM_ERROR, BAD_REGION, BAD_DATE, PLACEHOLDER, PRECISION_LOST, MALFORMED,
            MISSING)
USABLE = (VALID, UPGRADED_FROM_15)

_PLACEHOLDER_WORDS = r"^(?:无|暂无|不详|未知|待补|待定|空|NULL|NONE|NAN|N/?A|[/\\\-—_.*?？]+)$"
_ALL_SAME_DIGIT = "^(?:00+|11+|22+|33+|44+|55+|66+|77+|88+|99+)[0-9X]?$"  # RE2 has no back-references
# a number written by floating-point software: 3.41522E+17, 3.4152219900101779e+17, 341522199001017783.0
_FLOAT_FORM = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)E[+-]?[0-9]+$|^[0-9]{15,18}\.[0-9]*$"
_CHECK_ARRAY = pa.array(list(CHECK_CHARS), type=pa.large_string())


def _digit_matrix(values: pa.Array, width: int) -> np.ndarray:
    """Equal-length ASCII digit strings (no nulls) as an (n, width) uint8 matrix of digits, read from the Arrow buffer."""
    values = values.cast(pa.large_string())
    if len(values) == 0:
        return np.zeros((0, width), dtype=np.uint8)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset:values.offset + len(values) + 1]
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    return data.reshape(-1, width) - np.uint8(48)


def _number(digits: np.ndarray) -> np.ndarray:
    """The columns of a digit matrix read as one decimal number per row."""
    out = np.zeros(len(digits), dtype=np.int64)
    for column in digits.T:
        out = out * 10 + column
    return out


def _check_characters(bodies: pa.Array) -> pa.Array:
    digits = _digit_matrix(bodies, 17)
    sums = np.zeros(len(digits), dtype=np.int64)
    for column, weight in zip(digits.T, WEIGHTS):
        sums += column.astype(np.int64) * weight
    return pc.take(_CHECK_ARRAY, pa.array(sums % 11))


def check_characters(bodies: pd.Series) -> pd.Series:
    """MOD 11-2 check character for each 17-digit body (vectorized)."""
    return series(_check_characters(arrow(bodies)), bodies.index)


def check_character(body17: str) -> str:
    """MOD 11-2 check character of one 17-digit body."""
    return CHECK_CHARS[sum(int(c) * int(w) for c, w in zip(body17, WEIGHTS)) % 11]


def normalize_text(raw: pd.Series) -> pd.Series:
    """NFKC (full-width digits and Ｘ), whitespace and invisible characters removed, upper-case — as nullable strings."""
    return series(pc.utf8_upper(squeeze(nfkc(arrow(raw)))), raw.index)


@lru_cache(maxsize=1)
def _region_sets() -> tuple[pa.Array, pa.Array]:
    codes, prefectures = known_prefixes()
    return pa.array(sorted(codes), type=pa.large_string()), pa.array(sorted(prefectures), type=pa.large_string())


def _floats_as_repr(raw: pd.Series) -> pd.Series:
    """Float cells as their ``repr`` (``3.415221990010178e+17``), never as the digits of the rounded value."""
    if pd.api.types.is_float_dtype(raw.dtype):
        return pd.Series([None if pd.isna(v) else repr(float(v)) for v in raw], index=raw.index, dtype=object)
    if raw.dtype == object:
        floats = raw.map(lambda v: isinstance(v, float) and not pd.isna(v))
        if floats.any():
            raw = raw.copy()
            raw[floats] = raw[floats].map(lambda v: repr(float(v)))
    return raw


def standardize_id_numbers(raw: pd.Series, today: dt.date | None = None) -> pd.DataFrame:
    """Standardize raw ID numbers.

    ``raw`` should hold text; a float in it (an Excel numeric cell, a JSON number) is read as its
    ``repr`` and so gets ``precision_lost``. Returns a frame on the same index with ``id_number`` (clean 18 characters or null),
    ``id_number_status``, ``id_birth_date``, ``id_sex`` (GB/T 2261.1: 1 male, 2 female) and
    ``id_region`` (6-digit code).
    """
    today_d = np.datetime64(today or dt.date.today(), "D")
    s = arrow(normalize_text(_floats_as_repr(raw)))
    n = len(s)
    order = (MISSING, PLACEHOLDER, PRECISION_LOST, MALFORMED, CHECKSUM_ERROR, BAD_DATE, BAD_REGION, UPGRADED_FROM_15, VALID)
    decided = np.full(n, -1, dtype=np.int8)

    def decide(mask: np.ndarray, status: str) -> None:
        decided[mask & (decided < 0)] = order.index(status)

    decide(blank_or_null(s), MISSING)
    s = pc.fill_null(s, "")
    decide(flag(pc.match_substring_regex(s, _PLACEHOLDER_WORDS)) | flag(pc.match_substring_regex(s, _ALL_SAME_DIGIT)),
           PLACEHOLDER)
    decide(flag(pc.match_substring_regex(s, _FLOAT_FORM)), PRECISION_LOST)
    is18 = flag(pc.match_substring_regex(s, "^[0-9]{17}[0-9X]$")) & (decided < 0)
    is15 = flag(pc.match_substring_regex(s, "^[0-9]{15}$")) & (decided < 0)
    candidate = is18 | is15
    decide(~candidate, MALFORMED)

    # 15 -> 18: insert the century and append the check character
    body = pc.if_else(
        pa.array(is15),
        pc.binary_join_element_wise(pc.utf8_slice_codeunits(s, 0, 6), lit("19"), pc.utf8_slice_codeunits(s, 6, 15), lit("")),
        pc.utf8_slice_codeunits(s, 0, 17))
    body = pc.filter(body, pa.array(candidate))
    full = pa.nulls(n, pa.large_string())
    if len(body):
        full = pc.replace_with_mask(full, pa.array(candidate),
                                    pc.binary_join_element_wise(body, _check_characters(body), lit("")))
    decide(is18 & ~flag(pc.equal(full, s)), CHECKSUM_ERROR)

    digits = np.zeros((n, 17), dtype=np.uint8)
    digits[candidate] = _digit_matrix(body, 17)
    births, exists = days_from_ymd(_number(digits[:, 6:10]), _number(digits[:, 10:12]), _number(digits[:, 12:14]))
    decide(candidate & (~exists | (births < EARLIEST_BIRTH) | (births > today_d)), BAD_DATE)

    codes, prefectures = _region_sets()
    region = pc.utf8_slice_codeunits(full, 0, 6)
    known = flag(pc.is_in(region, value_set=codes)) | flag(pc.is_in(pc.utf8_slice_codeunits(full, 0, 4), value_set=prefectures))
    decide(candidate & ~known, BAD_REGION)
    decide(is15, UPGRADED_FROM_15)
    decide(np.ones(n, dtype=bool), VALID)

    status = np.array(order, dtype=object)[decided]
    usable = np.isin(status, USABLE)
    out = pd.DataFrame(index=raw.index)
    out["id_number"] = series(pc.if_else(pa.array(usable), full, NULL), raw.index)
    out["id_number_status"] = pd.array(status, dtype=TEXT)
    out["id_birth_date"] = pd.Series(as_dates(np.where(usable, births, np.datetime64("NaT"))), index=raw.index, dtype=object)
    sex = pd.array(np.where(digits[:, 16] % 2 == 1, 1, 2), dtype="Int16")  # odd = 1 (male), even = 2 (female)
    sex[~usable] = pd.NA
    out["id_sex"] = sex
    out["id_region"] = series(pc.if_else(pa.array(usable), region, NULL), raw.index)
    return out
