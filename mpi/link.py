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
from collections.abc import Callable, Iterable
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


@dataclass
class Frequencies:
    """The term-frequency snapshot scores are computed with, and the record count the prior is scaled to.

    A full run on the same data and an incremental run give the same scores only if they use the
    same snapshot: the warehouse keeps one and refreshes it deliberately (a model change)."""

    tables: dict[str, pd.DataFrame]
    records: int


TF_COLUMNS = ("name_key", "phone", "address_key")


def matching_frame(std: pd.DataFrame, cannot: Iterable[tuple[str, str]] = ()) -> pd.DataFrame:
    """Features of ``std`` (same order) with their deterministic ``anchor_key``."""
    from mpi.deterministic import anchor_keys
    from mpi.features import build_features

    feats = build_features(std)
    feats["anchor_key"] = anchor_keys(feats, cannot).to_numpy()
    return feats


def distinct_rows(feats: pd.DataFrame) -> pd.DataFrame:
    """One row per anchor and set of matching values (the smallest record key): records linked
    deterministically that also agree on every matching column score the same against everyone else."""
    from mpi.model import SPLINK_COLUMNS

    cols = ["anchor_key"] + [c for c in SPLINK_COLUMNS if c not in ("unique_id", "anchor")]
    return feats.sort_values("record_key", kind="stable").drop_duplicates(cols)


def term_frequencies(distinct: pd.DataFrame) -> Frequencies:
    """Term frequencies as Splink computes them (count / non-null count), from :func:`distinct_rows`."""
    tables = {}
    for col in TF_COLUMNS:
        counts = distinct[col].dropna().astype(str).value_counts()
        tables[col] = pd.DataFrame({col: counts.index.astype(str), f"tf_{col}": counts.to_numpy() / counts.sum()})
    return Frequencies(tables, int(len(distinct)))


def score(left: pd.DataFrame, right: pd.DataFrame | None = None, *, frequencies: Frequencies,
          model_path=None, review_threshold: float = 0.5, backend: str = "duckdb",
          backend_options: dict | None = None) -> pd.DataFrame:
    """Scored candidate pairs at or above ``review_threshold``: within ``left``, and between ``left``
    and ``right`` when given. Both carry ``unique_id`` (distinct across the two) and ``anchor_key``.

    Columns: unique_id_l, unique_id_r (l < r), match_weight, match_probability, mw_*, gamma_*."""
    from splink import Linker

    from mpi.model import SPLINK_COLUMNS, db_api, load_model

    empty = pd.DataFrame(columns=["unique_id_l", "unique_id_r", "match_weight", "match_probability"])
    if len(left) + (0 if right is None else len(right)) < 2:
        return empty
    frames = [left] if right is None else [left, right]
    codes, _ = pd.factorize(pd.concat([f["anchor_key"] for f in frames]), sort=True)
    api = db_api(backend, **(backend_options or {}))
    registered, start = [], 0
    for i, frame in enumerate(frames):
        table = frame.assign(anchor=codes[start:start + len(frame)])[list(SPLINK_COLUMNS)]
        start += len(frame)
        if backend == "duckdb":  # DuckDB scans an Arrow table in place; a pandas frame costs a conversion
            import pyarrow as pa

            table = pa.Table.from_pandas(table, preserve_index=False)
        registered.append(api.register(table, dataset_display_name=f"records_{i}"))
    linker = Linker(registered[0], load_model(model_path, records=frequencies.records), log_level=logging.WARNING)
    for col, table in frequencies.tables.items():
        present = pd.concat([f[col] for f in frames]).dropna().astype(str).unique()
        if len(present) < len(table):  # a lookup needs only the values being compared
            table = table[table[col].isin(present)]
        linker.table_management.register_term_frequency_lookup(api.register(table), col)
    preds = [linker.inference.predict_within(registered[0], threshold_match_probability=review_threshold)]
    if right is not None and len(right):
        preds.append(linker.inference.predict_between(registered[0], registered[1],
                                                      threshold_match_probability=review_threshold))
    keep = ["unique_id_l", "unique_id_r", "match_weight", "match_probability"]
    parts = []
    for pred in preds:
        table = pred.as_pyarrow_table()
        cols = [c for c in table.column_names if c in keep or c.startswith("mw_") or c.startswith("gamma_")]
        parts.append(table.select(cols).to_pandas())
        pred.drop_table_from_database_and_remove_from_cache()
    edges = pd.concat(parts, ignore_index=True) if parts else empty
    swap = edges["unique_id_l"] > edges["unique_id_r"]
    edges.loc[swap, ["unique_id_l", "unique_id_r"]] = edges.loc[swap, ["unique_id_r", "unique_id_l"]].to_numpy()
    return edges


