"""The deterministic pass: records that agree on a trusted valid ID number and on identity.

A record joins the anchor of its ID number when the number is valid, the number's birth date and
sex agree with the record's own (where the record has them — see :mod:`mpi.features`), and its
name key or name pinyin is the one most records with that number carry. Everything else is left
to the probabilistic pass, on an anchor of its own. A steward's cannot-link ``(kept, out)`` between
two records of one anchor takes ``out`` out of it: the record a split or move-out takes out, or for a
"not a match" the later record (by key) — :mod:`warehouse.stewardship` orders the pairs so.

Anchor keys are ``id:<number>`` or ``rec:<record key>``: they depend only on the records, never on
their order, so a full run and an incremental run give the same anchors.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


def _modal(feats: pd.DataFrame, column: str) -> pd.Series:
    """Per ID number: the most frequent value of ``column`` (ties: the smallest, for determinism)."""
    sub = feats[feats["id_valid"].notna() & feats[column].notna()]
    counts = sub.groupby(["id_valid", column], observed=True).size().rename("n").reset_index()
    counts = counts.sort_values(["id_valid", "n", column], ascending=[True, False, True])
    return counts.drop_duplicates("id_valid").set_index("id_valid")[column]


def anchor_keys(feats: pd.DataFrame, cannot: Iterable[tuple[str, str]] = ()) -> pd.Series:
    """The anchor key of every record (``feats`` needs record_key, id_valid, name_key, name_pinyin).

    Every record sharing a record's ID number must be in ``feats`` for its anchor to be right. ``cannot``:
    pairs (kept, out); the second record of a pair sharing an anchor with the first leaves it."""
    ids = feats["id_valid"]
    key_ok = feats["name_key"].notna() & (feats["name_key"] == ids.map(_modal(feats, "name_key"))).fillna(False)
    pinyin_ok = feats["name_pinyin"].notna() & (
        feats["name_pinyin"] == ids.map(_modal(feats, "name_pinyin"))).fillna(False)
    agrees = (ids.notna() & (key_ok | pinyin_ok)).to_numpy()
    keys = np.where(agrees, ("id:" + ids.astype("string").fillna("")).to_numpy(dtype=object),
                    ("rec:" + feats["record_key"].astype("string")).to_numpy(dtype=object))
    pairs = list(cannot)
    if pairs:
        where = {k: i for i, k in enumerate(feats["record_key"].astype(str))}
        for a, b in sorted(pairs):
            if a in where and b in where and keys[where[a]] == keys[where[b]]:
                keys[where[b]] = "rec:" + b
    return pd.Series(keys, index=feats.index, dtype=object)


def deterministic_anchors(feats: pd.DataFrame) -> pd.Series:
    """An integer anchor per record: records linked deterministically share one (codes of the sorted keys)."""
    codes, _ = pd.factorize(anchor_keys(feats), sort=True)
    return pd.Series(codes, index=feats.index, dtype="int64")
