"""Small-cell protection (小数抑制) for statistical tables that leave the owning department.

A published statistical form shows a table of counts (persons, households) together with its
margins: each row's total, each column's total, the grand total and — when rows are grouped, say the
villages of a town — one subtotal line per group. :func:`suppress` decides which of these cells are
replaced by a mark (``＊``) so that no reader can tell, or work out from what is shown, how many
persons a small cell holds; :func:`audit` checks any such pattern.

**Primary suppression.** Every cell — interior cell, row total, column total, subtotal cell, group
total, the grand total — with ``0 < value < threshold`` (default 5). Zeros are shown: that nobody in a
village is 100 or older is not protected (a zero names nobody).

**What a reader knows of a withheld cell: it is 1 or more.** Zeros are printed and no zero is ever
withheld — not as a small cell, not as a complementary one — so every ``＊`` stands for at least 1,
and the form's note says so. The audit takes that into account: every withheld cell has the lower
bound 1 (a column of seven withheld 1s under a shown total of 7 gives every one of them back).

**Secondary suppression.** More cells are withheld so that the suppressed ones cannot be recomputed
from the shown cells and the table's additive relations (rows, columns, blocks, subtotals, grand
total). Complementary cells are chosen deterministically among the non-zero cells, lowest value first
among the cells that can absorb the change (a cell of at least the amount a primary cell must be able
to move), then by position; every row, column and subtotal line that holds a suppressed cell holds at
least two.

**The audit and the protection rule.** For each suppressed cell the hub solves linear programmes
over all tables consistent with the shown cells and every additive relation of the form, every
withheld cell 1 or more, and takes the cell's smallest and largest possible value ``[low, high]``
(what a reader with a spreadsheet and a solver could learn). A suppression pattern protects the
table when:

* every primary cell (true value ``a``, ``0 < a < t``): ``high ≥ t`` — the published table is
  consistent with the cell holding the threshold or more, so it does not even prove the cell small —
  and ``high − low ≥ ⌈t/2⌉`` — the cell cannot be narrowed to fewer than half the threshold's values;
* every other suppressed cell: ``high − low ≥ 1`` — it cannot be recomputed exactly.

**The grand total** is shown when it is at least the threshold and the table can be protected around
it. A grand total under the threshold is a small cell like any other and is withheld; so is one that
no pattern of the other cells can protect the table around (the seven 1s under their 7: with the
total shown, nothing else hidden can make any of them more than 1) — :func:`suppress` first withholds
every other non-zero cell it reaches, and only then the grand total. The cells that equal the grand
total in every table — the row total of a one-row table, the column total of a one-column block, the
subtotal total of a group holding every row — are shown or withheld with it. :func:`suppress` adds
complementary cells until the audit reports nothing (:attr:`Suppression.disclosed`, what it could not
protect, stays empty: with every non-zero cell withheld, the grand total too, any table can be scaled
up without changing what is shown).

The audit is the linear (continuous) relaxation with its bounds rounded inwards to whole numbers
(counts are whole: a reader who finds ``high = 4.5`` knows the cell holds at most 4); for a plain
two-way table the bounds are whole numbers already. It considers this one table: figures published
elsewhere (another form, last month's report, the households column beside the persons) are outside it.

**Several blocks beside each other** (``blocks``): persons by sex next to persons by age band, each
block of columns summing to the same row total and to the same grand total. Pass all blocks in one
call — never one call per block: the row totals are one column shared by both blocks, and a cell
hidden in one block may be given back by the other, e.g. a row total suppressed while the row's
cells of the other block are all shown equals their sum. One call audits the union of all
relations, so what is hidden in one block stays hidden given the other.

A sparse table — mostly zeros and ones, say a category × grade form of a few dozen persons per town —
ends up almost wholly withheld: for a 1 to be consistent with 5, four persons must be movable into it
from other withheld cells, each of which keeps at least one. Publish such a table at a coarser level
(town instead of village) for other departments.

The owning department's own copy is not suppressed: callers apply this only to copies that leave it.
numpy, scipy and pandas are imported at module level: import this module only where tables are made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import linprog

from reports.suppression_table import Masks, Table

__all__ = [
    "DEFAULT_THRESHOLD",
    "SYMBOL",
    "Disclosure",
    "Masks",
    "Suppression",
    "audit",
    "suppress",
]

DEFAULT_THRESHOLD = 5
#: The mark of a withheld cell (full-width asterisk: it stands out among CJK text and digits).
SYMBOL = "＊"
_EPS = 1e-6
#: What every withheld cell is known to hold at least: zeros are shown, never withheld.
_LOW = 1.0
_PARTS = {
    "cell": ("单元格", "cell"),
    "row_total": ("行合计", "row total"),
    "column_total": ("列合计", "column total"),
    "group_cell": ("小计", "subtotal"),
    "group_total": ("小计合计", "subtotal total"),
    "grand_total": ("总计", "grand total"),
}


@dataclass(frozen=True)
class Disclosure:
    """A withheld cell that the shown cells give back (or narrow too far), or a small cell left shown.

    ``part`` is one of ``cell``, ``row_total``, ``column_total``, ``group_cell``, ``group_total``;
    ``row`` / ``column`` are the labels (the group's name for subtotals, None for a total's other
    axis); ``low`` / ``high`` the whole numbers a reader can narrow it to.
    """

    part: str
    row: object
    column: object
    value: int
    low: int
    high: int
    reason: str

    def __str__(self) -> str:
        zh, en = _PARTS[self.part]
        where = " / ".join(str(x) for x in (self.row, self.column) if x is not None)
        return f"{zh} {en} [{where}] = {self.value}: {self.reason} (可推得 can be worked out as {self.low}–{self.high})"


@dataclass(frozen=True, eq=False)  # frames do not compare to one truth value
class Suppression(Masks):
    """The outcome of :func:`suppress`: the masks (all withheld cells), the primary ones, and how to show them."""

    counts: pd.DataFrame = field(repr=False, default=None)
    threshold: int = DEFAULT_THRESHOLD
    row_groups: Mapping[str, Sequence] | None = None
    blocks: tuple[tuple, ...] | None = None
    primary: Masks | None = None
    #: What the audit still finds after suppression: empty unless no pattern at all could protect the table.
    disclosed: tuple[Disclosure, ...] = ()

    @property
    def secondary_count(self) -> int:
        """How many cells are withheld only so that the small ones cannot be worked back."""
        return self.count - self.primary.count

    def note(self, symbol: str = SYMBOL, unit: tuple[str, str] = ("人", "persons")) -> tuple[str, str]:
        """The form's note on the mark, Chinese and English: what it hides, that zeros are shown and so each mark is ≥ 1."""
        t = self.threshold
        return (f"{symbol} 少于{t}{unit[0]}的单元格及为防止由合计反推而隐去的单元格；0 照常显示，每个{symbol}至少为1。",
                f"{symbol} cells of fewer than {t} {unit[1]}, and cells withheld so that those cannot be "
                f"worked back from the totals; zeros are shown, so each {symbol} stands for 1 or more.")

    def apply(self, symbol: str = SYMBOL, total: str = "合计", subtotal: str = "{}小计") -> pd.DataFrame:
        """The table as published: the total row first, each group's subtotal line above its rows, the
        total column first; withheld cells hold ``symbol``, the others their count (object dtype)."""
        frame, mask = _layout(self, total, subtotal)
        shown = frame.astype(object)
        shown[mask.to_numpy()] = symbol
        return shown


