"""Citizen ID numbers (GB 11643-1999): normalize, validate, derive — never correct silently.

Every value gets a status. Only ``valid`` and ``upgraded_from_15`` numbers are given a clean
18-character ``id_number``; every other value keeps its raw form beside a null clean value, so a
mistyped number can never act as evidence that two records are the same person.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from schemas.regions import known_prefixes

WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
CHECK_CHARS = "10X98765432"
EARLIEST_BIRTH = pd.Timestamp("1870-01-01")

# statuses, in the order they are decided: the first that applies wins
MISSING = "missing"
PLACEHOLDER = "placeholder"
MALFORMED = "malformed"
CHECKSUM_ERROR = "checksum_error"
BAD_DATE = "bad_date"
BAD_REGION = "bad_region"
UPGRADED_FROM_15 = "upgraded_from_15"
VALID = "valid"
STATUSES = (VALID, UPGRADED_FROM_15, CHECKSUM_ERROR, BAD_REGION, BAD_DATE, PLACEHOLDER, MALFORMED, MISSING)
USABLE = (VALID, UPGRADED_FROM_15)

_PLACEHOLDER_WORDS = r"^(?:无|暂无|不详|未知|待补|待定|空|NULL|NONE|NAN|N/?A|[/\\\-—_.*?？]+)$"
_ALL_SAME_DIGIT = r"^(\d)\1+[\dX]?$"


def check_characters(bodies: pd.Series) -> pd.Series:
    """MOD 11-2 check character for each 17-digit body (vectorized)."""
    if bodies.empty:
        return pd.Series([], index=bodies.index, dtype="str")
    raw = "".join(bodies.tolist()).encode("ascii")
    digits = (np.frombuffer(raw, dtype=np.uint8).reshape(-1, 17) - 48).astype(np.int64)
    sums = digits @ WEIGHTS % 11
    return pd.Series(np.array(list(CHECK_CHARS))[sums], index=bodies.index)


def check_character(body17: str) -> str:
    """MOD 11-2 check character of one 17-digit body."""
    return CHECK_CHARS[sum(int(c) * int(w) for c, w in zip(body17, WEIGHTS)) % 11]


def normalize_text(raw: pd.Series) -> pd.Series:
    """NFKC (full-width digits and Ｘ), all whitespace removed, upper-case — as nullable strings."""
    s = raw.astype("string")
    s = s.str.normalize("NFKC").str.replace(r"\s+", "", regex=True).str.upper()
    return s


def standardize_id_numbers(raw: pd.Series, today: dt.date | None = None) -> pd.DataFrame:
    """Standardize raw ID numbers.

    Returns a frame on the same index with ``id_number`` (clean 18 characters or null),
    ``id_number_status``, ``id_birth_date``, ``id_sex`` (GB/T 2261.1: 1 male, 2 female) and
    ``id_region`` (6-digit code).
    """
    today_ts = pd.Timestamp(today or dt.date.today())
    s = normalize_text(raw)
    n = len(s)
    status = pd.Series(np.full(n, None, dtype=object), index=s.index)

    missing = s.isna() | (s.fillna("") == "")
    status[missing] = MISSING
    s = s.fillna("")

    placeholder = ~missing & (s.str.match(_PLACEHOLDER_WORDS) | s.str.match(_ALL_SAME_DIGIT))
    status[placeholder & status.isna()] = PLACEHOLDER

    is18 = s.str.fullmatch(r"\d{17}[\dX]") & status.isna()
    is15 = s.str.fullmatch(r"\d{15}") & status.isna()
    status[~(is18 | is15) & status.isna()] = MALFORMED

    # 15 -> 18: insert the century and append the check character
    body = pd.Series("", index=s.index, dtype="string")
    body[is18] = s[is18].str.slice(0, 17)
    body[is15] = s[is15].str.slice(0, 6) + "19" + s[is15].str.slice(6, 15)
    candidate = is18 | is15
    checks = check_characters(body[candidate].astype(str))
    full = pd.Series(pd.NA, index=s.index, dtype="string")
    full[candidate] = body[candidate] + checks
    bad_checksum = is18 & (full != s).fillna(False)
    status[bad_checksum] = CHECKSUM_ERROR

    births = pd.to_datetime(full.str.slice(6, 14), format="%Y%m%d", errors="coerce")
    bad_date = candidate & status.isna() & (births.isna() | (births < EARLIEST_BIRTH) | (births > today_ts))
    status[bad_date] = BAD_DATE

    codes, prefectures = known_prefixes()
    region = full.str.slice(0, 6)
    region_known = region.isin(codes) | full.str.slice(0, 4).isin(prefectures)
    bad_region = candidate & status.isna() & ~region_known.fillna(False)
    status[bad_region] = BAD_REGION

    status[is15 & status.isna()] = UPGRADED_FROM_15
    status[status.isna()] = VALID

    usable = status.isin(USABLE)
    out = pd.DataFrame(index=s.index)
    out["id_number"] = full.where(usable, pd.NA)
    out["id_number_status"] = status.astype("string")
    out["id_birth_date"] = births.where(usable).dt.date
    seventeenth = pd.to_numeric(full.str.slice(16, 17), errors="coerce").astype("Float64")
    sex = (2 - (seventeenth % 2)).astype("Int16")  # odd = 1 (male), even = 2 (female)
    out["id_sex"] = sex.where(usable, pd.NA)
    out["id_region"] = region.where(usable, pd.NA)
    return out
