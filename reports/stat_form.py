"""A counted statistical report (:class:`reports.statistics.Table`) as a government form: XLSX and CSV.

The form: the title; 填报单位 (the owning department), 统计时点 (the as-of date), the release and its
date; what is counted; a header of two rows (three with ``--compare``: this release, the other one,
and the change per cell); 单位：人/户; a line per village (and row value) with a 小计 per town and the
合计; the 制表人 / 审核人 / 填报日期 lines with 填报日期 filled; the CJK font; A4 with the header rows
on every page and page numbers; the pyramid or monthly chart as a PNG beside the table. Suppressed
cells (a copy for another department) show ``*``. The CSV holds the same lines, one header row.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import datetime as dt
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports import stat_reuse, xlsx
from reports.errors import StatisticsError
from reports.statistics import COUNTY, NO_PLACE, NO_TOWN, NO_VILLAGE, ColumnKey, Line, Table
from schemas.text import formula_safe

SUPPRESSED = "＊"  # as reports.suppression marks a withheld cell
SUBTOTAL_FILL = "F2F2F2"


@dataclass(frozen=True)
class Compared:
    """The same kind and community of another release, to show beside ``table``."""

    other: Table

    def cells(self, table: Table) -> list[tuple[tuple, tuple[int, ...]]]:
        index = {_key(ln): ln.cells for ln in self.other.lines}
        return [(_key(ln), index.get(_key(ln), (0,) * len(ln.cells))) for ln in table.lines]

    def hidden(self, table: Table) -> set[tuple[int, int]]:
        """The other release's withheld cells, as (line of ``table``, column)."""
        here = {_key(ln): i for i, ln in enumerate(table.lines)}
        return {(here[_key(self.other.lines[i])], j) for i, j in self.other.suppressed
                if _key(self.other.lines[i]) in here}


def aligned(table: Table, other: Table) -> tuple[Table, Table]:
    """Both tables with the same count columns, the union in the form's order: a month (grade, province)
    present in one release only is a column of zeros in the other. Call before suppressing."""
    columns = list(table.columns)
    for k, col in enumerate(other.columns):
        if col in columns:
            continue
        same = [i for i, c in enumerate(columns) if c.group == col.group]
        later = [i for i in same if col.by_month and columns[i].by_month and str(columns[i].value) > str(col.value)]
        if later:
            at = later[0]
        elif col.by_month and same:
            at = same[-1] + 1
        else:  # right after the column before it in the other release (all of those are placed by now)
            at = columns.index(other.columns[k - 1]) + 1 if k else 0
        columns.insert(at, col)
    return _with_columns(table, columns), _with_columns(other, columns)


def _with_columns(table: Table, columns: list[ColumnKey]) -> Table:
    at = {c: j for j, c in enumerate(table.columns)}
    lines = [dataclasses.replace(ln, cells=tuple(ln.cells[at[c]] if c in at else 0 for c in columns))
             for ln in table.lines]
    moved = {(i, columns.index(table.columns[j])) for i, j in table.suppressed}
    return dataclasses.replace(table, columns=list(columns), lines=lines, suppressed=moved)


def joint_pattern(table: Table, other: Table) -> None:
    """One suppression pattern for a copy with ``--compare``: a cell withheld in either release is withheld
    in both releases' columns and in the change (else the other release's cell, or the change, gives a
    withheld cell back). The tables must have the same columns (:func:`aligned`)."""
    table.suppressed = set(table.suppressed) | Compared(other).hidden(table)
    other.suppressed = set(other.suppressed) | Compared(table).hidden(other)


def _key(line: Line) -> tuple:
    return (line.role, line.town, line.village, line.value)


def row_labels(table: Table) -> list[str]:
    """The heading of the label columns: town, village, and the row breakdown's."""
    labels = ["镇（乡、街道）", "村（社区）"]
    if table.spec.rows:
        labels.append(table.spec.rows[0].heading)
    return labels


def _labels(table: Table, line: Line) -> list[str | None]:
    if line.role == "total":
        out: list[str | None] = ["合计", None]
    elif line.role == "subtotal":
        out = [line.town or NO_TOWN, "小计"]
    else:
        out = [line.town or (None if line.village else NO_PLACE), line.village or NO_VILLAGE]
        if line.town == NO_PLACE:
            out = [NO_PLACE, None]
    if table.spec.rows:
        out.append(line.value if line.role == "data" else None)
    return [formula_safe(x) for x in out]  # labels come from the sources: never a formula in a spreadsheet


