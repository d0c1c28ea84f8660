"""The one XLSX writer of the reports: community ledgers (台账) and the departments' findings workbooks.

Every table it writes looks the same, on screen and on paper: a CJK-capable font; an optional title
and note lines above a styled header row; thin borders; identifier columns typed as text (an
18-digit ID number must not turn into 3.41522E+17, nor lose a leading zero); dates as dates;
column widths; the header row frozen and filtered; A4 landscape one page wide with the header row
repeated and page numbers. Text that a spreadsheet would run as a formula (starting with ``=``,
``+``, ``-``, ``@``, tab or carriage return — a source field holding ``=HYPERLINK(...)``) is written
with a leading ``'`` (:func:`schemas.text.formula_safe`); numbers and dates stay numbers and dates.
Workbooks are saved atomically (written beside the target, then moved in
place), owner-only when they hold personal data. openpyxl is imported inside the functions.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.render import CHINA_STANDARD_TIME
from schemas.text import formula_safe

#: The font of every cell. Noto Sans CJK SC ships with most Linux desktops and LibreOffice; the
#: GB2312 character set (134) tells a reader without it to substitute its own Chinese font
#: (宋体 SimSun on Windows) instead of a Latin one that shows boxes.
FONT_NAME = "Noto Sans CJK SC"
FONT_CHARSET = 134
TEXT_FORMAT = "@"
DATE_FORMAT = "yyyy-mm-dd"
HEADER_FILL = "D9D9D9"  # light grey: reads on screen and on a black-and-white printer
CREATOR = "居民数据中心"
PAGE_NUMBERS = "第 &P 页，共 &N 页"
#: The sign-off line at the foot of a government form (统计报表, 台账)
SIGNATURE_LABELS = ("制表人", "审核人", "填报日期")


@dataclass(frozen=True)
class Column:
    """One column of a table: its heading, width in characters, and how its cells are typed."""

    header: str
    width: float
    text: bool = False  # an identifier (ID number, phone, master id, record id): written and formatted as text
    wrap: bool = False  # long text wraps inside the cell


def _font(**style):
    from openpyxl.styles import Font

    return Font(name=FONT_NAME, charset=FONT_CHARSET, **style)


def new_workbook(*, title: str | None = None):
    """An empty workbook (one sheet) signed by the hub. Its default style uses the CJK font too, so
    that cells a table does not style (blank cells, lines added later) do not fall back to Calibri."""
    from openpyxl import Workbook

    book = Workbook()
    book.properties.creator = CREATOR
    if title:
        book.properties.title = title
    normal = next((s for s in book._named_styles if s.name == "Normal"), None)
    if normal is not None:
        normal.font = _font()
    # the default cell format (of every cell no table styles, such as what a cadre types in later)
    # uses openpyxl's font 0, which is Calibri whatever the Normal style says
    from openpyxl.utils.indexed_list import IndexedList

    fonts = list(book._fonts)
    fonts[0] = _font()
    book._fonts = IndexedList(fonts)
    return book


def local_time(value: dt.datetime) -> str:
    """``value`` in China Standard Time to the minute, labelled: ``2026-12-06 14:05（北京时间）``."""
    if value.tzinfo is not None:
        value = value.astimezone(CHINA_STANDARD_TIME)
    return f"{value:%Y-%m-%d %H:%M}（北京时间）"


def signature_lines(ws, *, labels: Sequence[str] = SIGNATURE_LABELS, filled: dict[str, str] | None = None,
                    first_column: int = 1) -> int:
    """Append the sign-off line of a government form under what ``ws`` holds: a blank row, then
    ``制表人：______　审核人：______　填报日期：______`` spread over the columns. ``filled`` gives a label
    its value (e.g. 填报日期 → today's date); the others are left to be signed by hand. Returns the row."""
    from openpyxl.utils import get_column_letter

    ws.append([])
    row = ws.max_row + 1
    last = max(ws.max_column, first_column + len(labels))
    per = max(1, (last - first_column + 1) // len(labels))
    for i, label in enumerate(labels):
        col = first_column + i * per
        value = (filled or {}).get(label)
        cell = ws.cell(row, col, f"{label}：{value if value else '________________'}")
        cell.font = _font()
        end = min(last, col + per - 1) if i < len(labels) - 1 else last
        if end > col:
            ws.merge_cells(f"{get_column_letter(col)}{row}:{get_column_letter(end)}{row}")
    return row


def add_png(ws, png: bytes, anchor: str, *, width: int | None = None, height: int | None = None) -> None:
    """Place the PNG image ``png`` on ``ws`` with its top-left corner at the cell ``anchor`` (``"H3"``),
    scaled to ``width`` × ``height`` pixels when given."""
    import io

    from openpyxl.drawing.image import Image

    image = Image(io.BytesIO(png))
    if width and height:
        image.width, image.height = width, height
    ws.add_image(image, anchor)


def sheet_title(text: str, default: str = "Sheet") -> str:
    """``text`` as a valid sheet name: without []:*?/\\ and at most 31 characters."""
    return re.sub(r"[\[\]:*?/\\]", "", text)[:31] or default


def _merged_line(ws, text: str, last: str, *, font=None, alignment=None) -> None:
    ws.append([formula_safe(text)])
    r = ws.max_row
    ws.merge_cells(f"A{r}:{last}{r}")
    cell = ws.cell(r, 1)
    cell.font = font or _font()
    if alignment is not None:
        cell.alignment = alignment


def _cell_value(column: Column, value: Any) -> Any:
    if value is None:
        return value
    return formula_safe(str(value) if column.text else value)


def write_table(ws, columns: Sequence[Column], rows: Iterable[Sequence[Any]], *, title: str | None = None,
                notes: Sequence[str] = (), empty_note: str | None = None, footer: str | None = None,
                frozen_columns: int = 0, page_header: str | None = None) -> int:
    """Write a table on the empty sheet ``ws``: the ``title`` (merged, large) and ``notes`` (one merged
    line each, then a blank line) when given, the header row, ``rows``, ``empty_note`` when there are
    no rows, and a bold ``footer``. The header row and ``frozen_columns`` columns stay in view; the
    print set-up repeats the header row on every page and puts ``page_header`` top right.
    Returns the header row's number."""
    from openpyxl.styles import Alignment, Border, PatternFill, Side
    from openpyxl.styles.cell_style import StyleArray
    from openpyxl.utils import get_column_letter

    last = get_column_letter(len(columns))
    if title is not None:
        _merged_line(ws, title, last, font=_font(bold=True, size=16),
                     alignment=Alignment(horizontal="center", vertical="center"))
        ws.row_dimensions[ws.max_row].height = 28
    for line in notes:
        _merged_line(ws, line, last, alignment=Alignment(horizontal="left", vertical="center", wrap_text=True))
    if title is not None or notes:
        ws.append([])
    thin = Side(style="thin", color="808080")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    ws.append([formula_safe(c.header) for c in columns])
    header_row = ws.max_row
    for i, column in enumerate(columns, start=1):
        cell = ws.cell(header_row, i)
        cell.font = _font(bold=True)
        cell.fill = PatternFill("solid", fgColor=HEADER_FILL)
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        cell.border = border
        ws.column_dimensions[get_column_letter(i)].width = column.width
    body = Alignment(vertical="top")
    wrapped = Alignment(vertical="top", wrap_text=True)
    plain = _font()
    count = 0
    # a cell's format (font, border, alignment, number format) depends on its column and on whether it holds a
    # date: made once per kind through openpyxl (which hashes each part to find it in the workbook), then copied
    formats: dict[tuple[int, bool, int], StyleArray] = {}
    for values in rows:
        ws.append([_cell_value(c, v) for c, v in zip(columns, values)])
        count += 1
        # the row just appended, counted: ws.max_row scans the whole sheet, which made large tables quadratic
        for i, column in enumerate(columns, start=1):
            cell = ws.cell(header_row + count, i)
            dated = not column.text and isinstance(cell.value, dt.date)
            # a value openpyxl gave a number format of its own keeps it (a cell with no format yet has none: 0)
            key = (i, dated, cell._style.numFmtId if cell._style is not None else 0)
            made = formats.get(key)
            if made is not None:
                cell._style = copy.copy(made)
                continue
            cell.font = plain
            cell.border = border
            cell.alignment = wrapped if column.wrap else body
            if column.text:
                cell.number_format = TEXT_FORMAT
            elif dated:
                cell.number_format = DATE_FORMAT
            formats[key] = copy.copy(cell._style)
    if not count and empty_note:
        _merged_line(ws, empty_note, last, alignment=Alignment(horizontal="center"))
    if footer is not None:
        _merged_line(ws, footer, last, font=_font(bold=True))
    ws.freeze_panes = ws.cell(header_row + 1, frozen_columns + 1)
    ws.auto_filter.ref = f"A{header_row}:{last}{header_row + count}"
    _print_setup(ws, header_row, page_header)
    return header_row


def _print_setup(ws, header_row: int, page_header: str | None) -> None:
    """A4 landscape, one page wide and as many down as needed, the header row on every page."""
    from openpyxl.worksheet.properties import PageSetupProperties

    ws.print_title_rows = f"{header_row}:{header_row}"
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.print_options.horizontalCentered = True
    ws.page_margins.left = ws.page_margins.right = 0.4
    ws.page_margins.top = ws.page_margins.bottom = 0.6
    ws.oddFooter.center.text = PAGE_NUMBERS
    if page_header:
        ws.oddHeader.right.text = page_header


def save_workbook(book, path: str | Path, *, private: bool = False) -> Path:
    """Save ``book`` to ``path`` atomically: written beside it, then moved in place, so that a reader
    never sees half a file. ``private`` (personal data): readable by the owner only — the file is
    created 0600 and never widened, and folders made for it are 0700. Returns the path."""
    path = Path(path)
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:40]}-", suffix=".xlsx", dir=path.parent)
    os.close(fd)
    try:
        book.save(tmp)
        os.chmod(tmp, 0o600 if private else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
