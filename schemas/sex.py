"""Sex codes (GB/T 2261.1-2003): 0 unknown, 1 male, 2 female, 9 unspecified.

Departments write 男/女, 男性/女性, M/F, 1/2 and sometimes 0/1 with 0 meaning female: the default
map covers the common dialect and a source's own ``codes`` override it key by key. A code the map
does not know is reported, not guessed; a sex that contradicts the ID number is reported and kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from schemas.text import TEXT, blank_or_null, distinct, expand, flag, nfkc, squeeze

UNKNOWN, MALE, FEMALE, UNSPECIFIED = 0, 1, 2, 9
GB_CODES = (UNKNOWN, MALE, FEMALE, UNSPECIFIED)

VALID = "valid"
MISSING = "missing"
UNKNOWN_CODE = "unknown_code"
CONFLICT_WITH_ID = "conflict_with_id"
STATUSES = (VALID, CONFLICT_WITH_ID, UNKNOWN_CODE, MISSING)

DEFAULT_CODES: dict[str, int] = {
    "男": MALE, "女": FEMALE, "男性": MALE, "女性": FEMALE, "M": MALE, "F": FEMALE, "MALE": MALE, "FEMALE": FEMALE,
    "1": MALE, "2": FEMALE, "0": UNKNOWN, "9": UNSPECIFIED,
    "未知": UNKNOWN, "不详": UNKNOWN, "未知的性别": UNKNOWN, "未说明": UNSPECIFIED, "未说明的性别": UNSPECIFIED,
}
_EMPTY_WORDS = "^(?:无|空|NULL|NONE|NAN|N/?A|[-/\\\\_.*?？—]+)$"
_INTEGRAL_FLOAT = "^([0-9]+)\\.0+$"  # "1.0" from a spreadsheet or a float column


def _normalize(values: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(squeeze(pc.utf8_upper(nfkc(values))), _INTEGRAL_FLOAT, "\\1")


def _code_map(codes: dict[str, int] | None) -> dict[str, int]:
    merged = dict(DEFAULT_CODES)
    for key, value in (codes or {}).items():
        if value not in GB_CODES:
            raise ValueError(f"sex code map: {key!r} maps to {value!r}, which is not a GB/T 2261.1 code {GB_CODES}")
        normalized = _normalize(pa.array([str(key)], type=pa.large_string()))[0].as_py()
        merged[normalized] = int(value)
    return merged


def standardize_sex(raw: pd.Series, *, codes: dict[str, int] | None = None, id_sex: pd.Series | None = None) -> pd.DataFrame:
    """Standardize raw sex codes.

    Returns ``sex`` (Int16 GB/T 2261.1 code or null) and ``sex_status``: valid, missing,
    unknown_code (not in the map) or conflict_with_id (1/2 that differs from ``id_sex``, the sex
    the ID number gives; the mapped value is kept). ``codes`` (e.g. ``{"0": 2, "1": 1}``) override
    the default map for the keys they have.
    """
    mapping = _code_map(codes)
    row_codes, values = distinct(raw)
    key = _normalize(values)
    known = pa.array(list(mapping), type=pa.large_string())
    position = pc.fill_null(pc.index_in(key, value_set=known), -1).to_numpy(zero_copy_only=False)
    mapped = position >= 0
    targets = np.array(list(mapping.values()), dtype=np.int16)
    sex = pd.array(targets[np.where(mapped, position, 0)], dtype="Int16")
    sex[~mapped] = pd.NA
    missing = ~mapped & (blank_or_null(key) | flag(pc.match_substring_regex(key, _EMPTY_WORDS)))
    status = np.select([mapped, missing], [VALID, MISSING], UNKNOWN_CODE)
    out = expand(pd.DataFrame({"sex": sex, "sex_status": status}), row_codes, raw.index)

    if id_sex is not None:
        mine = out["sex"].to_numpy(dtype=float, na_value=np.nan)
        theirs = pd.to_numeric(id_sex.reindex(raw.index), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        conflict = np.isin(mine, (MALE, FEMALE)) & np.isin(theirs, (MALE, FEMALE)) & (mine != theirs)
        out.loc[conflict, "sex_status"] = CONFLICT_WITH_ID
    out["sex_status"] = out["sex_status"].astype(TEXT)
    return out
