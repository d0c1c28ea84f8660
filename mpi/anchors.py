"""From clusters to master-id anchors, and the ID number each master may carry.

A cluster is anchored on a valid ID number (``id:<number>``) when its records carry that number
and the number agrees with the records' own birth date and sex. When two clusters claim one
number, the cluster with more records carrying it keeps the claim; the other is anchored on its
cluster key (``rec:<source>/<record>``) and carries no ID number. So no two masters ever hold the
same ID number, and no master holds a number its records contradict.
"""

from __future__ import annotations

import pandas as pd


def cluster_anchors(cluster_key: pd.Series, trusted_id: pd.Series) -> pd.Series:
    """The anchor of each record's cluster, given each record's trusted ID number (or null).

    Every record carrying one of the numbers must be present for the claims to be right."""
    frame = pd.DataFrame({"cluster_key": cluster_key.astype(str).to_numpy(), "id_number": trusted_id.to_numpy()})
    carried = (frame.dropna(subset=["id_number"]).groupby(["cluster_key", "id_number"]).size().rename("n")
               .reset_index().sort_values(["cluster_key", "n", "id_number"], ascending=[True, False, True])
               .drop_duplicates("cluster_key"))
    # one number, one master: the cluster with the most records carrying it keeps it
    claims = carried.sort_values(["id_number", "n", "cluster_key"], ascending=[True, False, True]) \
        .drop_duplicates("id_number").set_index("cluster_key")["id_number"]
    anchor = ("id:" + frame["cluster_key"].map(claims).astype("string")).where(
        frame["cluster_key"].isin(claims.index), "rec:" + frame["cluster_key"].astype("string"))
    return pd.Series(anchor.to_numpy(), index=cluster_key.index)
