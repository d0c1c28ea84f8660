"""The one chart helper of the reports: matplotlib on its Agg canvas, a CJK font found once, PNG out.

Pages embed the PNGs as ``data:`` URIs (see :func:`reports.render.png_base64`). Labels are bilingual
when an installed font has Chinese glyphs, English otherwise (:class:`Labels`), so a machine without
CJK fonts draws readable charts instead of empty boxes. matplotlib is imported inside the functions:
importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CJK_FONTS",
    "PALETTE",
    "Labels",
    "barh",
    "charting",
    "cjk_font",
    "empty",
    "figure",
    "monthly_trend_png",
    "png",
    "population_pyramid_png",
]

#: Fonts tried first for Chinese labels; any other installed font with "CJK" in its name comes next.
CJK_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "Noto Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
             "Microsoft YaHei", "PingFang SC", "SimHei", "Noto Sans CJK TC", "Noto Sans CJK JP",
             "Noto Serif CJK SC", "AR PL UMing CN")
_PROBE = "民政卫健人社"
#: Colours for series that have no colour of their own (sources, departments).
PALETTE = ("#1a73e8", "#e8710a", "#12b5cb", "#9334e6", "#e52592", "#188038", "#f9ab00", "#5f6368")


@functools.lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The family name of an installed font that has Chinese glyphs, or None (charts fall back to English)."""
    from matplotlib import font_manager

    name = _cjk_font_in(font_manager.fontManager.ttflist)
    if name is None:
        # matplotlib's font cache may predate a CJK font installed since: add the system's CJK files once
        for path in font_manager.findSystemFonts():
            if "cjk" in Path(path).name.lower():
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
        name = _cjk_font_in(font_manager.fontManager.ttflist)
    return name


def _cjk_font_in(ttflist) -> str | None:
    from matplotlib import ft2font

    files: dict[str, str] = {}
    for entry in ttflist:
        files.setdefault(entry.name, entry.fname)
    names = [n for n in CJK_FONTS if n in files]
    names += sorted(n for n in files if ("CJK" in n or "Han Sans" in n) and n not in names)
    for name in names:
        try:
            charmap = ft2font.FT2Font(files[name]).get_charmap()
        except Exception:  # an unreadable font file: try the next one
            continue
        if all(ord(c) in charmap for c in _PROBE):
            return name
    return None


class Labels:
    """Bilingual chart labels: Chinese and English with a CJK font, English alone without one."""

    def __init__(self, cjk: bool):
        self.cjk = cjk

    def __call__(self, zh: str, en: str, sep: str = " ") -> str:
        return f"{zh}{sep}{en}" if self.cjk else en

    def text(self, value: str) -> str:
        """A title from the caller: its CJK part only shows with a CJK font."""
        if self.cjk:
            return value
        stripped = re.sub(r"[\u3000-\u9fff\uf900-\ufaff\uff00-\uffef]+", "", value).strip(" ()（）")
        return stripped or value.encode("ascii", "replace").decode()


@contextlib.contextmanager
def charting() -> Iterator[Labels]:
    """Draw charts inside this block: the CJK font (when there is one) and the house style are set for it.

    Yields the :class:`Labels` that fit the font. The settings apply to this block only, so the
    reports never change matplotlib's global state for other code in the process.
    """
    import matplotlib

    font = cjk_font()
    families = [font, "DejaVu Sans"] if font else ["DejaVu Sans"]
    with matplotlib.rc_context({"font.family": families, "axes.unicode_minus": False, "axes.spines.top": False,
                                "axes.spines.right": False}):
        yield Labels(font is not None)