def headers(table: Table, compare: Table | None = None) -> list[tuple[str, str | None, str | None]]:
    """Each count column's header levels: (block, group, sub) — block only with ``compare``."""
    cols = [(c.group, c.sub) for c in table.columns]
    if compare is None:
        return [(g, s, None) for g, s in cols]
    blocks = [f"第{table.data.release.release_no}版", f"第{compare.data.release.release_no}版", "增减"]
    return [(b, g, s) for b in blocks for g, s in cols]


def values(table: Table, compare: Table | None = None) -> list[list[Any]]:
    """The lines' label and count cells as the form shows them."""
    other = Compared(compare).cells(table) if compare is not None else None
    hidden = set(table.suppressed) | (Compared(compare).hidden(table) if compare is not None else set())
    rows = []
    for i, line in enumerate(table.lines):
        cells = [SUPPRESSED if (i, j) in hidden else v for j, v in enumerate(line.cells)]
        if other is not None:  # one pattern for both releases and the change (joint_pattern)
            before = other[i][1]
            if len(before) != len(line.cells):
                raise ValueError("the compared tables have different columns: align them first (aligned)")
            old = [SUPPRESSED if (i, j) in hidden else v for j, v in enumerate(before)]
            diff = [SUPPRESSED if (i, j) in hidden else line.cells[j] - before[j] for j in range(len(cells))]
            cells = cells + old + diff
        rows.append(_labels(table, line) + cells)
    return rows


def _notes(table: Table, department: str, generated: dt.datetime, compare: Table | None) -> list[str]:
    data = table.data
    release = data.release
    lines = [f"填报单位：{department}　　统计范围：{table.place}　　统计时点：{data.as_of:%Y-%m-%d}　　"
             f"数据版本：第{release.release_no}版（{data.release_date:%Y-%m-%d} 发布）"
             + ("（该版本已撤回）" if release.withdrawn else "")]
    start, inclusive = table.since
    if table.spec.period is not None:
        if start is None:
            period = f"统计期：截至 {data.as_of:%Y-%m-%d}"
        else:
            period = f"统计期：{start:%Y-%m-%d}{'' if inclusive else '（不含）'} 至 {data.as_of:%Y-%m-%d}"
        lines.append(period)
    lines.append(f"统计口径：{table.spec.description or table.spec.title}")
    if compare is not None:
        lines.append(f"对比：第{compare.data.release.release_no}版（{compare.data.release_date:%Y-%m-%d} 发布，"
                     f"统计时点 {compare.data.as_of:%Y-%m-%d}）；增减 = 本版 − 对比版。")
    if table.suppressed:
        lines.append(f"注：标“{SUPPRESSED}”的格为小数值保护（不足阈值的计数及可据以推算的格）不予显示；"
                     + (f"0 照常显示，每个“{SUPPRESSED}”至少为1。" if compare is None
                        else f"两版同一位置一并隐去，故某一版中的“{SUPPRESSED}”也可能为0。"))
    lines.append(f"数据来源：居民数据中心主索引　　生成时间：{xlsx.local_time(generated)}")
    return lines


def _styles(book) -> None:
    """The form's cell styles, registered once per workbook (assigning a named style is cheap; building
    fonts and borders per cell is what makes a spreadsheet library slow)."""
    from openpyxl.styles import Alignment, Border, NamedStyle, PatternFill, Side

    thin = Side(style="thin", color="808080")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    fill = PatternFill("solid", fgColor=xlsx.HEADER_FILL)
    sub = PatternFill("solid", fgColor=SUBTOTAL_FILL)
    specs = {
        "form_title": dict(font=xlsx._font(bold=True, size=16), alignment=Alignment(horizontal="centerContinuous",
                                                                                    vertical="center")),
        "form_note": dict(font=xlsx._font(), alignment=Alignment(horizontal="left", vertical="center")),
        "form_unit": dict(font=xlsx._font(), alignment=Alignment(horizontal="right")),
        "form_head": dict(font=xlsx._font(bold=True), fill=fill, border=border,
                          alignment=Alignment(horizontal="center", vertical="center", wrap_text=True)),
        "form_label": dict(font=xlsx._font(), border=border),
        "form_count": dict(font=xlsx._font(), border=border, alignment=Alignment(horizontal="right")),
        "form_sum_label": dict(font=xlsx._font(bold=True), border=border, fill=sub),
        "form_sum_count": dict(font=xlsx._font(bold=True), border=border, fill=sub,
                               alignment=Alignment(horizontal="right")),
    }
    for name, style in specs.items():
        book.add_named_style(NamedStyle(name=name, **style))


