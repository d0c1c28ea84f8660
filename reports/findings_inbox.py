"""The auditors' inbox as a workbook: the findings a filter of the workbench's inbox selected, with their step in
the lifecycle (status, owner, due date, response and resolution times), written with the reports' one XLSX
writer. Like the departments' findings workbooks it holds record references, codes and masked values only; a
department's export holds what its inbox shows it (:func:`reports.finding_view.department_view`): another
department's record by its department and role, birth dates to the year."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Mapping, Sequence

from reports.finding_view import WITHHELD, role_label
from reports.findings_workbook import record_refs
from reports.render import CHINA_STANDARD_TIME
from reports.xlsx import Column, new_workbook, write_table
from warehouse.finding_lifecycle import STATUS_LABELS, FindingRules, finding_rules, hours_between
from warehouse.findings import KIND_LABELS, KINDS

#: (key, bilingual heading, width in characters, an identifier typed as text)
INBOX_COLUMNS = (
    ("finding_id", "编号 Finding id", 20, True),
    ("kind_label", "类型 Kind", 26, False),
    ("department", "责任部门 Owner department", 16, False),
    ("summary", "摘要 Summary", 60, False),
    ("status", "状态 Status", 14, False),
    ("assigned_to", "分派给 Assigned to", 16, False),
    ("opened_at", "发现时间 Opened (北京时间)", 18, False),
    ("due_at", "期限 Due (北京时间)", 18, False),
    ("overdue", "逾期 Overdue", 8, False),
    ("acknowledged_at", "确认时间 Acknowledged (北京时间)", 18, False),
    ("closed_at", "关闭时间 Closed (北京时间)", 18, False),
    ("close_reason", "关闭原因 Reason", 26, False),
    ("response_hours", "响应用时（小时）Response time (h)", 12, False),
    ("resolution_hours", "解决用时（小时）Resolution time (h)", 12, False),
    ("master_id", "主索引号 Master id", 16, True),
    ("records", "记录 Record references", 40, True),
    ("evidence", "证据（已脱敏）Masked evidence", 70, False),
    ("first_release", "首次发现版本 First release", 10, False),
    ("last_release", "最近发现版本 Last release", 10, False),
)


#: the sheet's note on birth dates: an auditor's (month: to judge a birth-date conflict) and a department's (year)
BIRTH_DATE_NOTE = {
    True: "出生日期显示到月（1968-01-**），供审计员判断出生日期不一致 · birth dates to the month, for auditors to judge"
          " a conflict",
    False: "出生日期只显示年份（1968-**-**）；他部门记录只显示部门和角色 · birth dates to the year; another department's"
           " records by department and role only",
}


def _local(ts: dt.datetime | None) -> str:
    return ts.astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d %H:%M") if ts else ""


def _hours(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    hours = hours_between(start, end)
    return round(hours, 1) if hours is not None else None


def _evidence_line(item: Mapping, titles: Mapping[str, str]) -> str:
    if item.get(WITHHELD):
        department = titles.get(item.get("department") or "", item.get("department") or "另一部门 another department")
        zh, en = role_label(item.get("role"))
        return f"{department}：{zh} {en}（他部门记录，不共享 another department's record: not shared）"
    return json.dumps(item, ensure_ascii=False, sort_keys=True)


def inbox_row(finding: Mapping, titles: Mapping[str, str], rules: FindingRules) -> list:
    evidence = finding.get("evidence") or []
    values = {**finding,
              "kind_label": " · ".join(KIND_LABELS.get(finding["kind"], (finding["kind"],))),
              "department": titles.get(finding["department"], finding["department"]),
              "assigned_to": titles.get(finding.get("assigned_to") or "", finding.get("assigned_to") or ""),
              "status": " ".join(STATUS_LABELS.get(finding["status"], (finding["status"],))),
              "overdue": "是 yes" if finding.get("overdue") else "",
              "close_reason": rules.reason_label(finding.get("close_reason")) if finding.get("close_reason") else "",
              "response_hours": _hours(finding.get("opened_at"), finding.get("acknowledged_at")),
              "resolution_hours": _hours(finding.get("opened_at"), finding.get("closed_at")),
              "records": record_refs(evidence),
              "evidence": "\n".join(_evidence_line(e, titles) for e in evidence),
              **{k: _local(finding.get(k)) for k in ("opened_at", "due_at", "acknowledged_at", "closed_at")}}
    return [values.get(key) for key, _, _, _ in INBOX_COLUMNS]


def inbox_workbook(findings: Sequence[Mapping], *, titles: Mapping[str, str], filters: Sequence[str],
                   generated: dt.datetime, rules: FindingRules | None = None, auditor: bool = True) -> bytes:
    """The workbook (bytes) of ``findings`` (rows of :func:`warehouse.findings.list_findings`, as the reader may
    read them: :func:`reports.finding_view.department_view`): sheet ``findings`` with the filter and the time above
    the table, sheet ``about`` with the kinds and statuses. ``auditor``: the reader sees every department's
    records (else the sheet says what a department's view withholds)."""
    rules = rules or finding_rules()
    book = new_workbook(title="问题清单 Findings inbox")
    sheet = book.active
    sheet.title = "findings"
    columns = [Column(label, width, text=text, wrap=True) for _, label, width, text in INBOX_COLUMNS]
    notes = [f"筛选 Filter: {'; '.join(filters) or '全部 all'}",
             f"导出时间 exported {_local(generated)} 北京时间 China Standard Time · {len(findings)} 条 findings",
             BIRTH_DATE_NOTE[auditor]]
    write_table(sheet, columns, (inbox_row(f, titles, rules) for f in findings), title="问题清单 Findings inbox",
                notes=notes, empty_note="没有符合筛选条件的问题 no finding matches the filter", frozen_columns=1)
    about = [[kind, *KIND_LABELS[kind]] for kind in KINDS]
    about += [[status, *label] for status, label in STATUS_LABELS.items()]
    about += [[code, *label] for code, label in {**rules.resolve_reasons, **rules.dismiss_reasons}.items()]
    about += [["note", "证据只含记录引用、代码和脱敏值", "evidence holds record references, codes and masked values only"]]
    if not auditor:
        about += [["note", "他部门的记录只显示部门和在问题中的角色，不显示来源、记录号和内容",
                   "another department's record: its department and its role in the finding only, never its source,"
                   " record id or values"]]
    write_table(book.create_sheet("about"),
                [Column("代码 Code", 22), Column("中文", 40, wrap=True), Column("English", 60, wrap=True)], about)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
