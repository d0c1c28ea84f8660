"""Scoring candidate pairs with the Splink model, and the term-frequency snapshot scores depend on.

Records linked deterministically that also agree on every matching value score the same against
everyone else, so only one row of each such group is scored (:func:`distinct_rows`). Scored pairs
come out by position (``unique_id_l`` / ``unique_id_r``); :func:`keyed_links` turns them into pairs
of record keys, the form a stored index keeps, and :func:`positional_links` turns stored pairs back.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd

TF_COLUMNS = ("name_key", "phone", "address_key")
LINK_COLUMNS = ("record_key_l", "record_key_r", "match_probability", "match_weight")


@dataclass
class Frequencies:
    """The term-frequency snapshot scores are computed with, and the record count the prior is scaled to.

    A full run on the same data and an incremental run give the same scores only if they use the
    same snapshot: the warehouse keeps one and refreshes it deliberately (a model change)."""

    tables: dict[str, pd.DataFrame]
    records: int


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
    ``backend``: ``duckdb`` or ``spark`` (see :func:`mpi.model.db_api`); the pairs come back to this process.

    Columns: unique_id_l, unique_id_r (l < r), match_weight, match_probability, mw_*, gamma_*."""
    import pyarrow as pa
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
        # DuckDB scans an Arrow table in place (a pandas frame costs a conversion); Spark takes it whole
        table = pa.Table.from_pandas(table, preserve_index=False)
        # a Spark session outlives the call: its tables get names of their own, dropped below
        name = f"records_{i}" if backend == "duckdb" else f"hub_records_{uuid.uuid4().hex[:12]}_{i}"
        registered.append(api.register(table, dataset_display_name=f"records_{i}", table_name=name))
    model = load_model(model_path, records=frequencies.records, dialect=backend)
    linker = Linker(registered[0], model, log_level=logging.WARNING)
    for col, table in frequencies.tables.items():
        present = pd.concat([f[col] for f in frames]).dropna().astype(str).unique()
        if len(present) < len(table):  # a lookup needs only the values being compared
            table = table[table[col].isin(present)]
        linker.table_management.register_term_frequency_lookup(
            api.register(pa.Table.from_pandas(table, preserve_index=False)), col)
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
    if backend == "spark":
        for table in registered:
            api.spark.catalog.dropTempView(table.physical_name)
    if backend == "duckdb" and "connection" not in (backend_options or {}):
        # the connection was made for this call: close it, so that DuckDB's buffers (up to its memory
        # limit) are returned now rather than held through clustering until garbage collection
        del linker, registered, preds
        con = getattr(api, "_con", None)
        if con is not None:
            con.close()
    swap = edges["unique_id_l"] > edges["unique_id_r"]
    edges.loc[swap, ["unique_id_l", "unique_id_r"]] = edges.loc[swap, ["unique_id_r", "unique_id_l"]].to_numpy()
    return edges


def keyed_links(edges: pd.DataFrame, keys: np.ndarray) -> pd.DataFrame:
    """Scored pairs by position (unique_id_l/r into ``keys``) → by record key (l < r), with the
    per-comparison evidence (mw_*, gamma_*) as floats."""
    if edges.empty:
        return pd.DataFrame(columns=list(LINK_COLUMNS))
    a = keys[edges["unique_id_l"].to_numpy(dtype="int64")]
    b = keys[edges["unique_id_r"].to_numpy(dtype="int64")]
    swap = a > b
    left, right = a.copy(), b.copy()
    left[swap], right[swap] = b[swap], a[swap]
    out = pd.DataFrame({"record_key_l": left, "record_key_r": right,
                        "match_probability": edges["match_probability"].to_numpy(float),
                        "match_weight": edges["match_weight"].to_numpy(float)})
    evidence = edges.filter(regex="^(mw_|gamma_)").astype(float)
    return pd.concat([out, evidence.reset_index(drop=True)], axis=1)


def positional_links(links: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Pairs by record key (from :func:`keyed_links`) → positions in ``frame``, for the pairs whose
    two records are both in ``frame``."""
    pos = pd.Series(np.arange(len(frame)), index=frame["record_key"].astype(str).to_numpy())
    keep = links[links["record_key_l"].isin(pos.index) & links["record_key_r"].isin(pos.index)]
    out = pd.DataFrame({"unique_id_l": pos[keep["record_key_l"]].to_numpy(),
                        "unique_id_r": pos[keep["record_key_r"]].to_numpy(),
                        "match_probability": keep["match_probability"].astype(float).to_numpy(),
                        "match_weight": keep["match_weight"].astype(float).to_numpy()}, index=keep.index)
    evidence = keep.filter(regex="^(mw_|gamma_)")
    return pd.concat([out, evidence], axis=1).reset_index(drop=True)