# ------------------------------------------------------------------------------------------ the audit
def _needs(threshold: int) -> tuple[float, float]:
    """(how high, how wide) a primary cell's interval must reach: the threshold and half of it."""
    return float(threshold), float(math.ceil(threshold / 2))


class _Interval:
    """The interval of every withheld cell over the tables a reader cannot tell from the true one."""

    def __init__(self, table: Table, supp: np.ndarray, primary: np.ndarray, threshold: int, reach=None):
        self.S = np.flatnonzero(supp)
        known = np.flatnonzero(~supp)
        A = table.E_csc[:, self.S]
        b = -(table.E_csc[:, known] @ table.values[known].astype(float))
        keep = A.getnnz(axis=1) > 0
        self.A, self.b = A[keep].tocsr(), b[keep]
        self.x0 = table.values[self.S].astype(float)
        up, width = _needs(threshold)
        is_primary = primary[self.S]
        self.up = np.where(is_primary, up, -np.inf)
        self.width = np.where(is_primary, width, 1.0)
        # what earlier, smaller patterns' programmes reached stays reachable: a cell withheld since takes its value
        self.reach = reach
        self.hi, self.lo = (self.x0.copy(), self.x0.copy()) if reach is None else (reach[0][self.S], reach[1][self.S])

    @property
    def n(self) -> int:
        return len(self.S)

    def unprotected(self) -> np.ndarray:
        hi, lo = np.floor(self.hi + _EPS), np.ceil(self.lo - _EPS)  # counts are whole numbers
        return ~((hi >= self.up) & (hi - lo >= self.width))

    def _witness(self, x: np.ndarray) -> None:
        np.maximum(self.hi, x, out=self.hi)
        np.minimum(self.lo, x, out=self.lo)

    def _solve(self, c: np.ndarray, bounds=(_LOW, None)) -> np.ndarray | None:
        res = linprog(c, A_eq=self.A, b_eq=self.b, bounds=bounds, method="highs")
        return res.x if res.status == 0 else None

    def _pooled(self, vars_: np.ndarray, sign: float, targets: np.ndarray, rng: np.random.Generator) -> None:
        """One programme pushing many cells the same way at once, each only as far as its target (its bound:
        further would not count, and the true table stays feasible): its solution witnesses them all."""
        if not len(vars_):
            return
        bounds = np.full((self.n, 2), _LOW)
        bounds[:, 1] = np.inf
        bounds[vars_, 1 if sign > 0 else 0] = np.maximum(targets, _LOW)
        c = np.zeros(self.n)
        c[vars_] = -sign * rng.uniform(1.0, 2.0, len(vars_))
        x = self._solve(c, bounds)
        if x is not None:
            self._witness(x)

    def _exact(self, k: int, sign: float) -> None:
        c = np.zeros(self.n)
        c[k] = -sign
        bounds = np.full((self.n, 2), _LOW)
        bounds[:, 1] = np.inf
        if sign > 0:  # as high as the rule asks, no further: with the grand total withheld it may have no top
            bounds[k, 1] = max(self.up[k], np.ceil(self.lo[k] - _EPS) + self.width[k], self.x0[k])
        x = self._solve(c, bounds)
        if x is not None:
            self._witness(x)

    def run(self, exact: bool = True) -> list[int]:
        """Positions (in ``S``) of the withheld cells the rule does not protect, their intervals exact; without
        ``exact`` the cells no pooled programme could show protected (some may be, by their own programmes)."""
        try:
            return self._run(exact) if self.n else []
        finally:
            if self.reach is not None:
                self.reach[0][self.S], self.reach[1][self.S] = self.hi, self.lo

    def _run(self, exact: bool) -> list[int]:
        rng = np.random.default_rng(0)  # fixed: the same table gives the same pattern
        for _ in range(200):  # pooled rounds while they witness more: far cheaper than two programmes per cell
            bad = self.unprotected()
            if not bad.any():
                return []
            before = int(bad.sum())
            target = np.maximum(self.up, np.ceil(self.lo - _EPS) + self.width)
            up = np.flatnonzero(bad & (self.hi < target - _EPS))
            self._pooled(up, 1.0, target[up], rng)
            bad = self.unprotected()
            high_enough = np.floor(self.hi + _EPS) >= self.up  # what is left is the width: go down
            floor = np.clip(np.floor(self.hi + _EPS) - self.width, _LOW, self.x0)
            down = np.flatnonzero(bad & high_enough & (self.lo > floor + _EPS))
            self._pooled(down, -1.0, floor[down], rng)
            if int(self.unprotected().sum()) >= before:
                break
        if not exact:
            return [int(k) for k in np.flatnonzero(self.unprotected())]
        failing = []
        for k in np.flatnonzero(self.unprotected()):  # the rest: each cell's own maximum and minimum
            if self.unprotected()[k]:
                self._exact(k, 1.0)
            if self.unprotected()[k]:
                self._exact(k, -1.0)
            if self.unprotected()[k]:
                failing.append(int(k))
        return failing