def figure(width: float, height: float):
    """A figure of ``width`` × ``height`` inches at 100 dpi on an Agg canvas (no GUI backend, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig) -> bytes:
    """The figure as PNG bytes on white, without the software stamp (same chart, same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def empty(ax, text: str) -> None:
    """An axes that says there is nothing to draw."""
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="#5f6368", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#dadce0")


def barh(ax, labels: Sequence[str], values: Sequence[int], colour: str | Sequence[str]) -> None:
    """Horizontal bars, top to bottom in the order given, each with its count written beside it."""
    y = list(range(len(labels)))
    ax.barh(y, values, height=0.6, color=colour)
    top = max(values) if values else 0
    for i, v in enumerate(values):
        ax.text(v + max(top, 1) * 0.02, i, f"{v:,}", va="center", fontsize=9)
    ax.set_yticks(y, labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(top, 1) * 1.2)
    ax.xaxis.get_major_locator().set_params(integer=True)


# ------------------------------------------------------------------------------ statistical report charts
#: Men's and women's bars of a population pyramid (the columns the frame must have), and their colours.
PYRAMID_COLUMNS = ("男", "女")
_PYRAMID_COLOURS = ("#1a73e8", "#e52592")
_MONTH = re.compile(r"^(\d{4})-(0?[1-9]|1[0-2])$")


def _counts(frame: pd.DataFrame, columns: Sequence[str], what: str):
    """The columns as floats; a withheld cell (the suppression mark, any text) becomes NaN: drawn as a gap."""
    import pandas as pd

    out = pd.DataFrame({c: pd.to_numeric(frame[c], errors="coerce") for c in columns}, index=frame.index)
    negative = out.lt(0).any(axis=1)
    if negative.any():
        raise ValueError(f"{what}: row {out.index[negative.to_numpy()][0]!r} holds a negative count")
    return out.astype(float)


def population_pyramid_png(frame: pd.DataFrame, *, title: str) -> bytes:
    """A population pyramid (人口金字塔) as PNG bytes.

    ``frame``: index the age bands, youngest first; columns ``男`` and ``女`` (counts, others ignored).
    Men's bars go left, women's right, the oldest band on top, each with its count. A cell that is not a
    number (``＊``, withheld by :mod:`reports.suppression`) draws no bar and shows its mark, so a chart
    that leaves the department is drawn from the suppressed table, never the raw one.
    """
    missing = [c for c in PYRAMID_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"population pyramid {title!r}: the frame has no column {missing[0]!r} "
                         f"(columns must be {' and '.join(PYRAMID_COLUMNS)}; it has {', '.join(map(str, frame.columns))})")
    counts = _counts(frame, PYRAMID_COLUMNS, f"population pyramid {title!r}")
    with charting() as L:
        fig = figure(8, 1.6 + 0.3 * max(len(counts), 6))
        ax = fig.subplots()
        ax.set_title(L.text(title), fontsize=12)
        if not len(counts) or not (counts.fillna(0).to_numpy().any() or counts.isna().to_numpy().any()):
            empty(ax, L("无人员", "nobody in this population"))
            return png(fig)
        y = list(range(len(counts)))
        top = max(float(counts.fillna(0).to_numpy().max()), 1.0)
        names = (L("男", "male"), L("女", "female"))
        for side, (column, colour, name) in enumerate(zip(PYRAMID_COLUMNS, _PYRAMID_COLOURS, names)):
            sign = -1 if side == 0 else 1
            values = counts[column]
            ax.barh(y, sign * values.fillna(0), height=0.8, color=colour, label=name)
            for i, (v, raw) in enumerate(zip(values, frame[column])):
                text = f"{int(v):,}" if v == v else str(raw)
                ax.text(sign * ((0 if v != v else v) + top * 0.02), i, text, va="center",
                        ha="right" if sign < 0 else "left", fontsize=8)
        ax.set_yticks(y, [L.text(str(b)) for b in counts.index], fontsize=9)
        ax.set_xlim(-top * 1.25, top * 1.25)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.xaxis.set_major_formatter(lambda v, _pos: f"{abs(int(v)):,}")
        ax.axvline(0, color="#5f6368", lw=0.8)
        ax.set_xlabel(L("人数", "persons"), fontsize=9)
        ax.set_ylabel(L("年龄组", "age band"), fontsize=9)
        ax.legend(fontsize=9, loc="upper right", framealpha=0.9)
        return png(fig)


def monthly_trend_png(frame: pd.DataFrame, *, title: str) -> bytes:
    """A monthly trend (births, deaths, …) as PNG bytes: one line per column of ``frame``.

    ``frame``: index months ``YYYY-MM`` (or ``YYYY-M``) in order; columns the series (counts; a withheld
    cell is a gap).
    """
    bad = [m for m in frame.index if not _MONTH.match(str(m))]
    if bad:
        raise ValueError(f"monthly trend {title!r}: {bad[0]!r} is not a month written YYYY-MM (e.g. 2026-01)")
    months = [str(m) for m in frame.index]
    order = [tuple(int(part) for part in _MONTH.match(m).groups()) for m in months]
    if order != sorted(set(order)):
        raise ValueError(f"monthly trend {title!r}: the months must be in order, each once")
    counts = _counts(frame, list(frame.columns), f"monthly trend {title!r}")
    with charting() as L:
        fig = figure(9, 3.6)
        ax = fig.subplots()
        ax.set_title(L.text(title), fontsize=12)
        if not months or not len(counts.columns):
            empty(ax, L("无数据", "no data"))
            return png(fig)
        x = list(range(len(months)))
        for k, column in enumerate(counts.columns):
            ax.plot(x, counts[column], marker="o", ms=4, lw=1.6, color=PALETTE[k % len(PALETTE)], label=L.text(str(column)))
        step = max(1, len(months) // 12)
        ax.set_xticks(x[::step], months[::step], fontsize=8, rotation=45 if len(months) > 6 else 0)
        ax.set_ylim(0, max(float(counts.max().max()) if counts.notna().any().any() else 0, 1) * 1.15)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel(L("月份", "month"), fontsize=9)
        ax.set_ylabel(L("人数", "persons"), fontsize=9)
        ax.grid(axis="y", color="#e8eaed", lw=0.8)
        ax.legend(fontsize=8, loc="upper left", ncol=min(len(counts.columns), 4), framealpha=0.9)
        return png(fig)
