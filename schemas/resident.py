"""The canonical resident record and the standardizing of a frame of raw records.

Input columns (raw, as the source wrote them): ``source, source_record_id, name, id_number`` and
optionally ``sex, birth_date, phone, address, status``. The output keeps every raw value beside its
clean value and status code. The pipeline and ``hub`` commands use this one function.
"""

from __future__ import annotations

import pandas as pd

from schemas.id_number import standardize_id_numbers
from schemas.names import standardize_names

RAW_FIELDS = ("name", "id_number", "sex", "birth_date", "address", "phone", "status")

STD_COLUMNS = (
    "source", "source_record_id", "name_raw", "name", "name_key", "name_status",
    "id_number_raw", "id_number", "id_number_status", "id_birth_date", "id_sex", "id_region",
    "sex_raw", "birth_date_raw", "address_raw", "phone_raw", "status_raw",
)


def standardize_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """Standardize raw resident records; the result has :data:`STD_COLUMNS` plus any extra input columns."""
    missing = [c for c in ("source", "source_record_id", "name", "id_number") if c not in raw.columns]
    if missing:
        raise ValueError(f"input lacks the column(s) {missing}")
    out = raw.copy()
    for field in RAW_FIELDS:
        values = raw[field] if field in raw.columns else pd.Series(pd.NA, index=raw.index, dtype="string")
        out[f"{field}_raw"] = values.astype("string")
    out = out.drop(columns=[c for c in RAW_FIELDS if c in out.columns])
    names = standardize_names(out["name_raw"])
    ids = standardize_id_numbers(out["id_number_raw"])
    out = pd.concat([out, names, ids], axis=1)
    extra = [c for c in out.columns if c not in STD_COLUMNS]
    return out[list(STD_COLUMNS) + extra]