class _Styler:
    """Gives cells a named style of the workbook: the style's cell format is looked up once (openpyxl looks it up,
    hashing every part of it, for each cell), then copied, as openpyxl copies it."""

    def __init__(self):
        self.formats: dict[str, Any] = {}

    def __call__(self, cell, name: str) -> None:
        found = self.formats.get(name)
        if found is None:
            cell.style = name
            self.formats[name] = copy.copy(cell._style)
        else:
            cell._style = copy.copy(found)


def workbook(table: Table, *, department: str, generated: dt.datetime, compare: Table | None = None,
             chart: bytes | None = None):
    """The form as an openpyxl workbook."""
    from openpyxl.utils import get_column_letter

    book = xlsx.new_workbook(title=f"{table.spec.title} {table.place}")
    _styles(book)
    style = _Styler()
    ws = book.active
    ws.title = xlsx.sheet_title(table.spec.title, "统计表")
    labels = row_labels(table)
    heads = headers(table, compare)
    width = len(labels) + len(heads)
    ws.append([table.spec.title] + [None] * (width - 1))  # centred across the form's width
    for j in range(1, width + 1):
        style(ws.cell(1, j), "form_title")
    ws.row_dimensions[1].height = 28
    for note in _notes(table, department, generated, compare):
        ws.append([note])
        style(ws.cell(ws.max_row, 1), "form_note")
    unit = "单位：人、户" if any(c.measure == "households" for c in table.columns) else "单位：人"
    ws.append([None] * (width - 1) + [unit])
    style(ws.cell(ws.max_row, width), "form_unit")
    levels = 3 if compare is not None else 2
    first = ws.max_row + 1
    for level in range(levels):
        ws.append([formula_safe(labels[j]) if level == 0 and j < len(labels) else None for j in range(len(labels))]
                  + [formula_safe(head[level]) for head in heads])
        for j in range(1, width + 1):
            style(ws.cell(first + level, j), "form_head")
    end = first + levels - 1
    for j in range(1, len(labels) + 1):
        ws.merge_cells(start_row=first, start_column=j, end_row=end, end_column=j)
    _merge_headers(ws, heads, first, len(labels), levels)
    for j, head in enumerate(heads, start=len(labels) + 1):  # wide enough for the lowest heading
        lowest = next((h for h in reversed(head) if h), "")
        ws.column_dimensions[get_column_letter(j)].width = max(9.0, 2.1 * len(lowest) + 1)
    for j in range(1, len(labels) + 1):
        ws.column_dimensions[get_column_letter(j)].width = 14
    n_labels = len(labels)
    for r, (line, row) in enumerate(zip(table.lines, values(table, compare)), start=end + 1):
        ws.append(row)  # ws.max_row and ws[r] scan every cell: the row number is counted instead
        label, count = ("form_label", "form_count") if line.role == "data" else ("form_sum_label", "form_sum_count")
        for j in range(1, width + 1):
            style(ws.cell(r, j), label if j <= n_labels else count)
    ws.freeze_panes = ws.cell(end + 1, n_labels + 1)
    xlsx.signature_lines(ws, filled={"填报日期": f"{generated:%Y-%m-%d}"})
    xlsx._print_setup(ws, end, f"第{table.data.release.release_no}版")  # A4 landscape, page numbers
    ws.print_title_rows = f"{first}:{end}"  # every header row of the form on every page
    if chart is not None:
        xlsx.add_png(ws, chart, f"{get_column_letter(width + 2)}{first}", width=560, height=420)
    return book


