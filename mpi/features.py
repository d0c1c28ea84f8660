"""Matching features derived from standardized resident records (vectorized, no per-row loops).

The input is the frame :func:`schemas.resident.standardize_frame` produces. The output has one row
per input row, in the same order, with a surrogate ``unique_id`` (0..n-1) and ``record_key``
(``source/source_record_id``) — the matcher never needs names or ID numbers in logs or evidence.

ID numbers give two features:

* ``id_valid`` — the clean number when it is valid *and trusted*: the record's own sex (where
  present) agrees with the one the number encodes, and so does its birth date — or the birth date
  differs from the number's the way typed birth dates really go wrong (:func:`date_error_kind`:
  a lunar birthday written as a Gregorian date, day and month swapped, one digit mistyped, a date a
  few days off or a newborn's registration date, a year-only placeholder such as 1 January, a
  personnel file's year a year or three off with the same month and day). The
  number comes from the household register and is the authority for the date: such a record's
  ``dob`` is the number's. A valid number that disagrees otherwise (years off, or the other sex) is
  most often a family member's number typed in; it is kept out of matching (``id_conflict``).
* ``id_body`` — the 17-digit body of the raw number after NFKC / upper-casing / 15→18 upgrade,
  present even when the checksum fails, so one-digit typos and transpositions can be compared.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from mpi.clustering import PARENT_CHILD_DAYS
from schemas.id_number import USABLE, normalize_text

# a newborn registered before it was named: 张某某之子 / 李某某之女 carries only a surname
_PLACEHOLDER_NAME = r"某某|之子$|之女$|^(?:男婴|女婴|婴儿)$"
_FIRST_SYLLABLE = r"^(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?[aeiouv]+(?:ng|n(?![aeiouv])|r(?![aeiouv]))?"
_BODY_STATUSES = ("valid", "upgraded_from_15", "checksum_error", "bad_date", "bad_region")

# the standardized columns the features are built from
INPUT_COLUMNS = ("source", "source_record_id", "name_key", "name_pinyin", "name_surname", "id_number_raw",
                 "id_number", "id_number_status", "id_birth_date", "id_sex", "sex", "birth_date", "phone",
                 "address_key", "address_house_no", "address_village", "address_town")
FEATURE_COLUMNS = (
    "unique_id", "record_key", "name_key", "name_pinyin", "surname", "given_key", "given_pinyin",
    "id_valid", "id_body", "id_conflict", "id_claimed", "dob", "birth_year", "sex", "phone", "address_key", "village",
)


def _text(s: pd.Series) -> pd.Series:
    return s.astype("string")


def id_bodies(raw: pd.Series, status: pd.Series) -> pd.Series:
    """17-digit body of the raw ID number (15-digit numbers upgraded), null for placeholders and junk."""
    norm = normalize_text(raw).astype("string")
    is18 = norm.str.fullmatch(r"[0-9]{17}[0-9X]").fillna(False)
    is15 = norm.str.fullmatch(r"[0-9]{15}").fillna(False)
    body = pd.Series(pd.NA, index=raw.index, dtype="string")
    body[is18] = norm[is18].str.slice(0, 17)
    body[is15] = norm[is15].str.slice(0, 6) + "19" + norm[is15].str.slice(6, 15)
    keep = status.astype("string").isin(_BODY_STATUSES).fillna(False)
    # all-same-digit bodies are placeholders whatever the status says
    same = body.str.fullmatch(r"0+|1+|2+|3+|4+|5+|6+|7+|8+|9+").fillna(False)
    return body.where(keep & ~same)


# how far a typed birth date may lie from the true one and still read as a slip: a few days before
# (a date misremembered), up to three months after (a newborn's registration date: the 1958
# Regulations give a month to register a birth, and late registrations are common)
NEAR_BEFORE_DAYS = 7
REGISTRATION_DAYS = 92
PLACEHOLDER_MONTH_DAYS = ("01-01", "07-01")  # what a clerk writes when only the year is known
ARCHIVE_YEARS = 3  # a personnel file's (档案) birth year: an age altered by a year or three, same month and day
DATE_ERROR_KINDS = ("lunar", "swapped", "one_digit", "near", "placeholder", "archive_year")


@lru_cache(maxsize=65536)
def lunar_to_gregorian(iso: str) -> tuple[str, ...]:
    """The Gregorian dates ``iso`` (YYYY-MM-DD) stands for if it is really a lunar (农历) date written as a
    Gregorian one: the ordinary month's, and the leap month's when that year has one of that number."""
    from lunardate import LunarDate

    y, m, d = int(iso[:4]), int(iso[5:7]), int(iso[8:10])
    out = []
    for leap in (False, True):
        try:
            out.append(LunarDate(y, m, d, leap).to_solar_date().isoformat())
        except ValueError:  # no such lunar day (a 30th in a short month), no such leap month, out of range
            pass
    return tuple(out)


def date_error_kind(written: pd.Series, true: pd.Series) -> pd.Series:
    """How a written birth date differs from the true one (both ISO strings), as typed dates really
    do (:data:`DATE_ERROR_KINDS`); null where they are equal, either is missing, or nothing explains it.

    A family member's date does not read as one of these: a spouse or parent is years away (a digit
    typo that puts a generation between the dates is not a slip), and a sibling is not born within a
    few weeks (twins share the date), nor often on the same day and month a year or three apart."""
    kind = pd.Series(pd.NA, index=written.index, dtype="string")
    both = (written.notna() & true.notna() & (written != true)).fillna(False).to_numpy()
    if not both.any():
        return kind
    w, t = written[both].astype(str), true[both].astype(str)
    wd, td = w.str.replace("-", "", regex=False), t.str.replace("-", "", regex=False)
    diff = (pd.to_datetime(w, errors="coerce") - pd.to_datetime(t, errors="coerce")).dt.days
    one_digit = pd.Series(
        [sum(a != b for a, b in zip(x, y)) == 1 for x, y in zip(wd.tolist(), td.tolist())], index=w.index)
    lunar_of = pd.Series({v: lunar_to_gregorian(v) for v in w.unique()})
    lunar = pd.Series([tv in lunar_of[wv] for wv, tv in zip(w.tolist(), t.tolist())], index=w.index)
    swapped = (w.str.slice(0, 4) == t.str.slice(0, 4)) & (w.str.slice(5, 7) == t.str.slice(8, 10)) \
        & (w.str.slice(8, 10) == t.str.slice(5, 7))
    near = diff.between(-NEAR_BEFORE_DAYS, REGISTRATION_DAYS).fillna(False)
    placeholder = (w.str.slice(0, 4) == t.str.slice(0, 4)) & w.str.slice(5, 10).isin(PLACEHOLDER_MONTH_DAYS)
    # a year typed a decade off still reads as a slip; a generation off is a parent's or child's number
    family = (diff.abs() >= PARENT_CHILD_DAYS).fillna(True)
    years = pd.to_numeric(w.str.slice(0, 4), errors="coerce") - pd.to_numeric(t.str.slice(0, 4), errors="coerce")
    archive = (w.str.slice(5, 10) == t.str.slice(5, 10)) & years.abs().between(1, ARCHIVE_YEARS).fillna(False)
    found = np.select([lunar, swapped, one_digit, near, placeholder, archive], list(DATE_ERROR_KINDS), default="")
    found[family.to_numpy()] = ""
    kind[both] = pd.Series(found, index=w.index).replace("", pd.NA).astype("string").to_numpy()
    return kind


def _iso(dates: pd.Series) -> pd.Series:
    ts = pd.to_datetime(dates, errors="coerce")
    return ts.dt.strftime("%Y-%m-%d").astype("string").where(ts.notna())


def build_features(std: pd.DataFrame) -> pd.DataFrame:
    """Matching features, one row per row of ``std`` (same order)."""
    n = len(std)
    idx = std.index
    out = pd.DataFrame(index=idx)
    out["unique_id"] = np.arange(n, dtype=np.int64)
    out["record_key"] = (std["source"].astype(str) + "/" + std["source_record_id"].astype(str)).astype("string")

    key = _text(std["name_key"])
    placeholder = key.str.contains(_PLACEHOLDER_NAME, regex=True).fillna(False)
    surname = _text(std["name_surname"])
    out["name_key"] = key.where(~placeholder)
    out["name_pinyin"] = _text(std["name_pinyin"]).where(~placeholder)
    out["surname"] = surname
    has_surname = surname.notna() & key.notna()
    given = key.str.slice(1).where(has_surname, key)
    out["given_key"] = given.where(~placeholder & (given.str.len() > 0))
    # the reading of the given name: the full reading less its first syllable (the surname's)
    pinyin = _text(std["name_pinyin"])
    given_py = pinyin.str.replace(_FIRST_SYLLABLE, "", regex=True)
    out["given_pinyin"] = given_py.where(has_surname & (given_py.str.len() > 0), pinyin).where(~placeholder)

    status = _text(std["id_number_status"])
    valid = _text(std["id_number"]).where(status.isin(USABLE).fillna(False))
    dob = _iso(std["birth_date"])
    id_dob = _iso(std["id_birth_date"])
    sex = pd.to_numeric(std["sex"], errors="coerce").astype("Int16")
    sex = sex.where(sex.isin([1, 2]))
    id_sex = pd.to_numeric(std["id_sex"], errors="coerce").astype("Int16")
    dob_differs = (dob.notna() & id_dob.notna() & (dob != id_dob)).fillna(False)
    slip = date_error_kind(dob.where(valid.notna() & dob_differs), id_dob).notna()
    sex_conflict = (sex.notna() & id_sex.notna() & (sex != id_sex)).fillna(False)
    conflict = valid.notna() & ((dob_differs & ~slip) | sex_conflict)
    out["id_valid"] = valid.where(~conflict)
    body = id_bodies(std["id_number_raw"], status)
    out["id_body"] = body.where(~conflict)
    out["id_conflict"] = conflict.astype(bool)
    out["id_claimed"] = valid  # checksum-valid, trusted or not: the clustering constraint looks at both
    # the record's own birth date; the trusted ID's when the record has none or its date is a slip
    trusted = out["id_valid"].notna()
    out["dob"] = dob.where(~(slip & trusted), id_dob).fillna(id_dob.where(trusted))
    out["birth_year"] = out["dob"].str.slice(0, 4)
    out["sex"] = sex.fillna(id_sex.where(out["id_valid"].notna()))
    out["phone"] = _text(std["phone"])
    out["address_key"] = _text(std["address_key"]).where(_text(std["address_house_no"]).notna())
    village = _text(std["address_village"])
    out["village"] = (_text(std["address_town"]).fillna("") + "|" + village).where(village.notna())
    return out[list(FEATURE_COLUMNS)].reset_index(drop=True)

