"""The statistical reports' charts: the population pyramid and the monthly trend, drawn offline as PNG.

The PNGs are decoded with Pillow and read by their pixels: each series' colour is where the chart
says it is (men left of the axis, women right; the oldest band on top), a withheld cell draws no bar,
and empty or all-zero data give a readable chart instead of an error.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reports.charts import PALETTE, monthly_trend_png, population_pyramid_png
from reports.suppression import SYMBOL

BANDS = [f"{a}-{a + 4}" for a in range(0, 100, 5)] + ["100+"]
MALE, FEMALE = (26, 115, 232), (229, 37, 146)  # the pyramid's two colours


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def _image(data: bytes) -> np.ndarray:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == "PNG"
        assert 600 <= image.width <= 1600 and 300 <= image.height <= 1600, image.size
        return np.asarray(image.convert("RGB"))


def _where(pixels: np.ndarray, colour) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the pixels of exactly this colour."""
    return np.nonzero((pixels == np.array(colour, dtype=np.uint8)).all(axis=2))


def _axis_x(pixels: np.ndarray) -> int:
    """The pyramid's zero line: the column of the plot with the most grey (#5f6368) pixels."""
    ys, xs = _where(pixels, (95, 99, 104))
    return int(np.bincount(xs).argmax())


def test_the_pyramid_puts_men_left_women_right_and_the_oldest_on_top():
    frame = pd.DataFrame({"男": [0] * len(BANDS), "女": [0] * len(BANDS)}, index=BANDS)
    frame.loc["100+", "男"] = 40   # men only in the oldest band
    frame.loc["0-4", "女"] = 90    # women only in the youngest
    pixels = _image(population_pyramid_png(frame, title="城关镇人口金字塔 population pyramid"))
    my, mx = _where(pixels, MALE)
    fy, fx = _where(pixels, FEMALE)
    assert len(mx) > 200 and len(fx) > 200
    axis = _axis_x(pixels)
    # the legend's swatches are small: the bars are most of each colour
    assert np.median(mx) < axis < np.median(fx)
    assert np.median(my) < np.median(fy), "the oldest band is drawn above the youngest"
    # bars are as long as their counts: the women's 90 about twice the men's 40
    male_width = np.bincount(my).argmax()
    widths = {name: int(((pixels[row] == np.array(colour, dtype=np.uint8)).all(axis=1)).sum())
              for name, colour, row in (("男", MALE, male_width), ("女", FEMALE, np.bincount(fy).argmax()))}
    assert 1.9 < widths["女"] / widths["男"] < 2.5, widths


def test_a_withheld_cell_draws_no_bar():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"男": rng.integers(5, 300, len(BANDS)), "女": rng.integers(5, 300, len(BANDS))},
                         index=BANDS).astype(object)
    full = _image(population_pyramid_png(frame, title="人口金字塔"))
    frame["女"] = SYMBOL  # every women's cell withheld
    withheld = _image(population_pyramid_png(frame, title="人口金字塔"))
    assert len(_where(full, FEMALE)[0]) > 10 * len(_where(withheld, FEMALE)[0]), "only the legend's swatch is left"
    assert len(_where(withheld, MALE)[0]) > 200, "the men's bars are still drawn"
    # every cell withheld or zero: no bar at all, but not "nobody" either — the marks are drawn
    swatch = len(_where(withheld, FEMALE)[0])
    pixels = _image(population_pyramid_png(pd.DataFrame({"男": [SYMBOL, 0], "女": [0, SYMBOL]}, index=["80-89", "90-99"]),
                                           title="高龄"))
    assert len(_where(pixels, MALE)[0]) <= swatch and 0 < len(_where(pixels, FEMALE)[0]) <= swatch


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"男": [], "女": []}),
    pd.DataFrame({"男": [0] * len(BANDS), "女": [0] * len(BANDS)}, index=BANDS),
])
def test_a_pyramid_of_nobody_is_a_readable_chart(frame):
    pixels = _image(population_pyramid_png(frame, title="空 empty"))
    assert len(_where(pixels, MALE)[0]) == 0 and len(_where(pixels, FEMALE)[0]) == 0
    assert (pixels < 128).any(), "the chart says there is nobody: some text is drawn"


def test_the_pyramid_needs_men_and_women_columns():
    with pytest.raises(ValueError, match=r"no column '女'.*it has 男, 其他"):
        population_pyramid_png(pd.DataFrame({"男": [1], "其他": [2]}, index=["0-4"]), title="x")
    with pytest.raises(ValueError, match=r"row '0-4' holds a negative count"):
        population_pyramid_png(pd.DataFrame({"男": [-1], "女": [2]}, index=["0-4"]), title="x")


def test_the_monthly_trend_draws_one_line_per_column_in_month_order():
    months = [f"2026-{m:02d}" for m in range(1, 13)]
    frame = pd.DataFrame({"出生 births": [3 * m for m in range(12)], "死亡 deaths": [33 - 3 * m for m in range(12)]},
                         index=months)
    pixels = _image(monthly_trend_png(frame, title="出生与死亡 births and deaths"))
    middle = pixels.shape[1] / 2
    for colour, rising in ((PALETTE[0], True), (PALETTE[1], False)):
        ys, xs = _where(pixels, _rgb(colour))
        assert len(xs) > 100
        left, right = ys[xs < middle].mean(), ys[xs >= middle].mean()  # image rows count downwards
        assert bool(right < left) == rising, (colour, left, right)
    again = monthly_trend_png(frame, title="出生与死亡 births and deaths")
    assert again == monthly_trend_png(frame.copy(), title="出生与死亡 births and deaths"), "same data, same bytes"


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"出生": []}),
    pd.DataFrame(index=["2026-01", "2026-02"]),
    pd.DataFrame({"出生": [0, 0, 0]}, index=["2026-01", "2026-02", "2026-03"]),
    pd.DataFrame({"出生": [SYMBOL, 7]}, index=["2026-01", "2026-02"]),
    pd.DataFrame({"出生": [1, 2, 3]}, index=["2025-12", "2026-1", "2026-10"]),
])
def test_a_trend_of_nothing_is_a_readable_chart(frame):
    _image(monthly_trend_png(frame, title="出生 births"))


@pytest.mark.parametrize(("index", "message"), [
    (["2026-01", "2026-13"], r"'2026-13' is not a month written YYYY-MM"),
    (["2026-02", "2026-01"], r"in order, each once"),
    (["2026-01", "2026-1"], r"in order, each once"),
    (["2026-10", "2026-9"], r"in order, each once"),
])
def test_the_trend_refuses_months_it_cannot_place(index, message):
    with pytest.raises(ValueError, match=message):
        monthly_trend_png(pd.DataFrame({"出生": range(len(index))}, index=index), title="出生")

