"""The canonical resident record and the standardizing of a frame of raw records.

Input columns (raw, as the source wrote them): ``source, source_record_id, name, id_number`` and
optionally ``sex, birth_date, phone, address, status, status_date``. The output keeps every raw value beside its
clean value and status code. The pipeline and ``hub`` commands use this one function.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from schemas.addresses import COLUMNS as ADDRESS_COLUMNS
from schemas.addresses import parse_addresses
from schemas.dates import standardize_dates
from schemas.id_number import standardize_id_numbers
from schemas.names import standardize_names
from schemas.phones import standardize_phones
from schemas.sex import standardize_sex
from schemas.text import as_text

REQUIRED_FIELDS = ("source", "source_record_id", "name", "id_number")
RAW_FIELDS = ("name", "id_number", "sex", "birth_date", "address", "phone", "status", "status_date")

STD_COLUMNS = (
    "source", "source_record_id",
    "name_raw", "name", "name_key", "name_pinyin", "name_surname", "name_status",
    "id_number_raw", "id_number", "id_number_status", "id_birth_date", "id_sex", "id_region",
    "sex_raw", "sex", "sex_status",
    "birth_date_raw", "birth_date", "birth_date_status",
    "phone_raw", "phone", "phone_type", "phone_status",
    "address_raw", *ADDRESS_COLUMNS,
    "status_raw",
    "status_date_raw", "status_date", "status_date_status",
)


def standardize_frame(raw: pd.DataFrame, *, sex_codes: dict[str, int] | None = None, date_formats: list[str] | None = None,
                      default_county: str | None = None, today: dt.date | None = None) -> pd.DataFrame:
    """Standardize raw resident records; the result has :data:`STD_COLUMNS` plus any extra input columns.

    ``sex_codes`` and ``date_formats`` are a source's own dialect (see :func:`standardize_sex` and
    :func:`standardize_dates`); ``default_county`` is the GB/T 2260 code assumed for addresses that
    start below the county; ``today`` bounds birth dates (default: the current date).
    """
    missing = [c for c in REQUIRED_FIELDS if c not in raw.columns]
    if missing:
        raise ValueError(f"input lacks the column(s) {missing}")
    clashing = [c for c in raw.columns if c in STD_COLUMNS and c not in (*REQUIRED_FIELDS, *RAW_FIELDS)]
    if clashing:
        raise ValueError(f"input column(s) {clashing} would be overwritten by standardized columns of the same name")

    index = raw.index
    out = raw.reset_index(drop=True)  # the standardizers align on the index: make it unique
    for field in RAW_FIELDS:
        values = out[field] if field in out.columns else pd.Series(pd.NA, index=out.index, dtype="string")
        out[f"{field}_raw"] = as_text(values)
    out = out.drop(columns=[c for c in RAW_FIELDS if c in out.columns])

    ids = standardize_id_numbers(out["id_number_raw"], today=today)
    parts = [
        standardize_names(out["name_raw"]),
        ids,
        standardize_sex(out["sex_raw"], codes=sex_codes, id_sex=ids["id_sex"]),
        standardize_dates(out["birth_date_raw"], formats=date_formats, today=today)
        .rename(columns={"date": "birth_date", "date_status": "birth_date_status"}),
        standardize_phones(out["phone_raw"]),
        parse_addresses(out["address_raw"], default_county=default_county),
        # a program's status date: a death registration, an enrolment or the end of one
        standardize_dates(out["status_date_raw"], formats=date_formats, today=today, earliest=dt.date(1949, 10, 1))
        .rename(columns={"date": "status_date", "date_status": "status_date_status"}),
    ]
    out = pd.concat([out, *parts], axis=1)
    out.index = index
    extra = [c for c in out.columns if c not in STD_COLUMNS]
    return out[list(STD_COLUMNS) + extra]
