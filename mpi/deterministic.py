"""The deterministic pass: records that agree on a trusted valid ID number and on identity.

A record joins the anchor a shared anchor when its ID number is valid, the number's birth date
and sex agree with the record's own (where the record has them — see :mod:`mpi.features`), and
its name key or name pinyin is the one most records with that number carry. Everything else is
left to the probabilistic pass, on its own anchor its own anchor.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _modal(feats: pd.DataFrame, column: str) -> pd.Series:
    """Per ID number: the most frequent value of ``column`` (ties: the smallest, for determinism)."""
    sub = feats[feats["id_valid"].notna() & feats[column].notna()]
    counts = sub.groupby(["id_valid", column], observed=True).size().rename("n").reset_index()
    counts = counts.sort_values(["id_valid", "n", column], ascending=[True, False, True])
    return counts.drop_duplicates("id_valid").set_index("id_valid")[column]


def deterministic_anchors(feats: pd.DataFrame) -> pd.Series:
    """An integer anchor per record: records linked deterministically share one; every other record has its own.

    Anchors are stable within a run (codes of the sorted ID numbers, then ``len(anchors) + unique_id``)."""
    ids = feats["id_valid"]
    key_ok = feats["name_key"].notna() & (feats["name_key"] == ids.map(_modal(feats, "name_key"))).fillna(False)
    pinyin_ok = feats["name_pinyin"].notna() & (
        feats["name_pinyin"] == ids.map(_modal(feats, "name_pinyin"))).fillna(False)
    agrees = ids.notna() & (key_ok | pinyin_ok)
    codes, _ = pd.factorize(ids.where(agrees), sort=True)  # -1 where not anchored
    own = len(feats) + feats["unique_id"].to_numpy()
    return pd.Series(np.where(codes >= 0, codes, own), index=feats.index, dtype="int64")
