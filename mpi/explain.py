"""Why two records match or not: one explanation of a scored pair, wherever it is shown.

A scored pair's evidence is what Splink returns for it (and what the warehouse stores with every
scored link and review pair): per comparison ``mw_<c>`` (the match weight of its level; the level
``gamma_<c>`` too when Splink returns it — a matching run does not, and the level is then the one
with that weight) and, for comparisons with term-frequency adjustments, ``mw_tf_adj_<c>`` (the adjustment for
how common the shared value is: 张伟 or a household phone). :func:`explanation` turns that evidence
into rows — comparison, level code, English and Chinese level labels, weight, term-frequency
adjustment — plus the prior; the prior and the rows add up to the pair's match weight.

:func:`score_pair` scores two records' matching features with the model **and the term-frequency
snapshot** a matching run used, so that an explanation computed afresh equals the stored evidence.

Explanations hold comparison names, labels and weights only — no names or ID numbers. The waterfall
chart (:func:`waterfall_page`) shows compared values, masked, as an SVG in a page that loads nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mpi.labels import ELSE, NULL_LEVEL, PRIOR, Label, comparison_label, level_label

if TYPE_CHECKING:
    from mpi.scoring import Frequencies

TF_ADJ_PREFIX = "mw_tf_adj_"
UNKNOWN_LEVEL = Label("level unknown: the model changed since this pair was scored",
                      "级别未知：评分后模型已更改")


@dataclass
class ComparisonRow:
    comparison: str
    comparison_zh: str
    level_code: str  # Splink's comparison vector value; "null" for the null level (never -1)
    level: str
    level_zh: str
    match_weight: float  # the level's weight
    tf_adjustment: float  # the term-frequency adjustment (0 for comparisons without one)
    weight: float  # match_weight + tf_adjustment


@dataclass
class Explanation:
    """A scored pair explained: prior + Σ (weight + TF adjustment) = match_weight (to rounding)."""

    match_probability: float
    match_weight: float
    prior_weight: float
    comparisons: list[ComparisonRow] = field(default_factory=list)

    @property
    def weights_sum(self) -> float:
        return self.prior_weight + sum(r.weight for r in self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        return {"match_probability": self.match_probability, "match_weight": self.match_weight,
                "prior": {"label": PRIOR.en, "label_zh": PRIOR.zh, "weight": self.prior_weight},
                "comparisons": [asdict(r) for r in self.comparisons], "weights_sum": self.weights_sum}

    def frame(self) -> pd.DataFrame:
        """comparison, level, match_weight (the weight with its TF adjustment), with a prior and a total row."""
        rows = [{"comparison": "prior", "level": PRIOR.en, "match_weight": self.prior_weight}]
        rows += [{"comparison": r.comparison, "level": r.level, "match_weight": r.weight} for r in self.comparisons]
        rows.append({"comparison": "total", "level": f"match probability {self.match_probability:.6f}",
                     "match_weight": self.match_weight})
        return pd.DataFrame(rows)


def log2_odds(p: float) -> float:
    return math.log2(p / (1 - p))


def prior_weight(model_path: str | Path | None = None, records: int | None = None) -> float:
    """The prior match weight the model scores a set of ``records`` records with (see :func:`mpi.model.load_model`)."""
    from mpi.model import load_model

    return log2_odds(load_model(model_path, records=records)["probability_two_random_records_match"])


def levels_by_code(settings: Mapping) -> dict[str, dict[int, dict]]:
    """comparison → {comparison vector value → level (of the model's settings)}: the null level is -1,
    the other levels count down to 0 (the last, "All other comparisons"), as Splink numbers them."""
    out: dict[str, dict[int, dict]] = {}
    for comparison in settings["comparisons"]:
        levels = comparison["comparison_levels"]
        non_null = [lv for lv in levels if not lv.get("is_null_level")]
        nulls = [lv for lv in levels if lv.get("is_null_level")]
        codes = {-1: nulls[0]} if nulls else {}
        for i, lv in enumerate(non_null):
            code = lv.get("comparison_vector_value")
            codes[int(code) if code is not None else len(non_null) - 1 - i] = lv
        out[comparison["output_column_name"]] = codes
    return out


def level_weights(settings: Mapping) -> dict[str, dict[int, float]]:
    """comparison → {comparison vector value → the level's match weight, log2(m/u); 0 for the null level}."""
    out: dict[str, dict[int, float]] = {}
    for name, codes in levels_by_code(settings).items():
        weights = {}
        for code, lv in codes.items():
            m, u = lv.get("m_probability"), lv.get("u_probability")
            if code == -1:
                weights[code] = 0.0
            elif m and u:
                weights[code] = math.log2(m / u)
        out[name] = weights
    return out


def level_code(evidence: Mapping[str, Any], comparison: str, weights: Mapping[int, float]) -> int | None:
    """The comparison's level in ``evidence``: its ``gamma_`` value, or else the level whose weight its
    ``mw_`` value is (Splink returns the level's weight itself; a matching run keeps the weights, not the
    levels). None when no level of the model has that weight (the model changed since)."""
    gamma = _number(evidence.get(f"gamma_{comparison}"))
    if gamma is not None:
        return int(gamma)
    mw = _number(evidence.get(f"mw_{comparison}"))
    if mw is None:
        return None
    found = [code for code, w in weights.items() if abs(w - mw) <= 1e-9 * max(1.0, abs(w))]
    return max(found) if found else None


def _labels(comparison: str, level: dict | None, code: int) -> Label:
    if code == -1:
        return NULL_LEVEL
    if level is None:
        return Label(f"level {code} (not in the model in use)", f"第{code}级（当前模型中没有）")
    found = level_label(comparison, level)
    if found is not None:
        return found
    text = level.get("label_for_charts") or level.get("sql_condition") or ELSE
    return Label(text, text)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def explanation(evidence: Mapping[str, Any], *, settings: Mapping, match_weight: float, match_probability: float,
                prior: float | None = None) -> Explanation:
    """A scored pair's evidence (gamma_*, mw_*, mw_tf_adj_*: from Splink or as stored) explained with the
    model's ``settings`` (:func:`mpi.model.load_model`). ``prior``: the prior match weight (default: the
    settings'). Comparisons the evidence has no level for are left out."""
    codes, weights = levels_by_code(settings), level_weights(settings)
    rows = []
    for comparison in settings["comparisons"]:
        name = comparison["output_column_name"]
        if f"gamma_{name}" not in evidence and f"mw_{name}" not in evidence:
            continue
        code = level_code(evidence, name, weights[name])
        label = UNKNOWN_LEVEL if code is None else _labels(name, codes[name].get(code), code)
        weight = _number(evidence.get(f"mw_{name}")) or 0.0
        tf = _number(evidence.get(f"{TF_ADJ_PREFIX}{name}")) or 0.0
        cmp_label = comparison_label(name)
        shown = "unknown" if code is None else "null" if code == -1 else str(code)
        rows.append(ComparisonRow(name, cmp_label.zh, shown, label.en, label.zh, weight, tf, weight + tf))
    if prior is None:
        prior = log2_odds(settings["probability_two_random_records_match"])
    return Explanation(float(match_probability), float(match_weight), float(prior), rows)


# -- scoring one pair ---------------------------------------------------------------------------------

def pair_features(std_left_row: dict, std_right_row: dict) -> pd.DataFrame:
    """Matching features of two standardized records (unique_id 0 and 1)."""
    from mpi.deterministic import deterministic_anchors
    from mpi.features import build_features
    from schemas.resident import STD_COLUMNS

    std = pd.DataFrame([std_left_row, std_right_row])
    for column in STD_COLUMNS:
        if column not in std.columns:
            std[column] = pd.NA
    std["source"] = std["source"].fillna("left_or_right").astype(str)
    std["source_record_id"] = ["left", "right"] if std["source_record_id"].isna().any() else std["source_record_id"]
    feats = build_features(std)
    feats["anchor"] = deterministic_anchors(feats)
    return feats


def _splink_table(feats: pd.DataFrame) -> pd.DataFrame:
    from mpi.model import SPLINK_COLUMNS

    return feats.reset_index(drop=True).assign(unique_id=[0, 1], anchor=[0, 1])[list(SPLINK_COLUMNS)]


def _splink_records(table: pd.DataFrame, frequencies: Frequencies | None) -> list[dict]:
    from mpi.scoring import TF_COLUMNS

    records = table.astype(object).where(table.notna(), None).to_dict("records")
    lookups = {}
    for col in TF_COLUMNS:
        tf = frequencies.tables.get(col) if frequencies is not None else None
        lookups[col] = dict(zip(tf[col].astype(str), tf[f"tf_{col}"].astype(float))) if tf is not None else {}
    for record in records:
        for col in TF_COLUMNS:  # a value the snapshot does not hold has no adjustment, as in a matching run
            value = record.get(col)
            record[f"tf_{col}"] = lookups[col].get(str(value)) if value is not None else None
    return records


def _linker(table: pd.DataFrame, settings: dict):
    from splink import DuckDBAPI, Linker

    api = DuckDBAPI()
    registered = api.register(table, dataset_display_name="pair")
    return Linker(registered, settings, log_level=logging.WARNING)


@dataclass
class ScoredPair:
    """A pair scored by Splink: the record Splink returns (evidence and compared values) and the settings."""

    scored: dict
    settings: dict
    table: pd.DataFrame

    def explain(self) -> Explanation:
        return explanation(self.scored, settings=self.settings, match_weight=self.scored["match_weight"],
                           match_probability=self.scored["match_probability"])


def score_pair(feats: pd.DataFrame, *, frequencies: Frequencies | None = None,
               model_path: str | Path | None = None) -> ScoredPair:
    """Score two records' matching features (two rows, :data:`mpi.model.SPLINK_COLUMNS`) with the model
    and the term-frequency snapshot ``frequencies`` (the prior scaled to its record count), as
    :func:`mpi.scoring.score` scores them in a matching run. Without a snapshot there is no
    term-frequency adjustment and the prior is the training set's."""
    from mpi.model import load_model

    if len(feats) != 2:
        raise ValueError(f"expected the features of two records, got {len(feats)}")
    settings = load_model(model_path, records=frequencies.records if frequencies is not None else None)
    table = _splink_table(feats)
    records = _splink_records(table, frequencies)
    scored = _linker(table, settings).inference.score_pair(records[0], records[1]).as_record_list()[0]
    return ScoredPair(scored, settings, table)


def explain_pair(std_left_row: dict, std_right_row: dict, model_path: str | Path | None = None, *,
                 frequencies: Frequencies | None = None) -> pd.DataFrame:
    """comparison, level, match_weight for each comparison of two standardized records, plus the prior
    and the total (see :meth:`Explanation.frame`; :func:`score_pair` for ``frequencies``)."""
    return score_pair(pair_features(std_left_row, std_right_row), frequencies=frequencies,
                      model_path=model_path).explain().frame()


# -- the waterfall chart ------------------------------------------------------------------------------

def _mask_value(column: str, value: Any) -> Any:
    from schemas.masking import mask_id_number, mask_name, mask_phone

    if value is None or not isinstance(value, str):
        return value
    base = column[:-2]
    if base in ("name_key", "name_pinyin"):
        return mask_name(value)
    if base in ("given_key", "given_pinyin"):
        return "*" * len(value)
    if base in ("id_body", "id_valid"):
        return mask_id_number(value)
    if base == "phone":
        return mask_phone(value) or value
    if base == "address_key":  # keep the village, not the house
        parts = value.split("|")
        return "|".join(parts[:3] + ["*" for _ in parts[3:]])
    return value


def masked(scored: dict) -> dict:
    """The scored record with names, pinyin, ID numbers, phones and house numbers masked."""
    return {k: _mask_value(k, v) if k.endswith(("_l", "_r")) and not k.startswith("tf_") else v
            for k, v in scored.items()}


def waterfall_spec(pair: ScoredPair) -> dict:
    """Splink's waterfall chart of the pair (Vega-Lite), values masked, levels labelled in English and Chinese."""
    codes = levels_by_code(pair.settings)
    linker = _linker(pair.table, dict(pair.settings, retain_matching_columns=True))
    chart = linker.visualisations.waterfall_chart([masked(pair.scored)], filter_nulls=False)
    from mpi.charts import chart_spec

    spec = chart_spec(chart)
    for row in spec.get("data", {}).get("values", []) + spec.get("datasets", {}).get("data", []):
        name = row.get("column_name") or ""
        if name == "Prior":
            row["label_for_charts"] = f"{PRIOR.en} / {PRIOR.zh}"
        elif name == "Final score":
            row["label_for_charts"] = "final match weight / 最终匹配权重"
        elif row.get("term_frequency_adjustment"):
            what = comparison_label(name[3:])
            row["label_for_charts"] = f"how common the {what.en} is / {what.zh}的常见程度"
        elif name in codes and row.get("comparison_vector_value") is not None:
            code = int(row["comparison_vector_value"])
            label = _labels(name, codes[name].get(code), code)
            row["label_for_charts"] = f"{label.en} / {label.zh}"
    return spec


def waterfall_page(pair: ScoredPair, *, title: str, note: str = "") -> str:
    """The waterfall chart of a scored pair as a standalone HTML page that loads nothing (no script)."""
    from mpi.charts import chart_svg, offline_page

    explained = pair.explain()
    heading = (f"match probability {explained.match_probability:.6f}, match weight {explained.match_weight:+.2f}"
               f" / 匹配概率 {explained.match_probability:.6f}，匹配权重 {explained.match_weight:+.2f}")
    return offline_page(title, [(heading, chart_svg(waterfall_spec(pair))),
                                ("each comparison / 各项比较", explanation_table_html(explained))], note=note)


def explanation_table_html(explained: Explanation) -> str:
    """The explanation as an HTML table: prior, each comparison's level (English / Chinese) and weights, total."""
    import html

    def row(cells, tag="td"):
        return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"

    rows = [row(("comparison / 比较", "level / 级别", "weight / 权重", "term frequency / 词频调整", "total / 合计"), "th"),
            row(("prior / 先验", f"{PRIOR.en} / {PRIOR.zh}", "", "", f"{explained.prior_weight:+.2f}"))]
    for r in explained.comparisons:
        rows.append(row((f"{r.comparison} / {r.comparison_zh}", f"{r.level} / {r.level_zh}", f"{r.match_weight:+.2f}",
                         f"{r.tf_adjustment:+.2f}" if r.tf_adjustment else "", f"{r.weight:+.2f}")))
    rows.append(row(("match weight / 匹配权重", f"match probability / 匹配概率 {explained.match_probability:.6f}", "", "",
                     f"{explained.match_weight:+.2f}")))
    return "<table class=\"explanation\">" + "".join(rows) + "</table>"


def waterfall_html(std_left_row: dict, std_right_row: dict, model_path: str | Path | None = None, *,
                   frequencies: Frequencies | None = None) -> str:
    """The waterfall chart of two standardized records as a standalone page (no script, no network).

    The chart shows the compared values, masked (names, ID numbers, phones, house numbers)."""
    pair = score_pair(pair_features(std_left_row, std_right_row), frequencies=frequencies, model_path=model_path)
    return waterfall_page(pair, title="Why these two records match / 两条记录为何匹配")