def _merge_headers(ws, heads: list[tuple], first: int, offset: int, levels: int) -> None:
    """Merge equal neighbouring header cells across, and a group with no sub-columns down."""
    for level in range(levels):
        j = 0
        while j < len(heads):
            k = j
            prefix = heads[j][: level + 1] if levels == 3 else heads[j][: level + 1]
            while k + 1 < len(heads) and heads[k + 1][: level + 1] == prefix and heads[j][level] is not None:
                k += 1
            col = offset + j + 1
            below_empty = level + 1 < levels and all(heads[x][level + 1] is None for x in range(j, k + 1))
            end_row = first + levels - 1 if below_empty else first + level
            if k > j or end_row > first + level:
                ws.merge_cells(start_row=first + level, start_column=col, end_row=end_row, end_column=offset + k + 1)
            j = k + 1


def csv_text(table: Table, compare: Table | None = None) -> str:
    """The form's lines as CSV (UTF-8 with a byte-order mark, so that spreadsheets read the Chinese)."""
    out = io.StringIO()
    writer = csv.writer(out)
    heads = [formula_safe("/".join(p for p in h if p)) for h in headers(table, compare)]
    writer.writerow([formula_safe(x) for x in row_labels(table)] + heads)
    for row in values(table, compare):
        writer.writerow(["" if v is None else v for v in row])
    return "\ufeff" + out.getvalue()


def filename(table: Table, *, suffix: str = ".xlsx", compare: Table | None = None, suppressed: bool = False) -> str:
    """``最低生活保障对象统计表_城关镇_第3版.xlsx`` (``_对比第2版``, ``_对外`` when suppressed)."""
    name = f"{table.spec.title}_{table.place}_第{table.data.release.release_no}版"
    if compare is not None:
        name += f"_对比第{compare.data.release.release_no}版"
    if suppressed:
        name += "_对外"
    return re.sub(r'[\\/:*?"<>|\s]+', "_", name) + suffix


def target(out: Path | str, table: Table, *, compare: Table | None = None, suppressed: bool = False,
           with_csv: bool = False, overwrite: bool = False) -> Path:
    """Where ``hub report --out`` writes the form: ``out`` when it names an ``.xlsx`` file, else the form's
    :func:`filename` in the folder ``out``. An existing file (the form, or the CSV beside it) is refused
    unless ``overwrite``."""
    path = Path(out)
    if path.is_dir():
        path = path / filename(table, compare=compare, suppressed=suppressed)
    elif path.suffix.lower() != ".xlsx":
        raise StatisticsError(f"--out {out}: name an .xlsx file or an existing folder (the form is an XLSX "
                              "workbook; with --csv the CSV is written beside it, ending in .csv)")
    for p in [path, path.with_suffix(".csv")] if with_csv else [path]:
        if not overwrite and (p.exists() or p.is_symlink()):
            raise _exists(p)
    return path


def _exists(path: Path) -> StatisticsError:
    return StatisticsError(f"{path} already exists: the report is not written over it (give --force to replace it)")


def save(table: Table, path: Path, *, department: str, generated: dt.datetime, compare: Table | None = None,
         chart: bytes | None = None, with_csv: bool = False, overwrite: bool = True) -> list[Path]:
    """Write the XLSX form to ``path`` (and the CSV beside it, ``.csv`` for ``.xlsx``); returns the files
    written. Without ``overwrite`` an existing file is never replaced (not even one made meanwhile)."""
    path = Path(path)
    book = workbook(table, department=department, generated=generated, compare=compare, chart=chart)
    if overwrite:
        written = [xlsx.save_workbook(book, path, private=True)]  # exports are owner-only, like every other
    else:  # written beside it, then linked into place: linking fails when the name is taken
        tmp = xlsx.save_workbook(book, path.with_name(f".{path.stem[:40]}-{os.getpid()}.part.xlsx"), private=True)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise _exists(path) from None
        finally:
            tmp.unlink(missing_ok=True)
        written = [path]
    if with_csv:
        csv_path = path.with_suffix(".csv")
        if overwrite:
            csv_path.unlink(missing_ok=True)
        try:
            fd = os.open(csv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            path.unlink(missing_ok=True)
            raise _exists(csv_path) from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(csv_text(table, compare))
        written.append(csv_path)
    return written


def place_label(table: Table) -> str:
    return COUNTY if table.level == "county" else table.place


_JOB: dict = {}  # what the writers of write_all read: the counted kinds and the places
#: at most this long for the forms of one release (a writer process that stopped answering fails the step)
WRITE_TIMEOUT_S = 1800


@contextlib.contextmanager
def _no_main_module():
    """While the writer processes start: they do not run the parent's main script again. A spawned process
    re-runs it (``__main__.__file__``) before it takes work; under Airflow that is the ``airflow`` command,
    whose import sets Airflow up from the task runner's environment and fails there. The writers need
    nothing of it: their work is in this module."""
    import sys

    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if main is not None and hasattr(main, k)}
    try:
        for k in saved:
            if k == "__file__":
                delattr(main, k)
            else:
                setattr(main, k, None)
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


