"""The published form of a statistical table as one vector of cells and the additive relations between them.

Used by :mod:`reports.suppression`: the interior cells, each row's total, each column's total, one
subtotal line per group of rows, the grand total; the relations say that parts add up to their
whole (a row's cells of each block to the row total, a column's cells to its total, a group's rows
to its subtotal line, …) as a sparse matrix ``E`` with ``E @ values == 0``. The counts, groups and
blocks are checked here, with errors that name the row, column or group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

__all__ = ["Masks", "Table"]


@dataclass(frozen=True, eq=False)  # frames do not compare to one truth value
class Masks:
    """Which cells of a published table are withheld (True) — one mask per part of the form.

    ``cells``: the interior (rows × columns of the counts); ``row_totals`` (per row);
    ``column_totals`` (per column); ``group_cells`` (per group × column) and ``group_totals`` (per
    group), empty without groups; ``grand_total``, the grand total (and with it every cell that always equals it).
    """

    cells: pd.DataFrame
    row_totals: pd.Series
    column_totals: pd.Series
    group_cells: pd.DataFrame
    group_totals: pd.Series
    #: The grand total: withheld only when it is small itself or the table cannot be protected around it.
    grand_total: bool = False

    @property
    def count(self) -> int:
        """How many cells of the form are withheld."""
        return int(self.cells.to_numpy().sum() + self.row_totals.sum() + self.column_totals.sum()
                   + self.group_cells.to_numpy().sum() + self.group_totals.sum() + bool(self.grand_total))



class Table:
    """The form as one flat vector of cells and the additive relations between them (``E @ v == 0``)."""

    def __init__(self, counts: pd.DataFrame, row_groups: Mapping[str, Sequence] | None, blocks):
        self.counts = counts
        x = _validated(counts)
        self.R, self.C = x.shape
        self.groups = _validated_groups(counts, row_groups)
        self.blocks = _validated_blocks(counts, x, blocks)
        R, C, G = self.R, self.C, len(self.groups)
        rows = x[:, self.blocks[0]].sum(axis=1)
        cols = x.sum(axis=0)
        members = [np.array(m, dtype=int) for m in self.groups.values()]
        gcells = np.array([x[m].sum(axis=0) for m in members]).reshape(G, C)
        gtot = np.array([rows[m].sum() for m in members], dtype=np.int64)
        self.grand = int(rows.sum())
        self.values = np.concatenate([x.ravel(), rows, cols, gcells.ravel(), gtot, [self.grand]]).astype(np.int64)
        self.n = len(self.values)
        self.o_row, self.o_col = R * C, R * C + R
        self.o_gcell = self.o_col + C
        self.o_gtot = self.o_gcell + G * C
        self.E = self._relations(members)
        self.shown = self._always_shown(members)
        self.E_abs = abs(self.E).tocsr()
        self.E_csc = self.E.tocsc()

    def _always_shown(self, members) -> np.ndarray:
        """The grand total and the cells that equal it in every table: shown or withheld together."""
        R, C = self.R, self.C
        out = np.zeros(self.n, dtype=bool)
        out[-1] = True
        if R == 1:
            out[self.o_row] = True  # a one-row table's row total
        for block in self.blocks:
            if len(block) == 1:  # a block of one column: its column total
                out[self.o_col + block[0]] = True
                if R == 1:
                    out[block[0]] = True
        for g, m in enumerate(members):
            if len(m) == R:  # a group holding every row: its subtotal's total
                out[self.o_gtot + g] = True
                for block in self.blocks:
                    if len(block) == 1:
                        out[self.o_gcell + g * C + block[0]] = True
        return out

    def _relations(self, members) -> sparse.csr_matrix:
        R, C = self.R, self.C
        rows_, cols_, data = [], [], []
        eq = 0

        def add(parts, whole):
            nonlocal eq
            rows_.extend([eq] * (len(parts) + 1))
            cols_.extend([*parts, whole])
            data.extend([1.0] * len(parts) + [-1.0])
            eq += 1

        grand = self.n - 1
        for block in self.blocks:
            for i in range(R):
                add([i * C + j for j in block], self.o_row + i)
            add([self.o_col + j for j in block], grand)
        for j in range(C):
            add([i * C + j for i in range(R)], self.o_col + j)
        add([self.o_row + i for i in range(R)], grand)
        grouped = set()
        for g, m in enumerate(members):
            grouped.update(m.tolist())
            for j in range(C):
                add([i * C + j for i in m], self.o_gcell + g * C + j)
            for block in self.blocks:
                add([self.o_gcell + g * C + j for j in block], self.o_gtot + g)
            add([self.o_row + i for i in m], self.o_gtot + g)
        if members:  # the top-level lines: groups' subtotals and ungrouped rows add up to the totals
            loose = [i for i in range(R) if i not in grouped]
            for j in range(C):
                add([self.o_gcell + g * C + j for g in range(len(members))] + [i * C + j for i in loose], self.o_col + j)
            add([self.o_gtot + g for g in range(len(members))] + [self.o_row + i for i in loose], grand)
        return sparse.csr_matrix((data, (rows_, cols_)), shape=(eq, self.n))

    def masks(self, flat: np.ndarray) -> Masks:
        R, C, G = self.R, self.C, len(self.groups)
        idx, cols, names = self.counts.index, self.counts.columns, list(self.groups)
        return Masks(
            cells=pd.DataFrame(flat[:R * C].reshape(R, C), index=idx, columns=cols),
            row_totals=pd.Series(flat[self.o_row:self.o_col], index=idx, dtype=bool),
            column_totals=pd.Series(flat[self.o_col:self.o_gcell], index=cols, dtype=bool),
            group_cells=pd.DataFrame(flat[self.o_gcell:self.o_gtot].reshape(G, C), index=pd.Index(names), columns=cols),
            group_totals=pd.Series(flat[self.o_gtot:self.n - 1], index=pd.Index(names), dtype=bool),
            grand_total=bool(flat[-1]))

    def flat(self, masks: Masks | pd.DataFrame) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        if isinstance(masks, pd.DataFrame):
            masks = Masks(masks, pd.Series(dtype=bool), pd.Series(dtype=bool), pd.DataFrame(), pd.Series(dtype=bool))
        cells = masks.cells.reindex(index=self.counts.index, columns=self.counts.columns)
        if cells.isna().any().any():
            raise ValueError("the suppression mask does not cover every cell of the counts (rows and columns must match)")
        out[:self.R * self.C] = cells.to_numpy(dtype=bool).ravel()
        parts = ((masks.row_totals, self.counts.index, self.o_row), (masks.column_totals, self.counts.columns, self.o_col),
                 (masks.group_totals, pd.Index(list(self.groups)), self.o_gtot))
        for series, labels, offset in parts:
            if len(series):
                out[offset:offset + len(labels)] = series.reindex(labels, fill_value=False).to_numpy(dtype=bool)
        if len(masks.group_cells):
            g = masks.group_cells.reindex(index=list(self.groups), columns=self.counts.columns, fill_value=False)
            out[self.o_gcell:self.o_gtot] = g.to_numpy(dtype=bool).ravel()
        out[-1] = bool(masks.grand_total)
        return out

    def where(self, k: int) -> tuple[str, object, object]:
        """(part, row label, column label) of flat cell ``k``."""
        C = self.C
        names = list(self.groups)
        if k < self.o_row:
            return "cell", self.counts.index[k // C], self.counts.columns[k % C]
        if k < self.o_col:
            return "row_total", self.counts.index[k - self.o_row], None
        if k < self.o_gcell:
            return "column_total", None, self.counts.columns[k - self.o_col]
        if k < self.o_gtot:
            g, j = divmod(k - self.o_gcell, C)
            return "group_cell", names[g], self.counts.columns[j]
        if k < self.n - 1:
            return "group_total", names[k - self.o_gtot], None
        return "grand_total", None, None


def _validated(counts: pd.DataFrame) -> np.ndarray:
    if not isinstance(counts, pd.DataFrame):
        raise TypeError(f"counts must be a pandas DataFrame of rows × columns, not {type(counts).__name__}")
    for axis, labels in (("row", counts.index), ("column", counts.columns)):
        if labels.has_duplicates:
            raise ValueError(f"counts: {axis} label {labels[labels.duplicated()][0]!r} appears twice")
    for column in counts.columns:
        values = pd.to_numeric(counts[column], errors="coerce")
        bad = values.isna() | (values < 0) | (values != values.round())
        if bad.any():
            row = counts.index[bad.to_numpy()][0]
            value = counts.at[row, column]
            value = value.item() if isinstance(value, np.generic) else value
            raise ValueError(f"counts: row {row!r}, column {column!r} holds {value!r}, "
                             "not a count (a whole number of 0 or more)")
    return counts.to_numpy(dtype=np.int64).reshape(len(counts.index), len(counts.columns))


def _members(parts, labels: pd.Index, prefix: str, part: str, axis: str) -> dict[object, list[int]]:
    """The positions of each part's labels; every label known and in one part only."""
    position = {label: i for i, label in enumerate(labels)}
    seen: dict[object, object] = {}
    out: dict[object, list[int]] = {}
    for name, members in parts:
        out[name] = []
        for label in members:
            if label not in position:
                raise ValueError(f"{prefix}: {part} {name!r} names {axis} {label!r}, which the counts do not have")
            if label in seen:
                raise ValueError(f"{prefix}: {axis} {label!r} is in both {part} {seen[label]!r} and {part} {name!r}")
            seen[label] = name
            out[name].append(position[label])
        if not out[name]:
            raise ValueError(f"{prefix}: {part} {name!r} has no {axis}s")
    return out


def _validated_groups(counts: pd.DataFrame, row_groups) -> dict[str, list[int]]:
    members = _members((row_groups or {}).items(), counts.index, "row_groups", "group", "row")
    return {name: sorted(rows) for name, rows in members.items()}


def _validated_blocks(counts: pd.DataFrame, x: np.ndarray, blocks) -> list[list[int]]:
    if blocks is None:
        return [list(range(x.shape[1]))]
    out = list(_members(((b + 1, labels) for b, labels in enumerate(blocks)), counts.columns, "blocks", "block",
                        "column").values())
    seen = {counts.columns[j] for cols in out for j in cols}
    missing = [label for label in counts.columns if label not in seen]
    if missing:
        raise ValueError(f"blocks: column {missing[0]!r} is in no block")
    sums = np.stack([x[:, cols].sum(axis=1) for cols in out], axis=1)
    differ = (sums != sums[:, :1]).any(axis=1)
    if differ.any():
        i = int(np.flatnonzero(differ)[0])
        raise ValueError(f"blocks: row {counts.index[i]!r} sums to {', '.join(str(int(s)) for s in sums[i])} in the "
                         "blocks: each block must add up to the same row total")
    return out