def _check(table: Table, supp: np.ndarray, primary: np.ndarray, threshold: int, reach=None,
           exact: bool = True) -> list[tuple[int, float, float]]:
    """(flat cell, low, high) of every withheld cell the protection rule finds unprotected (:meth:`_Interval.run`)."""
    interval = _Interval(table, supp, primary, threshold, reach)
    return [(int(interval.S[k]), float(interval.lo[k]), float(interval.hi[k])) for k in interval.run(exact)]


def _disclosures(table: Table, found, primary: np.ndarray, threshold: int) -> list[Disclosure]:
    up, width = _needs(threshold)
    out = []
    for k, low, high in found:
        part, row, column = table.where(k)
        value = int(table.values[k])
        low, high = math.ceil(low - _EPS), math.floor(high + _EPS)  # counts are whole numbers
        if low == high:
            reason = "可由所示单元格反推 / recomputable from the cells shown"
        elif primary[k] and high < up:
            reason = f"可证明少于{up:g} / shown to be under {up:g}"
        else:
            reason = f"可推得的范围窄于{width:g} / narrowed to a range narrower than {width:g}"
        out.append(Disclosure(part, row, column, value, low, high, reason))
    return out


def audit(counts: pd.DataFrame, mask: Masks | pd.DataFrame, row_groups: Mapping[str, Sequence] | None = None, *,
          threshold: int = DEFAULT_THRESHOLD, blocks: Sequence[Sequence] | None = None) -> list[Disclosure]:
    """The cells a reader of the published table can learn too much about, by the rule of the module docstring.

    ``mask`` is a :class:`Masks` (a :class:`Suppression`, say) or a boolean frame of the interior alone
    (all margins shown). Reported: every withheld cell whose interval breaks the rule (its ``low`` and
    ``high`` exact; every withheld cell is taken to hold at least 1), and every small cell
    (``0 < value < threshold``, the grand total included) left shown. Empty: protected. A mask that
    withholds a zero is refused (ValueError): zeros are shown, so that every ``＊`` is known to be 1 or more.
    """
    table = Table(counts, row_groups, blocks)
    t = _validated_threshold(threshold)
    supp = table.flat(mask)
    zero = np.flatnonzero(supp & (table.values == 0))
    if len(zero):
        part, row, column = table.where(int(zero[0]))
        raise ValueError(f"a zero is withheld ({_PARTS[part][1]} {' / '.join(str(x) for x in (row, column) if x is not None)}): "
                         "zeros are shown, so that every withheld cell is known to be 1 or more")
    primary = _primary(table, t)
    shown = [Disclosure(*table.where(k), int(table.values[k]), int(table.values[k]), int(table.values[k]),
                        f"少于{t}却未隐去 / under {t} but shown") for k in np.flatnonzero(primary & ~supp)]
    return shown + _disclosures(table, _check(table, supp, primary, t), primary, t)


