"""One XLSX workbook per department with its audit findings and failed gate expectations (sheet ``findings``,
and ``about`` saying what each kind means). Everything written carries record references, codes and masked
values only.

By default a workbook holds what the department still has to act on: every finding not closed (open,
acknowledged or assigned: :data:`warehouse.finding_lifecycle.NOT_CLOSED`), which is what ``"open"`` means here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa

from reports.finding_view import department_view
from reports.render import CHINA_STANDARD_TIME
from reports.xlsx import Column, new_workbook, save_workbook, write_table
from warehouse.finding_lifecycle import NOT_CLOSED
from warehouse.findings import INBOX_KINDS, KIND_LABELS, list_findings, transaction
from warehouse.gate_findings import DATA_OFFICE, DATA_OFFICE_TITLE
from warehouse.sharing import department_titles

OPEN = "open"  # the default selection: every finding not closed

#: (key, bilingual heading, width in characters)
XLSX_COLUMNS = (
    ("finding_id", "编号 Finding id", 20),
    ("kind", "类型 Kind", 20),
    ("kind_label", "类型说明 Kind (label)", 28),
    ("summary", "摘要 Summary", 70),
    ("master_id", "主索引号 Master id", 16),
    ("records", "记录 Record references", 40),
    ("evidence", "证据（已脱敏）Masked evidence", 80),
    ("first_release", "首次发现版本 First release", 12),
    ("last_release", "最近发现版本 Last release", 12),
    ("first_seen_at", "首次发现时间（北京时间）First seen (China Standard Time)", 22),
    ("last_seen_at", "最近发现时间（北京时间）Last seen (China Standard Time)", 22),
    ("status", "状态 Status", 10),
)
IDENTIFIER_COLUMNS = frozenset({"finding_id", "master_id", "records"})  # typed as text


def record_refs(evidence: list[dict]) -> str:
    """The records a finding's evidence names: ``source/record (role); …``."""
    return "; ".join(f"{e['source']}/{e['source_record_id']} ({e['role']})" for e in evidence if "source" in e)


def _evidence_text(evidence: list[dict]) -> str:
    return "\n".join(json.dumps(e, ensure_ascii=False, sort_keys=True) for e in evidence)


def _local(ts: dt.datetime | None) -> str:
    return ts.astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d %H:%M") if ts else ""


def _finding_row(finding: dict) -> list:
    evidence = finding["evidence"] or []
    values = {**finding, "kind_label": " · ".join(KIND_LABELS.get(finding["kind"], (finding["kind"],))),
              "records": record_refs(evidence), "evidence": _evidence_text(evidence),
              "first_seen_at": _local(finding["first_seen_at"]), "last_seen_at": _local(finding["last_seen_at"])}
    return [values[key] for key, _, _ in XLSX_COLUMNS]


def export_findings_xlsx(conn: sa.Connection | sa.Engine, department: str, path: str | Path, *,
                         status: str | None = OPEN, sources: Mapping[str, str] | None = None) -> Path:
    """Write ``department``'s findings workbook (:func:`write_findings_workbook`); returns the path."""
    return write_findings_workbook(conn, department, path, status=status, sources=sources)[0]


def write_findings_workbook(conn: sa.Connection | sa.Engine, department: str, path: str | Path, *,
                            status: str | None = OPEN, sources: Mapping[str, str] | None = None) -> tuple[Path, int]:
    """Write ``department``'s findings to an XLSX workbook: ``"open"`` (the default) every one not closed (open,
    acknowledged or assigned), ``None`` all, another status only those.

    Sheet ``findings``: one row per finding (columns :data:`XLSX_COLUMNS`, bilingual header); sheet
    ``about``: what each kind means. The file is readable by its owner only. Returns the path and
    the number of findings written.

    ``sources`` (source → department, the registry's): the workbook is the department's copy — another
    department's records show only their department and role (:func:`reports.finding_view.department_view`),
    birth dates to the year; without it, the auditors' copy with every record.
    """
    with transaction(conn) as c:
        rows = list_findings(c, department=department, status=NOT_CLOSED if status == OPEN else status)
    titles = {DATA_OFFICE: DATA_OFFICE_TITLE, **department_titles()}
    title = titles.get(department, department)
    if sources is not None:
        rows = [department_view(r, department, departments=sources, titles=titles) for r in rows]
    book = new_workbook(title=f"审计发现 Findings · {title}")
    sheet = book.active
    sheet.title = "findings"
    columns = [Column(label, width, text=key in IDENTIFIER_COLUMNS, wrap=True) for key, label, width in XLSX_COLUMNS]
    write_table(sheet, columns, (_finding_row(r) for r in rows), frozen_columns=1)
    about = [[kind, *KIND_LABELS[kind]] for kind in INBOX_KINDS]
    selected = ("未关闭（待处理、已确认、已分派） not closed (open, acknowledged, assigned)" if status == OPEN
                else status or "all")
    about += [[None, None, None], ["部门 Department", title, None], ["状态 Status", selected, None],
              ["说明 Note", "证据只含记录引用、代码和脱敏值 · evidence holds record references, codes and masked values only",
               None]]
    if sources is not None:
        about.append(["本部门副本 Department's copy", "其他部门的记录只显示其部门和角色，出生日期只显示年份",
                      "another department's records show only their department and role; birth dates show the year"])
    write_table(book.create_sheet("about"),
                [Column("类型 Kind", 22), Column("中文", 40, wrap=True), Column("English", 60, wrap=True)], about)
    return save_workbook(book, path, private=True), len(rows)  # record references of persons: the owner only
