"""Small-cell protection: no withheld cell of a published table can be worked back from what it shows.

Every pattern :func:`reports.suppression.suppress` returns is checked here by a second, independent
audit written in this file: one linear programme per withheld cell over the table's interior cells
alone (the shown interior cells fixed, every shown margin an equation on the interior, every withheld
cell — interior or margin — at least 1, for zeros are shown and a reader knows each ＊ is 1 or more),
so a mistake in the module's own formulation (margins as cells, relations as a sparse matrix) cannot
hide itself.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from reports.suppression import SYMBOL, Masks, audit, suppress

THRESHOLD = 5


# ------------------------------------------------------------------------------- the independent audit
def _relations(counts: pd.DataFrame, masks: Masks, groups, blocks):
    """(is withheld, value, coefficients on the interior cells) for every margin of the form — and, always
    shown, that each block of a row adds up to what the first does, and each block to the grand total."""
    R, C = counts.shape
    where = {(r, c): i * C + j for i, r in enumerate(counts.index) for j, c in enumerate(counts.columns)}

    def sums(cells, sign=1.0, into=None):
        out = np.zeros(R * C) if into is None else into
        out[[where[k] for k in cells]] += sign
        return out

    blocks = blocks or [list(counts.columns)]
    first = list(blocks[0])
    out = []
    for r in counts.index:
        out.append((bool(masks.row_totals[r]), int(counts.loc[r, first].sum()), sums([(r, c) for c in first])))
        for block in blocks[1:]:
            out.append((False, 0, sums([(r, c) for c in block], -1.0, sums([(r, c) for c in first]))))
    for c in counts.columns:
        out.append((bool(masks.column_totals[c]), int(counts[c].sum()), sums([(r, c) for r in counts.index])))
    for name, rows in (groups or {}).items():
        for c in counts.columns:
            out.append((bool(masks.group_cells.loc[name, c]), int(counts.loc[rows, c].sum()),
                        sums([(r, c) for r in rows])))
        out.append((bool(masks.group_totals[name]), int(counts.loc[rows, first].to_numpy().sum()),
                    sums([(r, c) for r in rows for c in first])))
    grand = int(counts[first].to_numpy().sum())
    out.append((bool(masks.grand_total), grand, sums([(r, c) for r in counts.index for c in first])))
    for block in blocks[1:]:  # each block adds up to the grand total: to what the first block does
        out.append((False, 0, sums([(r, c) for r in counts.index for c in block], -1.0,
                                   sums([(r, c) for r in counts.index for c in first]))))
    return out


def _intervals(counts: pd.DataFrame, masks: Masks, groups=None, blocks=None):
    """[(value, low, high)] of every withheld cell, interior cells and margins, by the reader's programmes."""
    values = counts.to_numpy(dtype=float).ravel()
    hidden = masks.cells.to_numpy(dtype=bool).ravel()
    relations = _relations(counts, masks, groups, blocks)
    shown_margins = [(coef, value) for withheld, value, coef in relations if not withheld]
    A_eq = np.array([coef for coef, _ in shown_margins]) if shown_margins else None
    b_eq = [value for _, value in shown_margins] if shown_margins else None
    withheld_margins = [coef for withheld, _, coef in relations if withheld]
    A_ub = -np.array(withheld_margins) if withheld_margins else None  # a withheld margin holds at least 1
    b_ub = [-1.0] * len(withheld_margins) if withheld_margins else None
    bounds = [(1, None) if h else (v, v) for v, h in zip(values, hidden)]  # a withheld cell: 1 or more
    targets = [(values[k], np.eye(len(values))[k]) for k in np.flatnonzero(hidden)]
    targets += [(value, coef) for withheld, value, coef in relations if withheld]
    out = []
    for value, objective in targets:
        low = linprog(objective, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
        high = linprog(-objective, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
        assert low.status == 0 and high.status in (0, 3), "the true table is feasible: the programmes must solve"
        out.append((value, low.fun, math.inf if high.status == 3 else -high.fun))
    return out


def _assert_protected(counts, result, threshold=THRESHOLD, groups=None, blocks=None):
    """The module's rule, checked by the independent programmes: small cells reach the threshold and half
    of it wide, complementary cells cannot be recomputed — every withheld cell known to be at least 1."""
    up, width = threshold, math.ceil(threshold / 2)
    for value, low, high in _intervals(counts, result, groups, blocks):
        assert low - 1e-6 <= value <= high + 1e-6
        assert value >= 1, "a zero is withheld: a reader could no longer take every ＊ for 1 or more"
        low, high = math.ceil(low - 1e-6), math.floor(high + 1e-6) if high < math.inf else high  # whole numbers
        if 0 < value < threshold:
            assert high >= up, f"a small cell of {value} is shown to be under {up}: range {low}–{high}"
            assert high - low >= width, f"a small cell of {value} is narrowed to {low}–{high}"
        else:
            assert high - low >= 1, f"a withheld cell of {value} can be recomputed: range {low}–{high}"


def _assert_primary_withheld(counts, result, threshold=THRESHOLD, groups=None, blocks=None):
    """Every small cell is withheld — the grand total too when it is small, and with it every cell that
    equals it whatever the table (a one-row table's row total, a one-column block's total, …)."""
    small = lambda v: 0 < v < threshold  # noqa: E731
    first = list(blocks[0]) if blocks else list(counts.columns)
    for (r, c), v in counts.stack().items():
        assert result.cells.loc[r, c] or not small(v)
    assert all(result.row_totals[r] for r, v in counts[first].sum(axis=1).items() if small(v))
    assert all(result.column_totals[c] for c, v in counts.sum(axis=0).items() if small(v))
    for name, rows in (groups or {}).items():
        assert all(result.group_cells.loc[name, c] for c, v in counts.loc[rows].sum(axis=0).items() if small(v))
        assert result.group_totals[name] or not small(counts.loc[rows, first].to_numpy().sum())
    assert result.grand_total or not small(counts[first].to_numpy().sum())
    assert not (result.primary.cells & counts.eq(0)).any().any(), "zeros are not small cells"


# ------------------------------------------------------------------------------------- generated tables
@st.composite
def tables(draw):
    rows = draw(st.integers(1, 6))
    columns = draw(st.integers(1, 5))
    small = st.integers(0, 4)
    value = st.one_of(small, small, st.integers(0, 40))
    data = [[draw(value) for _ in range(columns)] for _ in range(rows)]
    if draw(st.integers(0, 3)) == 0:  # the trial's column: every row 1, the column total the count of rows
        ones = draw(st.integers(0, columns - 1))
        for line in data:
            line[ones] = 1
    counts = pd.DataFrame(data, index=[f"村{i + 1}" for i in range(rows)], columns=[f"组{j + 1}" for j in range(columns)])
    groups = None
    if rows > 1 and draw(st.booleans()):
        cuts = sorted(draw(st.sets(st.integers(1, rows - 1), max_size=rows - 1)))
        edges = [0, *cuts, rows]
        groups = {f"镇{g + 1}": list(counts.index[a:b]) for g, (a, b) in enumerate(zip(edges, edges[1:]))}
        if draw(st.booleans()):  # some rows belong to no group
            groups.pop(next(iter(groups)))
    blocks = None
    if draw(st.integers(0, 3)) == 0:  # a second block beside: the same row totals split another way
        width = draw(st.integers(1, 3))
        split = []
        for total in counts.sum(axis=1):
            cuts = sorted(draw(st.lists(st.integers(0, int(total)), min_size=width - 1, max_size=width - 1)))
            split.append([b - a for a, b in zip([0, *cuts], [*cuts, int(total)])])
        second = pd.DataFrame(split, index=counts.index, columns=[f"段{k + 1}" for k in range(width)])
        blocks = [list(counts.columns), list(second.columns)]
        counts = pd.concat([counts, second], axis=1)
    return counts, groups, blocks, draw(st.integers(2, 6))


@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_no_withheld_cell_of_a_generated_table_can_be_worked_back(case):
    counts, groups, blocks, threshold = case
    result = suppress(counts, threshold=threshold, row_groups=groups, blocks=blocks)
    _assert_primary_withheld(counts, result, threshold, groups, blocks)
    assert result.disclosed == ()
    assert audit(counts, result, groups, threshold=threshold, blocks=blocks) == []
    _assert_protected(counts, result, threshold, groups, blocks)
    again = suppress(counts.copy(), threshold=threshold, row_groups=groups, blocks=blocks)
    for part in ("cells", "group_cells"):
        pd.testing.assert_frame_equal(getattr(result, part), getattr(again, part))
    for part in ("row_totals", "column_totals", "group_totals"):
        pd.testing.assert_series_equal(getattr(result, part), getattr(again, part))


# ------------------------------------------------------------------------------------------ hand cases
def test_a_small_cell_gets_complementary_cells_of_low_value_and_the_display_marks_them():
    counts = pd.DataFrame([[1, 8, 10, 40], [7, 9, 12, 35], [9, 11, 30, 50]], index=["东村", "西村", "南村"],
                          columns=["0-14", "15-59", "60-79", "80+"])
    result = suppress(counts)
    assert result.primary.count == 1 and result.cells.loc["东村", "0-14"]
    # the cheapest rectangle that lets the 1 reach 5: its row's 8 and column's 7, and their corner 9
    assert result.cells.to_numpy().sum() == 4
    assert result.cells.loc["东村", "15-59"] and result.cells.loc["西村", "0-14"] and result.cells.loc["西村", "15-59"]
    assert not result.row_totals.any() and not result.column_totals.any()
    _assert_protected(counts, result)
    shown = result.apply()
    assert list(shown.index) == ["合计", "东村", "西村", "南村"] and list(shown.columns) == ["合计", *counts.columns]
    assert shown.loc["合计", "合计"] == counts.to_numpy().sum() and shown.loc["南村", "80+"] == 50
    assert (shown == SYMBOL).to_numpy().sum() == 4 and shown.loc["东村", "0-14"] == SYMBOL
    zh, en = result.note()
    assert zh.startswith(SYMBOL) and "少于5人" in zh and "0 照常显示" in zh
    assert "fewer than 5 persons" in en and "zeros are shown" in en
    assert result.note(unit=("户", "households"))[0].startswith(f"{SYMBOL} 少于5户")


def test_zeros_are_shown_and_cannot_give_a_withheld_cell_back():
    counts = pd.DataFrame([[3, 0, 8, 9], [6, 7, 0, 9], [8, 6, 9, 7]], index=["甲", "乙", "丙"], columns=list("ABCD"))
    # withholding the 3 alone: its row total minus the shown cells gives it back
    naive = counts.map(lambda v: 0 < v < THRESHOLD)
    found = audit(counts, naive)
    assert [(d.part, d.row, d.column, d.value, d.low, d.high) for d in found] == [("cell", "甲", "A", 3, 3, 3)]
    assert "反推" in found[0].reason and "recomputable" in str(found[0])
    # a zero as its partner: refused — zeros are shown, so that a reader may take every ＊ for 1 or more
    rectangle = naive.copy()
    rectangle.loc[["甲", "乙"], ["A", "B"]] = True
    with pytest.raises(ValueError, match=r"a zero is withheld \(cell 甲 / B\)"):
        audit(counts, rectangle)
    # a small cell left shown is reported as such
    assert [(d.part, d.row, d.column) for d in audit(counts, counts.map(lambda v: False))] == [("cell", "甲", "A")]
    result = suppress(counts)
    assert audit(counts, result) == []
    _assert_protected(counts, result)
    assert not (result.cells & counts.eq(0)).any().any(), "a zero is never taken as a partner"
    shown = result.apply()
    assert (shown.map(lambda v: v == 0) == counts.eq(0).reindex(index=shown.index, columns=shown.columns,
                                                              fill_value=False)).all().all(), "zeros stay shown"


def test_groups_subtotal_lines_are_protected_too():
    counts = pd.DataFrame(
        [[2, 10, 14], [9, 12, 20], [8, 3, 25], [11, 9, 30], [1, 6, 7], [12, 14, 16]],
        index=["城关村", "东关村", "桥头村", "河口村", "山前村", "镇外村"], columns=["男", "女", "未知"]).astype(int)
    groups = {"城关镇": ["城关村", "东关村"], "河口镇": ["桥头村", "河口村"], "山前乡": ["山前村"]}
    result = suppress(counts, row_groups=groups)
    _assert_primary_withheld(counts, result, groups=groups)
    # a town of one village: its subtotal line repeats the village's row, so it must hide the same cells
    assert (result.group_cells.loc["山前乡"] == result.cells.loc["山前村"]).all()
    assert result.group_totals["山前乡"] == result.row_totals["山前村"]
    assert audit(counts, result, groups) == []
    _assert_protected(counts, result, groups=groups)
    # showing the subtotal lines: the one-village town's line is its village's row, given back whole; two
    # villages of a town hiding a rectangle stay protected (moving persons inside the town keeps its subtotal)
    leaky = Masks(result.cells, result.row_totals, result.column_totals, result.group_cells & False, result.group_totals & False)
    found = {(d.part, d.row, d.column) for d in audit(counts, leaky, groups)}
    assert {("cell", "山前村", "男"), ("cell", "山前村", "女"), ("group_cell", "山前乡", "男")} <= found
    assert not any(row in ("城关村", "东关村") for _, row, _ in found)
    shown = result.apply()
    assert list(shown.index) == ["合计", "城关镇小计", "城关村", "东关村", "河口镇小计", "桥头村", "河口村",
                                 "山前乡小计", "山前村", "镇外村"]
    assert shown.loc["河口镇小计", "男"] == 19


def test_blocks_beside_each_other_are_protected_together_not_one_by_one():
    sex = pd.DataFrame([[1, 11], [8, 9], [9, 7]], index=["a", "b", "c"], columns=["男", "女"])
    age = pd.DataFrame([[6, 6], [10, 7], [9, 7]], index=["a", "b", "c"], columns=["0-59", "60+"])
    counts = pd.concat([sex, age], axis=1)
    blocks = [["男", "女"], ["0-59", "60+"]]
    # a pattern that protects the sex block alone: the 1, its column partner and both rows' totals
    cells = sex.map(lambda v: False)
    cells.loc[["a", "c"], "男"] = True
    totals = pd.Series([True, False, True], index=sex.index)
    alone = Masks(cells, totals, pd.Series(False, index=sex.columns), pd.DataFrame(), pd.Series(dtype=bool))
    assert audit(sex, alone) == []
    _assert_protected(sex, alone)
    # beside the age block, whose cells are shown, the row total is their sum, and the 1 follows from it
    joint = Masks(pd.concat([cells, age.map(lambda v: False)], axis=1), totals, pd.Series(False, index=counts.columns),
                  pd.DataFrame(), pd.Series(dtype=bool))
    found = {(d.part, d.row, d.column, d.low, d.high) for d in audit(counts, joint, blocks=blocks)}
    assert ("cell", "a", "男", 1, 1) in found and ("row_total", "a", None, 12, 12) in found
    # one call for both blocks protects the union of their relations
    result = suppress(counts, blocks=blocks)
    assert result.cells.loc["a", "男"] and audit(counts, result, blocks=blocks) == []
    _assert_protected(counts, result, blocks=blocks)
    assert list(result.apply().columns) == ["合计", "男", "女", "0-59", "60+"]
    with pytest.raises(ValueError, match=r"row 'b' sums to 17, 16"):
        suppress(counts.assign(**{"60+": [6, 6, 7]}), blocks=blocks)


def test_a_column_of_ones_under_its_total_withholds_the_total_too():
    """The trial's 保障户数 column of a town: seven villages of one household each under a 合计 of 7. Every ＊ is
    at least 1 (zeros are shown), so withholding the seven 1s alone gives each back."""
    counts = pd.DataFrame({"保障户数": [1, 1, 0, 1, 1, 1, 0, 1, 1]}, index=[f"{i + 1}村" for i in range(9)])
    ones = counts.map(lambda v: 0 < v < THRESHOLD)
    naive = Masks(ones, ones["保障户数"], pd.Series(False, index=counts.columns), pd.DataFrame(), pd.Series(dtype=bool))
    given_back = {(d.row, d.low, d.high) for d in audit(counts, naive) if d.part == "cell"}
    assert given_back == {(village, 1, 1) for village in counts.index[counts["保障户数"] > 0]}
    result = suppress(counts)
    assert result.disclosed == () and audit(counts, result) == []
    assert result.grand_total and result.column_totals["保障户数"], "the 合计 of 7 is withheld with the 1s"
    assert result.cells["保障户数"].tolist() == (counts["保障户数"] > 0).tolist(), "zeros stay shown"
    _assert_protected(counts, result)
    assert result.apply().loc["合计", "保障户数"] == SYMBOL
    # beside a large village the 合计 is safe: each 1 could be up to 37 − 7 = 30, and the 合计 stays shown
    wide = pd.concat([counts, pd.DataFrame({"保障户数": [30]}, index=["10村"])])
    result = suppress(wide)
    assert not result.grand_total and result.cells.loc["10村", "保障户数"] and audit(wide, result) == []
    _assert_protected(wide, result)


def test_a_grand_total_under_the_threshold_is_withheld():
    counts = pd.DataFrame([[1, 0], [0, 2]], index=["x", "y"], columns=["p", "q"])
    result = suppress(counts)
    assert result.grand_total and result.disclosed == () and audit(counts, result) == []
    assert not result.cells.loc["x", "q"] and not result.cells.loc["y", "p"], "zeros stay shown"
    _assert_protected(counts, result)
    assert audit(counts, Masks(result.cells, result.row_totals, result.column_totals, result.group_cells,
                               result.group_totals, grand_total=False))[0].part == "grand_total"
    # a one-village table: its row total is the grand total, withheld with it
    village = pd.DataFrame([[3, 1, 0]], index=["x"], columns=["p", "q", "r"])
    result = suppress(village)
    assert result.grand_total and result.row_totals["x"] and result.cells.loc["x", ["p", "q"]].all()
    assert not result.cells.loc["x", "r"] and audit(village, result) == []
    _assert_protected(village, result)
    single = suppress(pd.DataFrame([[3]], index=["x"], columns=["p"]))  # one cell: the grand total itself
    assert single.grand_total and single.cells.loc["x", "p"] and single.disclosed == ()
    assert suppress(pd.DataFrame([[7]], index=["x"], columns=["p"])).count == 0


@pytest.mark.parametrize(("counts", "kwargs", "message"), [
    (pd.DataFrame([[1, -2]], index=["x"], columns=["p", "q"]), {}, r"row 'x', column 'q' holds -2"),
    (pd.DataFrame([[1.5, 2]], index=["x"], columns=["p", "q"]), {}, r"row 'x', column 'p' holds 1.5"),
    (pd.DataFrame([[None, 2]], index=["x"], columns=["p", "q"]), {}, r"column 'p' holds"),
    (pd.DataFrame([[1, 2], [3, 4]], index=["x", "x"], columns=["p", "q"]), {}, r"row label 'x' appears twice"),
    (pd.DataFrame([[1, 2]], index=["x"], columns=["p", "q"]), {"row_groups": {"镇": ["y"]}}, r"names row 'y'"),
    (pd.DataFrame([[1, 2], [3, 4]], index=["x", "y"], columns=["p", "q"]),
     {"row_groups": {"甲镇": ["x"], "乙镇": ["x", "y"]}}, r"row 'x' is in both group '甲镇' and group '乙镇'"),
    (pd.DataFrame([[1, 2]], index=["x"], columns=["p", "q"]), {"blocks": [["p"]]}, r"column 'q' is in no block"),
    (pd.DataFrame([[1, 2]], index=["x"], columns=["p", "q"]), {"threshold": 0}, r"threshold must be"),
])
def test_bad_tables_are_refused_with_the_row_and_column(counts, kwargs, message):
    with pytest.raises(ValueError, match=message):
        suppress(counts, **kwargs)


def test_a_county_table_is_protected_with_few_extra_cells():
    """300 villages in 15 towns by 12 age bands: the size of a county's form."""
    rng = np.random.default_rng(7)
    rows, columns = 300, 12
    scale = rng.choice([1.5, 6, 20, 60], size=(rows, 1))
    counts = pd.DataFrame(rng.poisson(scale, size=(rows, columns)), index=[f"村{i:03d}" for i in range(rows)],
                          columns=[f"{5 * j}-{5 * j + 4}岁" for j in range(columns)])
    groups = {f"镇{g:02d}": list(counts.index[g * 20:(g + 1) * 20]) for g in range(rows // 20)}
    result = suppress(counts, row_groups=groups)
    _assert_primary_withheld(counts, result, groups=groups)
    assert result.disclosed == ()
    assert audit(counts, result, groups) == []
    # complementary cells stay a minority of what is withheld, and are of low value
    assert result.secondary_count < result.primary.count
    secondary = counts.to_numpy()[(result.cells & ~result.primary.cells).to_numpy()]
    assert np.median(secondary) <= np.median(counts.to_numpy()[counts.to_numpy() >= THRESHOLD])