# ---------------------------------------------------------------------------------------- suppression
def _validated_threshold(threshold) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, int | np.integer) or threshold < 1:
        raise ValueError(f"threshold must be a whole number of 1 or more, not {threshold!r}")
    return int(threshold)


def _primary(table: Table, threshold: int) -> np.ndarray:
    return (table.values > 0) & (table.values < threshold)  # the grand total, and what equals it, too


def _best(table: Table, candidates: np.ndarray, need: float) -> int:
    """The complementary cell to take: one that can absorb ``need`` first, then the lowest value, then position."""
    values = table.values[candidates]
    order = np.lexsort((candidates, values, values - _LOW < need))  # a withheld cell falls to 1 at most
    return int(candidates[order[0]])


def _close_lines(table: Table, supp: np.ndarray, need: np.ndarray, closed: np.ndarray) -> None:
    """Until no row, column or subtotal line holds exactly one withheld cell (its line would give it back).
    Short lines first: a partner found inside the cell's own group also closes the county-wide column."""
    E = table.E_abs
    length = np.diff(E.indptr)
    while True:
        single = np.flatnonzero(E @ supp.astype(float) == 1)
        single = single[np.argsort(length[single], kind="stable")]
        added = False
        for e in single:
            cells = E.indices[E.indptr[e]:E.indptr[e + 1]]
            hidden = cells[supp[cells]]
            if len(hidden) != 1:
                continue
            candidates = cells[~supp[cells] & ~closed[cells]]
            if len(candidates):
                supp[_best(table, candidates, need[hidden[0]])] = True
                added = True
        if not added:
            return