def link_records(std: pd.DataFrame, *, model_path: str | Path | None = None, backend: str = "duckdb",
                 threshold: float = 0.99, review_threshold: float = 0.5, on_progress: Callable | None = None,
                 backend_options: dict | None = None, frequencies: Frequencies | None = None,
                 must: Iterable[tuple[str, str]] = (), cannot: Iterable[tuple[str, str]] = ()) -> LinkResult:
    """Link standardized records into clusters of one person each.

    ``threshold``: a link at or above it merges (unless a hard constraint refuses it);
    ``review_threshold``: links from it up to ``threshold`` go to ``reviews``.
    Every input row appears exactly once in the crosswalk, in input order.
    ``frequencies``: the term-frequency snapshot (default: computed from ``std``);
    ``must`` / ``cannot``: record-key pairs a steward decided (see :mod:`mpi.clustering`).
    ``backend_options`` go to the Splink database API (``memory_limit=`` for DuckDB,
    ``spark_session=`` for ``backend="spark"``).
    """
    if not 0 < review_threshold <= threshold <= 1:
        raise ValueError("expected 0 < review_threshold <= threshold <= 1")
    cannot = list(cannot)
    t0 = time.perf_counter()
    feats = matching_frame(std, cannot)
    distinct = distinct_rows(feats)
    frequencies = frequencies or term_frequencies(distinct)
    stats: dict[str, Any] = {"records": int(len(std)), "records_scored": int(len(distinct)),
                             "id_conflicts": int(feats["id_conflict"].sum()),
                             "seconds_features": round(time.perf_counter() - t0, 2)}
    _progress(on_progress, "deterministic", records=len(feats))

    t1 = time.perf_counter()
    edges = score(distinct, frequencies=frequencies, model_path=model_path, review_threshold=review_threshold,
                  backend=backend, backend_options=backend_options)
    stats["pairs_scored_at_or_above_review_threshold"] = int(len(edges))
    stats["seconds_predict"] = round(time.perf_counter() - t1, 2)
    _progress(on_progress, "predicted", pairs=len(edges))

    t2 = time.perf_counter()
    clustered, reviews, cstats = cluster_records(feats, edges, threshold, must=must, cannot=cannot)
    stats.update(cstats)
    crosswalk = pd.DataFrame({
        "source": std["source"].astype(str).to_numpy(),
        "source_record_id": std["source_record_id"].astype(str).to_numpy(),
    })
    for col in ("cluster_key", "match_probability", "reason"):
        crosswalk[col] = clustered[col].to_numpy()
    stats["seconds_cluster"] = round(time.perf_counter() - t2, 2)
    stats["seconds_total"] = round(time.perf_counter() - t0, 2)
    stats["reasons"] = crosswalk["reason"].value_counts().to_dict()
    _progress(on_progress, "clustered", clusters=stats["clusters"], reviews=stats["reviews"])
    return LinkResult(crosswalk, reviews, stats)


def cluster_records(feats: pd.DataFrame, edges: pd.DataFrame, threshold: float, *,
                    must: Iterable[tuple[str, str]] = (), cannot: Iterable[tuple[str, str]] = ()
                    ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Cluster ``feats`` (record_key, anchor_key, features; ``unique_id`` = position) on ``edges``.

    Returns (record_key, cluster_key, match_probability, reason per record in order; the reviews; counts).
    The cluster key is the smallest record key of the cluster. Pairs a steward decided are not
    reviewed again."""
    from mpi.clustering import constrained_clusters

    feats = feats.assign(unique_id=np.arange(len(feats)),
                         anchor=pd.factorize(feats["anchor_key"], sort=True)[0])
    roots, edges = constrained_clusters(feats, edges, threshold, must=must, cannot=cannot)
    keys = feats["record_key"].to_numpy(dtype=object)
    cluster_key = pd.Series(keys).groupby(roots).transform("min").to_numpy()
    anchor_size = feats["anchor"].map(feats["anchor"].value_counts()).to_numpy()

    # the strongest accepted link of each record into its cluster
    accepted = edges[edges["decision"] == "accepted"]
    best = pd.concat([accepted[["unique_id_l", "match_probability"]].rename(columns={"unique_id_l": "uid"}),
                      accepted[["unique_id_r", "match_probability"]].rename(columns={"unique_id_r": "uid"})])
    best_p = best.groupby("uid")["match_probability"].max()
    refused = edges[edges["decision"] == "refused"]
    refused_ids = set(refused["unique_id_l"]).union(refused["unique_id_r"])
    cluster_size = pd.Series(roots).map(pd.Series(roots).value_counts()).to_numpy()

    prob = pd.Series(np.nan, index=np.arange(len(feats)))
    prob.loc[best_p.index.astype(np.int64)] = best_p.to_numpy()
    prob[anchor_size > 1] = 1.0
    reason = np.full(len(feats), SINGLETON, dtype=object)
    reason[feats["unique_id"].isin(refused_ids).to_numpy()] = SPLIT_CONSTRAINT
    reason[(cluster_size > 1)] = PROBABILISTIC
    reason[anchor_size > 1] = EXACT_ID
    prob[(cluster_size == 1) & (reason != SPLIT_CONSTRAINT)] = np.nan
    out = pd.DataFrame({"record_key": keys, "cluster_key": cluster_key, "match_probability": prob.to_numpy(),
                        "reason": reason})
    reviews = _reviews(edges, feats, roots, cluster_key, threshold)
    decided = {tuple(sorted(p)) for p in list(must) + list(cannot)}
    if decided and len(reviews):
        pairs = list(zip(np.minimum(reviews["record_key_l"], reviews["record_key_r"]),
                         np.maximum(reviews["record_key_l"], reviews["record_key_r"])))
        reviews = reviews[[p not in decided for p in pairs]].reset_index(drop=True)
    stats = {"linked_deterministically": int((anchor_size > 1).sum()),
             "clusters": int(pd.Series(roots).nunique()),
             "links_refused_by_constraint": refused["constraint"].value_counts().to_dict(),
             "reviews": int(len(reviews))}
    return out, reviews, stats


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