def _take_job(job: dict) -> None:
    """A writer process's start: the job, sent once to each process."""
    _JOB.update(job)


def _write_one(task: tuple[str, int]) -> tuple[str, str, str, float, dict]:
    import time

    started = time.perf_counter()
    kind, i = task
    count, config, folder, generated = _JOB["counts"][kind], _JOB["config"], _JOB["folder"], _JOB["generated"]
    from reports import statistics

    table = count.table(_JOB["places"][i])
    path = folder / filename(table)
    drawn = table.level != "village" or _JOB["village_charts"]
    department = config.departments[count.spec.owner]
    save(table, path, department=department, generated=generated, chart=statistics._chart(table) if drawn else None)
    entry = {"form": stat_reuse.entry_key(kind, table.level, table.place), "file": path.name,
             "key": stat_reuse.content_key(table, department, drawn),
             "labels": stat_reuse.labels(table, department, generated), "sha256": stat_reuse.sha256_file(path)}
    return count.spec.title, table.place, path.name, time.perf_counter() - started, entry


def _carry_one(task: tuple[str, int], earlier: Path | None, forms: dict) -> tuple | None:
    """The form of ``task`` copied from the earlier release's folder with this release's labels, when its content
    is the same there (:mod:`reports.stat_reuse`); None when it has to be rendered."""
    import time

    if earlier is None:
        return None
    started = time.perf_counter()
    kind, i = task
    count, config, folder, generated = _JOB["counts"][kind], _JOB["config"], _JOB["folder"], _JOB["generated"]
    table = count.table(_JOB["places"][i])
    entry = forms.get(stat_reuse.entry_key(kind, table.level, table.place))
    drawn = table.level != "village" or _JOB["village_charts"]
    department = config.departments[count.spec.owner]
    key = stat_reuse.content_key(table, department, drawn)
    if entry is None or entry.get("key") != key or not entry.get("file"):
        return None
    path = folder / filename(table)
    new_labels = stat_reuse.labels(table, department, generated)
    if not stat_reuse.carry(earlier / entry["file"], entry, path, new_labels, generated):
        return None
    return count.spec.title, table.place, path.name, time.perf_counter() - started, {
        "form": entry["form"], "file": path.name, "key": key, "labels": new_labels,
        "sha256": stat_reuse.sha256_file(path)}


