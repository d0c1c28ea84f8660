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

__all__ = [
    "CJK_FONTS",
    "PALETTE",
    "Labels",
    "barh",
    "charting",
    "cjk_font",
    "empty",
    "figure",
    "png",
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
