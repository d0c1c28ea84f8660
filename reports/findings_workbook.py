"""One XLSX workbook per department with its audit findings (sheet ``findings``, and ``about`` saying
what each kind means). Everything written carries record references, codes and masked values only."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import sqlalchemy as sa

from reports.render import CHINA_STANDARD_TIME
from reports.xlsx import Column, new_workbook, save_workbook, write_table
from warehouse.findings import KIND_LABELS, KINDS, list_findings, transaction
from warehouse.sharing import department_titles

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
    ("first_seen_at", "首次发现时间 First seen", 20),
    ("last_seen_at", "最近发现时间 Last seen", 20),
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
                         status: str | None = "open") -> Path:
    """Write ``department``'s findings workbook (:func:`write_findings_workbook`); returns the path."""
    return write_findings_workbook(conn, department, path, status=status)[0]


def write_findings_workbook(conn: sa.Connection | sa.Engine, department: str, path: str | Path, *,
                            status: str | None = "open") -> tuple[Path, int]:
    """Write ``department``'s findings (open ones by default; ``None`` for all) to an XLSX workbook.

    Sheet ``findings``: one row per finding (columns :data:`XLSX_COLUMNS`, bilingual header); sheet
    ``about``: what each kind means. The file is readable by its owner only. Returns the path and
    the number of findings written.
    """
    with transaction(conn) as c:
        rows = list_findings(c, department=department, status=status)
    title = department_titles().get(department, department)
    book = new_workbook(title=f"审计发现 Findings · {title}")
    sheet = book.active
    sheet.title = "findings"
    columns = [Column(label, width, text=key in IDENTIFIER_COLUMNS, wrap=True) for key, label, width in XLSX_COLUMNS]
    write_table(sheet, columns, (_finding_row(r) for r in rows), frozen_columns=1)
    about = [[kind, *KIND_LABELS[kind]] for kind in KINDS]
    about += [[None, None, None], ["部门 Department", title, None], ["状态 Status", status or "all", None],
              ["说明 Note", "证据只含记录引用、代码和脱敏值 · evidence holds record references, codes and masked values only",
               None]]
    write_table(book.create_sheet("about"),
                [Column("类型 Kind", 22), Column("中文", 40, wrap=True), Column("English", 60, wrap=True)], about)
    return save_workbook(book, path, private=True), len(rows)  # record references of persons: the owner only
