"""Explanations of pairs of warehouse records, the same in ``hub explain``, ``hub review show`` and the API.

A pair is scored from the records' stored matching features with the model and the term-frequency
snapshot the last matching run used (:func:`mpi.explain.score_pair`), so a fresh explanation equals
the evidence stored with the pair's link or review. A stored review is explained from its evidence
(:func:`mpi.explain.explanation`) with the prior of that same snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from hub.errors import HubError
from mpi.explain import Explanation, ScoredPair, explanation, pair_features, score_pair
from mpi.matcher import Matcher
from mpi.model import load_model
from mpi.scoring import Frequencies
from warehouse import matching_state as ms
from warehouse.stewardship import resident_record


def model_note(conn: sa.Connection, model_path: str | Path | None = None) -> str:
    """Empty when the model file is the one the stored index was matched with, else what differs."""
    state = ms.read_model_state(conn)
    if state is None:
        return "no matching run has stored its term frequencies yet: weights have no term-frequency adjustment"
    if state[0] != Matcher.from_model(model_path).version:
        return ("the model changed since the last matching run: these weights are the current model's;"
                " run hub match --full to match with it")
    return ""


def _features(conn: sa.Connection, keys: list[str]) -> pd.DataFrame:
    """The stored matching features of ``keys`` (in that order); features computed afresh from the
    standardized record for a record not matched yet."""
    stored = ms.read_features(conn, keys).set_index("record_key", drop=False)
    missing = [k for k in keys if k not in stored.index]
    if not missing:
        return stored.loc[keys].reset_index(drop=True)
    rows = []
    for k in keys:
        source, _, record_id = k.partition("/")
        row = resident_record(conn, source, record_id)
        if row is None:
            raise HubError(f"no standardized record {k}: give SOURCE/RECORD_ID of a record in the warehouse")
        rows.append(dict(row))
    return pair_features(rows[0], rows[1])


def _snapshot(conn: sa.Connection, feats: pd.DataFrame) -> Frequencies | None:
    state = ms.read_model_state(conn)
    if state is None:
        return None
    return Frequencies(ms.read_frequencies(conn, only=feats), state[1])


def score_records(conn: sa.Connection, key_l: str, key_r: str, model_path: str | Path | None = None) -> ScoredPair:
    """Score two warehouse records (``source/record_id``) as the last matching run scored them."""
    feats = _features(conn, [key_l, key_r])
    return score_pair(feats, frequencies=_snapshot(conn, feats), model_path=model_path)


def stored_explanation(conn: sa.Connection, evidence: Mapping[str, Any], *, match_weight: float,
                       match_probability: float, model_path: str | Path | None = None) -> Explanation:
    """A stored pair's evidence (gamma_*, mw_*, mw_tf_adj_*) explained, with the prior of the stored snapshot."""
    state = ms.read_model_state(conn)
    records = state[1] if state is not None else None
    settings = load_model(model_path, records=records)
    return explanation(evidence, settings=settings, match_weight=match_weight, match_probability=match_probability)


TABLE_HEADER = ("comparison", "level", "weight", "term frequency", "total")


def table_rows(explained: Explanation) -> list[tuple[str, ...]]:
    """Rows of a printed explanation (see :data:`TABLE_HEADER`): the prior, each comparison, the match weight."""
    d = explained.to_dict()
    rows = [("prior 先验", d["prior"]["label"], "", "", f"{explained.prior_weight:+.2f}")]
    for r in explained.comparisons:
        rows.append((f"{r.comparison} {r.comparison_zh}", f"{r.level} / {r.level_zh}", f"{r.match_weight:+.2f}",
                     f"{r.tf_adjustment:+.2f}" if r.tf_adjustment else "", f"{r.weight:+.2f}"))
    rows.append(("match weight 匹配权重", f"match probability 匹配概率 {explained.match_probability:.6f}", "", "",
                 f"{explained.match_weight:+.2f}"))
    return rows
