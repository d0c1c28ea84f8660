"""Deterministic matching on valid ID numbers.

Records whose ID number is valid (or a correctly upgraded 15-digit number) share an anchor
``id:<number>``; every other record stays on its own (``rec:<source>/<record>``). A record with a
mistyped or placeholder ID is never linked on it: a missed link is better than a wrong one.
"""

from __future__ import annotations

import pandas as pd

from schemas.id_number import USABLE

EXACT_ID = "exact_id"
SINGLETON = "singleton"


def exact_id_anchors(records: pd.DataFrame) -> pd.DataFrame:
    """Anchor per record: ``source, source_record_id, anchor, match_rule``."""
    usable = records["id_number_status"].isin(USABLE) & records["id_number"].notna()
    own = "rec:" + records["source"].astype(str) + "/" + records["source_record_id"].astype(str)
    anchor = ("id:" + records["id_number"].astype("string")).where(usable, own)
    group_size = anchor.map(anchor.value_counts())
    rule = pd.Series(SINGLETON, index=records.index).where(~(usable & (group_size > 1)), EXACT_ID)
    return pd.DataFrame({
        "source": records["source"].astype(str),
        "source_record_id": records["source_record_id"].astype(str),
        "anchor": anchor.astype(str),
        "match_rule": rule,
    })
