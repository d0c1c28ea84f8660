"""The waterfall chart of a review pair's stored evidence, drawn on the server as an SVG (no script, no network).

The drawing is the one ``hub explain --html`` makes: Splink's waterfall chart (its Vega-Lite definition) drawn
to SVG by vl-convert (:func:`mpi.charts.chart_svg`), each level labelled in English and Chinese. Its bars are
the stored evidence explained (:func:`hub.explanation.stored_explanation`): the prior, each comparison's weight
and term-frequency adjustment, the final match weight. Unlike ``hub explain --html`` it shows no compared
values at all: a steward weighs the evidence of another department's record without being given its fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _bar(order: int, column: str, label: str, weight: float, *, code: Any = None, tf: bool | None = None) -> dict:
    return {"column_name": column, "label_for_charts": label, "sql_condition": None, "log2_bayes_factor": weight,
            "bayes_factor": 2.0 ** weight, "comparison_vector_value": code, "m_probability": None,
            "u_probability": None, "bayes_factor_description": None, "value_l": "", "value_r": "",
            "term_frequency_adjustment": tf, "bar_sort_order": order, "record_number": 0}


def waterfall_bars(explained: Mapping[str, Any]) -> list[dict]:
    """Splink's waterfall records of an explanation (:meth:`mpi.explain.Explanation.to_dict`), values empty."""
    from mpi.labels import PRIOR, comparison_label

    bars = [_bar(0, "Prior", f"{PRIOR.en} / {PRIOR.zh}", float(explained["prior"]["weight"]))]
    for row in explained["comparisons"]:
        code = None if row["level_code"] in ("null", "unknown") else row["level_code"]
        bars.append(_bar(len(bars), row["comparison"], f"{row['level']} / {row['level_zh']}",
                         float(row["match_weight"]), code=code, tf=False))
        if row["tf_adjustment"]:
            what = comparison_label(row["comparison"])
            bars.append(_bar(len(bars), f"tf_{row['comparison']}", f"how common the {what.en} is / {what.zh}的常见程度",
                             float(row["tf_adjustment"]), tf=True))
    bars.append(_bar(len(bars), "Final score", "final match weight / 最终匹配权重", float(explained["match_weight"])))
    return bars


def waterfall_spec(explained: Mapping[str, Any]) -> dict:
    """The Vega-Lite spec of Splink's waterfall chart for an explanation (null comparisons shown, at 0)."""
    from splink.internals.charts import WaterfallChart

    return WaterfallChart(waterfall_bars(explained), filter_nulls=False).chart_dict


def waterfall_svg(explained: Mapping[str, Any]) -> str:
    """The waterfall chart of an explanation as an inline SVG element."""
    from mpi.charts import chart_svg

    return chart_svg(waterfall_spec(explained))
