"""The waterfall chart of a review pair's stored evidence, drawn on the server as an SVG (no script, no network).

The drawing is the one ``hub explain --html`` makes: Splink's waterfall chart (its Vega-Lite definition) drawn
to SVG by vl-convert (:func:`mpi.charts.chart_svg`), each level labelled in English and Chinese. Its bars are
the stored evidence explained (:func:`hub.explanation.stored_explanation`): the prior, each comparison's weight
and term-frequency adjustment, the final match weight. Unlike ``hub explain --html`` it shows no compared
values at all: a steward weighs the evidence of another department's record without being given its fields.
Its title, axes and the name over each bar read in Chinese with the English beside it ("姓名 name", "姓名频率 name
frequency"); the bars keep Splink's own column names underneath, which its chart's arithmetic relies on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: the chart's words: Splink's English → Chinese first, English beside it
TITLE = {"text": "匹配权重瀑布图 Match weights waterfall chart",
         "subtitle": "每项比较对最终匹配得分的贡献 How each comparison contributes to the final match score"}
AXIS_TITLES = {"Column": "比较 comparison", "Match Weight": "匹配权重 match weight", "Probability": "匹配概率 probability"}


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


def column_words(bars: list[dict]) -> dict[str, str]:
    """Each bar's column name → its words, Chinese first: "姓名 name", "姓名频率 name frequency"."""
    from mpi.labels import comparison_label

    out = {}
    for bar in bars:
        column = bar["column_name"]
        if column == "Prior":
            out[column] = "先验 prior"
        elif column == "Final score":
            out[column] = "最终 final"
        elif bar["term_frequency_adjustment"]:
            what = comparison_label(column.removeprefix("tf_"))
            out[column] = f"{what.zh}频率 {what.en} frequency"
        else:
            what = comparison_label(column)
            out[column] = f"{what.zh} {what.en}"
    return out


def _lookup(words: dict[str, str], value: str) -> str:
    """A Vega expression: the words of ``value`` (an expression), else the value itself."""
    keys, labels = json.dumps(list(words), ensure_ascii=False), json.dumps(list(words.values()), ensure_ascii=False)
    return f"indexof({keys}, {value}) >= 0 ? {labels}[indexof({keys}, {value})] : {value}"


def _relabel(node: Any, words: dict[str, str]) -> None:
    """Put the chart's words in both languages: axis titles, the column axis' labels."""
    if isinstance(node, list):
        for item in node:
            _relabel(item, words)
        return
    if not isinstance(node, dict):
        return
    axis = node.get("axis")
    if isinstance(axis, dict):
        if axis.get("title") in AXIS_TITLES:
            axis["title"] = AXIS_TITLES[axis["title"]]
        if node.get("field") == "column_name" and "labelExpr" in axis:
            axis["labelExpr"] = ("datum.value == 'Prior' || datum.value == 'Final score' ? '' : "
                                 + _lookup(words, "datum.value"))
    for value in node.values():
        _relabel(value, words)


def waterfall_spec(explained: Mapping[str, Any]) -> dict:
    """The Vega-Lite spec of Splink's waterfall chart for an explanation (null comparisons shown, at 0), its words
    in Chinese and English."""
    from splink.internals.charts import WaterfallChart

    bars = waterfall_bars(explained)
    spec = WaterfallChart(bars, filter_nulls=False).chart_dict
    words = column_words(bars)
    spec["title"] = dict(TITLE)
    # over each bar, short: the Chinese (the axis below has both), both for the prior and the final score
    short = {c: w if c in ("Prior", "Final score") else w.split(" ")[0] for c, w in words.items()}
    spec["transform"] = [*spec.get("transform", []), {"calculate": _lookup(short, "datum.column_name"),
                                                      "as": "column_words"}]
    _relabel(spec["layer"], words)
    for layer in spec["layer"][0]["layer"]:  # the name written over each bar
        text = layer.get("encoding", {}).get("text", {})
        if text.get("field") == "column_name":
            text["field"] = "column_words"
    return spec


def waterfall_svg(explained: Mapping[str, Any]) -> str:
    """The waterfall chart of an explanation as an inline SVG element."""
    from mpi.charts import chart_svg

    return chart_svg(waterfall_spec(explained))
