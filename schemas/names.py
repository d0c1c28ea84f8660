"""Person names: normalize for display, build a matching key, flag placeholders.

The legal name stays as written (after NFKC and space removal); traditional→simplified
conversion is applied to the matching key only.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

SEPARATOR = "\u00b7"  # the minority-name separator mandated in 2016
# what systems store instead: bullet, katakana middle dot, hyphenation point, dot operators, full stop
_SEPARATOR_VARIANTS = r"[\u2022\u30fb\uff65\u2027\u2219\u22c5\u318d\u0387.]"

VALID = "valid"
MISSING = "missing"
PLACEHOLDER = "placeholder"
MALFORMED = "malformed"

_PLACEHOLDERS = r"^(?:无|无名|暂无|不详|未知|待补|测试|某某|NULL|NONE|NAN|N/?A|[/\\\-—_.*?？·]+)$"


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def _map_unique(values: pd.Series, func) -> pd.Series:
    """Apply a scalar function once per distinct value (names repeat a lot)."""
    uniques = values.dropna().unique()
    mapping = dict(zip(uniques, (func(u) for u in uniques)))
    return values.map(mapping).astype("string")


def standardize_names(raw: pd.Series) -> pd.DataFrame:
    """Standardize raw names: ``name`` (clean), ``name_key`` (matching key) and ``name_status``."""
    s = raw.astype("string").str.normalize("NFKC")
    # ASCII and ideographic spaces (NFKC has turned U+3000 into a space) and control characters
    s = s.str.replace(r"[\s\u200b\ufeff\x00-\x1f\x7f]+", "", regex=True)
    s = s.str.replace(_SEPARATOR_VARIANTS, SEPARATOR, regex=True).str.strip(SEPARATOR)

    status = pd.Series(np.full(len(s), VALID, dtype=object), index=s.index)
    missing = s.isna() | (s.fillna("") == "")
    placeholder = ~missing & s.fillna("").str.upper().str.match(_PLACEHOLDERS)
    malformed = ~missing & ~placeholder & (s.fillna("").str.contains(r"\d", regex=True) | (s.str.len() > 50))
    status[malformed] = MALFORMED
    status[placeholder] = PLACEHOLDER
    status[missing] = MISSING

    usable = status == VALID
    name = s.where(usable, pd.NA)
    key = _map_unique(name, _t2s().convert).str.replace(SEPARATOR, "", regex=False).str.upper()

    out = pd.DataFrame(index=s.index)
    out["name"] = name
    out["name_key"] = key.where(usable, pd.NA)
    out["name_status"] = status.astype("string")
    return out
