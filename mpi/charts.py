"""Splink's charts, rendered without any network: Vega-Lite → SVG (vl-convert), in a standalone page.

Splink's own HTML export loads vega, vega-lite and vega-embed as scripts; a county intranet may not
reach the CDN, and a page that runs scripts is more than an explanation needs. Here the chart is
drawn once, to SVG, by vl-convert (a Rust build of Vega with no browser and no network), and the
page that holds it has no script at all and forbids loading anything (a Content-Security-Policy of
``default-src 'none'``).

    svg = chart_svg(linker.visualisations.waterfall_chart(records))
    html = offline_page("Why these two records match", [("record A vs record B", svg)])
"""

from __future__ import annotations

import html as _html
from typing import Any

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_STYLE = ("body{font-family:'Noto Sans CJK SC','Source Han Sans SC','Microsoft YaHei',sans-serif;margin:2em;"
          "color:#222}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}p.note{color:#555}"
          "figure{margin:0}figure svg{max-width:100%;height:auto}")


def chart_spec(chart: Any) -> dict:
    """The Vega-Lite spec of a Splink chart (``chart_dict``), an Altair chart (``to_dict``) or a spec dict."""
    if isinstance(chart, dict):
        return chart
    if hasattr(chart, "chart_dict"):
        return chart.chart_dict
    if hasattr(chart, "to_dict"):
        return chart.to_dict()
    raise TypeError(f"not a chart: {type(chart).__name__}")


def chart_svg(chart: Any) -> str:
    """The chart drawn as an SVG element (no script, no external reference)."""
    import vl_convert as vlc

    svg = vlc.vegalite_to_svg(chart_spec(chart))
    if svg.startswith("<?xml"):
        svg = svg[svg.index("?>") + 2:].lstrip()
    return svg


def offline_page(title: str, sections: list[tuple[str, str]], *, note: str = "", lang: str = "zh-CN") -> str:
    """A standalone HTML page: a title, an optional note, and (heading, SVG) sections. Loads nothing."""
    parts = [f"<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">",
             f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_CSP}\">",
             f"<title>{_html.escape(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{_html.escape(title)}</h1>"]
    if note:
        parts.append(f"<p class=\"note\">{_html.escape(note)}</p>")
    for heading, svg in sections:
        parts.append(f"<section><h2>{_html.escape(heading)}</h2><figure class=\"chart\">{svg}</figure></section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
