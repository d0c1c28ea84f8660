"""The matching facade: standardized records in, a crosswalk and a review list out.

    result = link_records(std)                   # std: schemas.resident.standardize_frame output
    result.crosswalk   # source, source_record_id, cluster_key, match_probability, reason
    result.reviews     # grey-zone and constraint-refused pairs, with per-comparison match weights
    result.stats       # counts and timings

Steps: features → deterministic pass (trusted valid ID + agreeing name) → Splink prediction on
the pairs the blocking rules generate between records not already anchored together → clustering
under hard constraints (:mod:`mpi.clustering`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

EXACT_ID = "exact_id"
PROBABILISTIC = "probabilistic"
SINGLETON = "singleton"
SPLIT_CONSTRAINT = "split_constraint"
REASONS = (EXACT_ID, PROBABILISTIC, SPLIT_CONSTRAINT, SINGLETON)
COMPARISONS = ("id", "name", "dob", "sex", "phone", "address")


@dataclass
class LinkResult:
    crosswalk: pd.DataFrame
    reviews: pd.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


def _progress(on_progress: Callable | None, step: str, **info: Any) -> None:
    if on_progress is not None:
        on_progress(step, info)


def _predict(feats: pd.DataFrame, model_path, backend: str, review_threshold: float,
             backend_options: dict | None) -> tuple[pd.DataFrame, int]:
    from splink import Linker

    from mpi.model import SPLINK_COLUMNS, db_api, load_model

    api = db_api(backend, **(backend_options or {}))
    settings = load_model(model_path, records=len(feats))
    table = feats[list(SPLINK_COLUMNS)]
    if backend == "duckdb":  # DuckDB scans an Arrow table in place; a pandas frame costs a conversion
        import pyarrow as pa

        table = pa.Table.from_pandas(table, preserve_index=False)
    linker = Linker(api.register(table, dataset_display_name="std"), settings, log_level=logging.WARNING)
    pred = linker.inference.predict(threshold_match_probability=review_threshold)
    keep = ["unique_id_l", "unique_id_r", "match_weight", "match_probability", "match_key"]
    table = pred.as_pyarrow_table()
    cols = [c for c in table.column_names if c in keep or c.startswith("mw_") or c.startswith("gamma_")]
    edges = table.select(cols).to_pandas()
    pred.drop_table_from_database_and_remove_from_cache()
    return edges, len(edges)


def link_records(std: pd.DataFrame, *, model_path: str | Path | None = None, backend: str = "duckdb",
                 threshold: float = 0.99, review_threshold: float = 0.5, on_progress: Callable | None = None,
                 backend_options: dict | None = None) -> LinkResult:
    """Link standardized records into clusters of one person each.

    ``threshold``: a link at or above it merges (unless a hard constraint refuses it);
    ``review_threshold``: links from it up to ``threshold`` go to ``reviews``.
    Every input row appears exactly once in the crosswalk, in input order.
    ``backend_options`` go to the Splink database API
    (e.g. ``spark_session=`` for ``backend="spark"``).
    """
    from mpi.clustering import constrained_clusters
    from mpi.deterministic import deterministic_anchors
    from mpi.features import build_features
    from mpi.model import SPLINK_COLUMNS

    if not 0 < review_threshold <= threshold <= 1:
        raise ValueError("expected 0 < review_threshold <= threshold <= 1")
    stats: dict[str, Any] = {"records": int(len(std))}
    t0 = time.perf_counter()
    feats = build_features(std)
    feats["anchor"] = deterministic_anchors(feats)
    anchor_size = feats["anchor"].map(feats["anchor"].value_counts()).to_numpy()
    stats["linked_deterministically"] = int((anchor_size > 1).sum())
    stats["id_conflicts"] = int(feats["id_conflict"].sum())
    stats["seconds_features"] = round(time.perf_counter() - t0, 2)
    _progress(on_progress, "deterministic", records=len(feats), linked=stats["linked_deterministically"])

    t1 = time.perf_counter()
    # records linked deterministically that also agree on every matching column would score the
    # same against everyone else: Splink sees one of them (the first), the clustering all of them
    distinct = feats.drop_duplicates([c for c in SPLINK_COLUMNS if c != "unique_id"])
    stats["records_scored"] = int(len(distinct))
    if len(distinct) > 1:
        edges, n_pairs = _predict(distinct, model_path, backend, review_threshold, backend_options)
    else:
        edges, n_pairs = pd.DataFrame(columns=["unique_id_l", "unique_id_r", "match_weight", "match_probability"]), 0
    stats["pairs_scored_at_or_above_review_threshold"] = n_pairs
    stats["seconds_predict"] = round(time.perf_counter() - t1, 2)
    _progress(on_progress, "predicted", pairs=n_pairs)

    t2 = time.perf_counter()
    roots, edges = constrained_clusters(feats, edges, threshold)
    keys = feats["record_key"].to_numpy(dtype=object)
    cluster_key = pd.Series(keys).groupby(roots).transform("min").to_numpy()

    # the strongest accepted link of each record into its cluster
    accepted = edges[edges["decision"] == "accepted"]
    best = pd.concat([accepted[["unique_id_l", "match_probability"]].rename(columns={"unique_id_l": "uid"}),
                      accepted[["unique_id_r", "match_probability"]].rename(columns={"unique_id_r": "uid"})])
    best_p = best.groupby("uid")["match_probability"].max()
    refused = edges[edges["decision"] == "refused"]
    refused_ids = set(refused["unique_id_l"]).union(refused["unique_id_r"])
    cluster_size = pd.Series(roots).map(pd.Series(roots).value_counts()).to_numpy()

    prob = pd.Series(np.nan, index=np.arange(len(feats)))
    prob.loc[best_p.index] = best_p.to_numpy()
    prob[anchor_size > 1] = 1.0
    reason = np.full(len(feats), SINGLETON, dtype=object)
    in_refused = feats["unique_id"].isin(refused_ids).to_numpy()
    reason[in_refused] = SPLIT_CONSTRAINT
    reason[(cluster_size > 1)] = PROBABILISTIC
    reason[anchor_size > 1] = EXACT_ID
    crosswalk = pd.DataFrame({
        "source": std["source"].astype(str).to_numpy(),
        "source_record_id": std["source_record_id"].astype(str).to_numpy(),
        "cluster_key": cluster_key,
        "match_probability": prob.to_numpy(),
        "reason": reason,
    })
    crosswalk.loc[(cluster_size == 1) & (reason != SPLIT_CONSTRAINT), "match_probability"] = np.nan

    reviews = _reviews(edges, feats, roots, cluster_key, threshold)
    stats["seconds_cluster"] = round(time.perf_counter() - t2, 2)
    stats["seconds_total"] = round(time.perf_counter() - t0, 2)
    stats["clusters"] = int(pd.Series(roots).nunique())
    stats["links_refused_by_constraint"] = refused["constraint"].value_counts().to_dict()
    stats["reasons"] = crosswalk["reason"].value_counts().to_dict()
    stats["reviews"] = int(len(reviews))
    _progress(on_progress, "clustered", clusters=stats["clusters"], reviews=stats["reviews"])
    return LinkResult(crosswalk, reviews, stats)


def _reviews(edges: pd.DataFrame, feats: pd.DataFrame, roots: np.ndarray, cluster_key: np.ndarray,
             threshold: float) -> pd.DataFrame:
    """Grey-zone links between different clusters, and links a constraint refused — with their evidence."""
    if edges.empty:
        return pd.DataFrame(columns=["record_key_l", "record_key_r", "cluster_key_l", "cluster_key_r",
                                     "match_probability", "match_weight", "review_reason"])
    left, right = edges["unique_id_l"].to_numpy(), edges["unique_id_r"].to_numpy()
    apart = roots[left] != roots[right]
    grey = (edges["match_probability"] < threshold).to_numpy() & apart
    refused = (edges["decision"] == "refused").to_numpy() & apart
    sel = edges[grey | refused]
    keys = feats["record_key"].to_numpy(dtype=object)
    out = pd.DataFrame({
        "record_key_l": keys[sel["unique_id_l"].to_numpy()],
        "record_key_r": keys[sel["unique_id_r"].to_numpy()],
        "cluster_key_l": cluster_key[sel["unique_id_l"].to_numpy()],
        "cluster_key_r": cluster_key[sel["unique_id_r"].to_numpy()],
        "match_probability": sel["match_probability"].to_numpy(),
        "match_weight": sel["match_weight"].to_numpy(),
        "review_reason": np.where(sel["decision"].to_numpy() == "refused",
                                  ("constraint:" + sel["constraint"].astype(str)).to_numpy(), "grey_zone"),
    })
    for col in sel.columns:
        if col.startswith("mw_") or col.startswith("gamma_"):
            out[col] = sel[col].to_numpy()
    return out.sort_values(["match_probability", "record_key_l", "record_key_r"],
                           ascending=[False, True, True]).reset_index(drop=True)
