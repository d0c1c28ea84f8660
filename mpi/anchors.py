"""From clusters to master-id anchors, and the ID number each master may carry.

A cluster is anchored on a valid ID number (``id:<number>``) when its records carry that number
and the number agrees with the records' own birth date and sex. When two clusters claim one
number, the cluster with more records carrying it keeps the claim; the other is anchored on its
cluster key (``rec:<source>/<record>``) and carries no ID number. So no two masters ever hold the
same ID number, and no master holds a number its records contradict.
"""

from __future__ import annotations

import pandas as pd

from schemas.id_number import USABLE


def _agrees(std: pd.DataFrame, field: str, id_field: str) -> pd.Series:
    own, derived = std[field], std[id_field]
    if field == "birth_date":
        own, derived = pd.to_datetime(own, errors="coerce"), pd.to_datetime(derived, errors="coerce")
    else:
        own, derived = pd.to_numeric(own, errors="coerce"), pd.to_numeric(derived, errors="coerce")
    return (own.isna() | derived.isna() | (own == derived)).fillna(True)


def master_anchors(std: pd.DataFrame, crosswalk: pd.DataFrame) -> pd.DataFrame:
    """``source, source_record_id, anchor, match_rule`` for every record of ``crosswalk``.

    ``std`` holds the standardized records (id_number, id_number_status, birth_date, id_birth_date,
    sex, id_sex); ``crosswalk`` is :attr:`mpi.link.LinkResult.crosswalk`.
    """
    frame = crosswalk[["source", "source_record_id", "cluster_key", "reason"]].merge(
        std[["source", "source_record_id", "id_number", "id_number_status", "birth_date", "id_birth_date", "sex",
             "id_sex"]], on=["source", "source_record_id"], how="left", validate="one_to_one")
    trusted = (frame["id_number_status"].isin(USABLE) & frame["id_number"].notna()
               & _agrees(frame, "birth_date", "id_birth_date") & _agrees(frame, "sex", "id_sex"))
    carried = (frame[trusted].groupby(["cluster_key", "id_number"]).size().rename("n").reset_index()
               .sort_values(["cluster_key", "n", "id_number"], ascending=[True, False, True])
               .drop_duplicates("cluster_key"))
    # one number, one master: the cluster with the most records carrying it keeps it
    claims = carried.sort_values(["id_number", "n", "cluster_key"], ascending=[True, False, True]) \
        .drop_duplicates("id_number").set_index("cluster_key")["id_number"]
    anchor = ("id:" + frame["cluster_key"].map(claims)).where(frame["cluster_key"].isin(claims.index),
                                                              "rec:" + frame["cluster_key"].astype(str))
    return pd.DataFrame({"source": frame["source"].astype(str), "source_record_id": frame["source_record_id"].astype(str),
                         "anchor": anchor.astype(str), "match_rule": frame["reason"].astype(str)})
