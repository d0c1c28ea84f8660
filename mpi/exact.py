"""Deterministic matching on valid ID numbers that agree with the name.

Records whose ID number is valid (or a correctly upgraded 15-digit number) and whose name key is
the one most records with that ID number carry share the anchor ``id:<number>``. A record with
the same valid ID number but another name (often a family member's ID number typed in) is kept
apart as ``id_name_conflict``; a record with a mistyped, placeholder or missing ID number stays
on its own. A missed link is better than a wrong one.
"""

from __future__ import annotations

import pandas as pd

from schemas.id_number import USABLE

EXACT_ID = "exact_id"
SINGLETON = "singleton"
ID_NAME_CONFLICT = "id_name_conflict"


def exact_id_anchors(records: pd.DataFrame) -> pd.DataFrame:
    """Anchor per record: ``source, source_record_id, anchor, match_rule``.

    Input columns: source, source_record_id, id_number, id_number_status, name_key.
    """
    usable = records["id_number_status"].isin(USABLE) & records["id_number"].notna()
    named = usable & records["name_key"].notna()
    # the name most records with this ID number carry (ties: the smallest key, for determinism)
    counts = (records[named].groupby(["id_number", "name_key"]).size().rename("n").reset_index()
              .sort_values(["id_number", "n", "name_key"], ascending=[True, False, True])
              .drop_duplicates("id_number").set_index("id_number")["name_key"])
    agrees = named & (records["name_key"] == records["id_number"].map(counts)).fillna(False)

    own = "rec:" + records["source"].astype(str) + "/" + records["source_record_id"].astype(str)
    anchor = ("id:" + records["id_number"].astype("string")).where(agrees, own)
    group_size = anchor.map(anchor.value_counts())
    rule = pd.Series(SINGLETON, index=records.index)
    rule[agrees & (group_size > 1)] = EXACT_ID
    rule[usable & ~agrees] = ID_NAME_CONFLICT
    return pd.DataFrame({
        "source": records["source"].astype(str),
        "source_record_id": records["source_record_id"].astype(str),
        "anchor": anchor.astype(str),
        "match_rule": rule,
    })