def _widen(table: Table, supp: np.ndarray, failing, need: np.ndarray, closed: np.ndarray) -> bool:
    """More complementary cells beside each unprotected one: the best of each of its lines (a subtotal when the
    group's own cells are too small to absorb a small cell's change; for a complementary cell that only
    bridges two cycles, a way round it), else the best of the cells nearest to it."""
    E, Ec, ET = table.E_abs, table.E_csc, table.E_abs.T.tocsr()
    open_ = ~supp & ~closed
    added = False
    for k, _, _ in failing:
        here = False
        for e in Ec.indices[Ec.indptr[k]:Ec.indptr[k + 1]]:
            cells = E.indices[E.indptr[e]:E.indptr[e + 1]]
            candidates = cells[open_[cells]]
            if len(candidates):
                best = _best(table, candidates, need[k])
                supp[best], open_[best], here = True, False, True
        reached = np.zeros(table.n, dtype=bool)
        reached[k] = True
        while not here:  # all its lines withheld whole: the cells one line further out, and so on
            wider = (ET @ ((E @ reached.astype(float)) > 0).astype(float)) > 0
            candidates = np.flatnonzero(wider & open_)
            if len(candidates):
                best = _best(table, candidates, need[k])
                supp[best], open_[best], here = True, False, True
            elif wider.sum() == reached.sum():
                break
            reached = wider
        added |= here
    return added


def suppress(counts: pd.DataFrame, *, threshold: int = DEFAULT_THRESHOLD, row_groups: Mapping[str, Sequence] | None = None,
             blocks: Sequence[Sequence] | None = None) -> Suppression:
    """Withhold the small cells of a table and enough others that none can be worked back (module docstring).

    ``counts``: rows × columns of whole numbers ≥ 0 (index = row labels, columns = column labels).
    ``row_groups``: group name → its row labels (a town → its villages), one subtotal line each.
    ``blocks``: column labels per block when blocks of columns each add up to the row total.
    Deterministic: the same table gives the same pattern.
    """
    table = Table(counts, row_groups, blocks)
    t = _validated_threshold(threshold)
    primary = _primary(table, t)
    supp = primary.copy()
    need = np.where(primary, t - table.values, 1).astype(float)
    closed = table.shown | (table.values == 0)  # never a complementary cell: the grand total (until last), zeros
    reach = (table.values.astype(float), table.values.astype(float))
    while True:
        _close_lines(table, supp, need, closed)
        found = _check(table, supp, primary, t, reach, exact=False)
        if not found:
            break
        if _widen(table, supp, found, need, closed):
            continue
        if not supp[-1] and table.grand > 0:  # every other cell it reaches is withheld: the grand total goes too
            supp[table.shown] = True
            continue
        found = _check(table, supp, primary, t)  # nothing left to withhold: what can a reader really work out?
        break
    masks = table.masks(supp)
    return Suppression(
        cells=masks.cells, row_totals=masks.row_totals, column_totals=masks.column_totals, group_cells=masks.group_cells,
        group_totals=masks.group_totals, grand_total=masks.grand_total, counts=counts, threshold=t, row_groups=row_groups,
        blocks=tuple(tuple(b) for b in blocks) if blocks is not None else None, primary=table.masks(primary),
        disclosed=tuple(_disclosures(table, found, primary, t)))


def _layout(s: Suppression, total: str, subtotal: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The published form's values and mask: total row, then each group's subtotal line above its rows, then the
    ungrouped rows; the total column first."""
    counts = s.counts.astype(np.int64)
    row_totals = counts[list(s.blocks[0])].sum(axis=1) if s.blocks else counts.sum(axis=1)
    lines: list[tuple[object, pd.Series, pd.Series]] = []

    def line(label, cells: pd.Series, row_total, cells_mask: pd.Series, total_mask: bool):
        values = pd.concat([pd.Series([row_total], index=[total]), cells])
        mask = pd.concat([pd.Series([total_mask], index=[total]), cells_mask])
        lines.append((label, values, mask))

    line(total, counts.sum(axis=0), int(row_totals.sum()), s.column_totals, bool(s.grand_total))
    grouped = set()
    for name, labels in (s.row_groups or {}).items():
        members = [r for r in counts.index if r in set(labels)]
        grouped.update(members)
        line(subtotal.format(name), counts.loc[members].sum(axis=0), int(row_totals[members].sum()),
             s.group_cells.loc[name], bool(s.group_totals[name]))
        for r in members:
            line(r, counts.loc[r], int(row_totals[r]), s.cells.loc[r], bool(s.row_totals[r]))
    for r in counts.index:
        if r not in grouped:
            line(r, counts.loc[r], int(row_totals[r]), s.cells.loc[r], bool(s.row_totals[r]))
    index = pd.Index([label for label, _, _ in lines])
    frame = pd.DataFrame([v.to_numpy() for _, v, _ in lines], index=index, columns=lines[0][1].index)
    mask = pd.DataFrame([m.to_numpy(dtype=bool) for _, _, m in lines], index=index, columns=lines[0][1].index)
    return frame, mask