def write_all(conn, folder: Path, *, kinds: list[str] | None = None, release_no: int | None = None,
              workers: int | None = None, village_charts: bool = False, earlier: Path | None = None,
              generated: dt.datetime | None = None, since: dict[str, dt.date | None] | None = None) -> dict:
    """Write every kind in ``kinds`` (default: all declared) for the county and each community of a release
    into ``folder`` (owner's copies: the folder is the hub's own), with an ``index.html`` listing them.
    The release is read once and each kind counted once; the forms are written by ``workers`` processes
    (default: the machine's cores, at most 4). Charts are drawn on the county's and the towns' forms
    (a village's, with ``village_charts``: drawing is most of the time, and a village's pyramid of a few
    hundred persons says little that its table does not; ``hub report`` draws them). A form whose content is
    the same in ``earlier`` (another release's folder written by this function) is copied from there with this
    release's labels instead of rendered again (:mod:`reports.stat_reuse`). ``generated``: the time the forms
    give as made (default: now). ``since``: per kind, the date a ``since_previous`` period starts after (default:
    the previous release's date; the pipeline passes its previous report's, :mod:`reports.report_calendar`).
    Returns the release,
    the number of files (``carried``: how many were copied), per kind
    (files, seconds: counting plus writing, summed over the processes) and the index page."""
    import dataclasses
    import html
    import multiprocessing
    import os
    import time
    from zoneinfo import ZoneInfo

    from reports import statistics

    config = statistics.shipped_statistics()
    wanted = list(config.kinds) if kinds is None else kinds
    for kind in wanted:
        statistics.kind_spec(kind, config)
    started = time.perf_counter()
    data = statistics.load_release(conn, release_no=release_no, config=config)
    read = time.perf_counter() - started
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    places = [None, *data.communities]
    seconds: dict[str, float] = {}
    counts = {}
    for kind in wanted:
        started = time.perf_counter()
        counts[kind] = statistics.count_kind(kind, data, config=config, since=(since or {}).get(kind))
        seconds[kind] = time.perf_counter() - started
    # the forms need the counts and the release's communities and labels, not its persons and enrolments: the
    # writer processes are sent the counts without them (the release itself can be hundreds of megabytes)
    slim = dataclasses.replace(data, persons=data.persons.iloc[:0], enrolments=data.enrolments.iloc[:0])
    counts = {kind: dataclasses.replace(count, data=slim) for kind, count in counts.items()}
    _JOB.update(counts=counts, config=config, folder=folder, places=places, village_charts=village_charts,
                generated=generated or dt.datetime.now(ZoneInfo(config.timezone)))
    tasks = [(kind, i) for kind in wanted for i in range(len(places))]
    workers = workers or min(4, os.cpu_count() or 1)
    forms = stat_reuse.read_manifest(earlier)
    try:
        carried = {t: _carry_one(t, earlier, forms) for t in tasks} if forms else {}
        render = [t for t in tasks if carried.get(t) is None]
        if workers > 1 and len(render) > 8:
            # fresh processes ("spawn"), never a fork: the report task runs in a process with threads (the
            # Airflow task runner's), and a forked child can wait forever on a lock one of them held
            with _no_main_module(), multiprocessing.get_context("spawn").Pool(
                    workers, initializer=_take_job, initargs=(dict(_JOB),)) as pool:
                try:
                    rendered = pool.map_async(_write_one, render, chunksize=8).get(timeout=WRITE_TIMEOUT_S)
                except multiprocessing.TimeoutError:
                    raise StatisticsError(f"writing the {len(tasks)} statistical reports of release "
                                          f"{data.release.release_no} took longer than {WRITE_TIMEOUT_S} s; "
                                          f"forms written so far are in {folder}") from None
        else:
            rendered = [_write_one(t) for t in render]
    finally:
        _JOB.clear()
    by_task = {**carried, **dict(zip(render, rendered))}
    done = [by_task[t] for t in tasks]
    for (kind, _), (_, _, _, took, _) in zip(tasks, done):
        seconds[kind] += took
    stat_reuse.write_manifest(folder, data.release.release_no, {entry["form"]: entry for *_, entry in done})
    rows = "\n".join(f"<tr><td>{html.escape(t)}</td><td>{html.escape(p)}</td>"
                     f"<td><a href=\"{html.escape(n)}\">{html.escape(n)}</a></td></tr>" for t, p, n, _, _ in done)
    (folder / "index.html").write_text(
        f"<!doctype html><meta charset=\"utf-8\"><title>统计报表 第{data.release.release_no}版</title>"
        f"<h1>统计报表 Statistical reports — 第{data.release.release_no}版</h1>"
        f"<p>统计时点 {data.as_of:%Y-%m-%d}；{len(done)} 份报表（各报表的填报单位、生成时间见表内）。</p>"
        f"<table border=\"1\" cellpadding=\"4\"><tr><th>报表</th><th>范围</th><th>文件</th></tr>\n{rows}\n</table>\n",
        encoding="utf-8")
    return {"release_no": data.release.release_no, "files": len(done), "read_seconds": round(read, 2),
            "carried": len(tasks) - len(render),
            "kinds": {k: (len(places), round(seconds[k], 2)) for k in wanted}, "index": str(folder / "index.html")}
