"""Why two records match or not: the level and match weight of each comparison (Splink ``score_pair``).

The answer holds comparison names, level labels and weights only — no names or ID numbers.
Term-frequency adjustments are left out (they depend on the whole population, not on the pair).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd


def _pair_features(left: dict, right: dict) -> pd.DataFrame:
    from mpi.deterministic import deterministic_anchors
    from mpi.features import build_features
    from schemas.resident import STD_COLUMNS

    std = pd.DataFrame([left, right])
    for column in STD_COLUMNS:
        if column not in std.columns:
            std[column] = pd.NA
    std["source"] = std["source"].fillna("left_or_right").astype(str)
    std["source_record_id"] = ["left", "right"] if std["source_record_id"].isna().any() else std["source_record_id"]
    feats = build_features(std)
    feats["anchor"] = deterministic_anchors(feats)
    return feats


def _linker(feats: pd.DataFrame, model_path, *, matching_columns: bool = False):
    from splink import DuckDBAPI, Linker

    from mpi.model import load_model

    settings = load_model(model_path)
    settings["retain_matching_columns"] = matching_columns
    for comparison in settings["comparisons"]:  # no population here to take term frequencies from
        for level in comparison["comparison_levels"]:
            level.pop("tf_adjustment_column", None)
            level.pop("tf_adjustment_weight", None)
    api = DuckDBAPI()
    from mpi.model import SPLINK_COLUMNS

    registered = api.register(feats[list(SPLINK_COLUMNS)], dataset_display_name="pair")
    return Linker(registered, settings, log_level=logging.WARNING), settings


def explain_pair(std_left_row: dict, std_right_row: dict, model_path: str | Path | None = None) -> pd.DataFrame:
    """comparison, level, match_weight for each comparison, plus the prior and the total (with the probability)."""
    feats = _pair_features(std_left_row, std_right_row)
    linker, settings = _linker(feats, model_path)
    records = feats.astype(object).where(feats.notna(), None).to_dict("records")
    scored = linker.inference.score_pair(records[0], records[1]).as_record_list()[0]
    rows = [{"comparison": "prior", "level": "two random records match",
             "match_weight": _log2_odds(settings["probability_two_random_records_match"])}]
    for comparison in settings["comparisons"]:
        name = comparison["output_column_name"]
        gamma = scored.get(f"gamma_{name}")
        label = next((lv.get("label_for_charts") or lv.get("sql_condition") for lv in comparison["comparison_levels"]
                      if lv.get("comparison_vector_value") == gamma), None)
        if label is None:
            levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
            label = "null" if gamma == -1 else levels[len(levels) - 1 - gamma].get("label_for_charts", str(gamma))
        rows.append({"comparison": name, "level": label, "match_weight": float(scored.get(f"mw_{name}") or 0.0)})
    rows.append({"comparison": "total", "level": f"match probability {scored['match_probability']:.6f}",
                 "match_weight": float(scored["match_weight"])})
    return pd.DataFrame(rows)


def _log2_odds(p: float) -> float:
    import math

    return math.log2(p / (1 - p))


def waterfall_html(std_left_row: dict, std_right_row: dict, model_path: str | Path | None = None) -> str | None:
    """Splink's waterfall chart of the pair as standalone HTML, or None when altair is not installed.

    The chart shows the compared values (names, ID numbers): render it only where PII may be seen.
    """
    try:
        import altair  # noqa: F401
    except ImportError:
        return None
    feats = _pair_features(std_left_row, std_right_row)
    linker, _ = _linker(feats, model_path, matching_columns=True)
    records = feats.astype(object).where(feats.notna(), None).to_dict("records")
    scored = linker.inference.score_pair(records[0], records[1]).as_record_list()
    chart = linker.visualisations.waterfall_chart(scored, filter_nulls=False)
    return chart.to_html()
