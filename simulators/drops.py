"""Nightly file drops: CSV exports in GBK/GB18030 with Chinese headers, and XLSX ledgers.

The XLSX ledger looks like the hand-kept ones: a title row merged across the sheet, a row of
group headers merged over their columns, then the column headers; dates partly as Excel serial
numbers. Each night's drop is a full snapshot of the records not deleted.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from simulators.subsystems import SUBSYSTEMS

LEDGER_GROUPS = {"基本信息": ["姓名", "身份证号", "性别", "出生日期"], "残疾情况": ["残疾类别", "残疾等级"],
                 "联系方式": ["家庭住址", "联系电话"]}


def drop_file_name(name: str, county) -> str:
    sub = SUBSYSTEMS[name]
    suffix = "xlsx" if sub.protocol == "xlsx" else "csv"
    return f"{sub.resource}_{county.as_of:%Y%m%d}.{suffix}"


def write_drops(county, folder: Path) -> dict[str, Path]:
    """Write tonight's file of every file-drop subsystem into ``folder/<subsystem>/``."""
    paths = {}
    for name, sub in SUBSYSTEMS.items():
        if sub.protocol not in ("csv", "xlsx"):
            continue
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        path = target / drop_file_name(name, county)
        frame = county.served(name, include_deleted=False)
        tmp = path.with_suffix(path.suffix + ".part")  # a reader never sees half a file
        if sub.protocol == "csv":
            frame.to_csv(tmp, index=False, encoding=sub.encoding, errors="replace")
        else:
            write_ledger(frame, tmp, title=f"霍邱县{sub.title}（截至{county.as_of:%Y年%m月%d日}）")
        tmp.replace(path)
        paths[name] = path
    return paths


def write_ledger(frame: pd.DataFrame, path: Path, *, title: str) -> None:
    """An XLSX ledger with a merged title row and merged two-level headers."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    wb = Workbook()
    ws = wb.active
    ws.title = "台账"
    columns = ["序号", *frame.columns]
    ws.cell(1, 1, title).font = Font(bold=True, size=14)
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(columns))
    grouped = {c: g for g, cs in LEDGER_GROUPS.items() for c in cs}
    col = 1
    while col <= len(columns):
        name = columns[col - 1]
        group = grouped.get(name)
        if group is None:  # a column without a group spans both header rows
            ws.cell(2, col, name)
            ws.merge_cells(start_row=2, start_column=col, end_row=3, end_column=col)
            col += 1
            continue
        span = 0
        while col + span <= len(columns) and grouped.get(columns[col + span - 1]) == group:
            ws.cell(3, col + span, columns[col + span - 1])
            span += 1
        ws.cell(2, col, group)
        if span > 1:
            ws.merge_cells(start_row=2, start_column=col, end_row=2, end_column=col + span - 1)
        col += span
    for cell in ws[2] + ws[3]:
        cell.alignment = Alignment(horizontal="center")
    for i, row in enumerate(frame.itertuples(index=False), start=1):
        values = [i]
        for name, value in zip(frame.columns, row):
            if name == "出生日期" and isinstance(value, str) and value.isdigit():
                value = int(value)  # an Excel serial number stays a number in the cell
            values.append(value)
        ws.append(values)
    wb.save(path)
