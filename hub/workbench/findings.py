"""Workbench pages: the auditors' inbox of findings (``/workbench/findings``) and one finding with its history.

Who sees what: a key with the ``auditor`` scope sees every department's findings and moves them through their
lifecycle (:mod:`warehouse.finding_lifecycle`: acknowledge, assign to an owner department, resolve or dismiss
with a reason from the list, reopen, comment); any other key sees its own department's findings, read-only
(no forms; a post answers 403 and writes nothing), and in their evidence its own department's records only: another
department's record by its department and role, birth dates to the year (:func:`reports.finding_view.department_view`,
in the list, a finding's page and the export alike). Each step is written with its history event and the request's
access-log row in one transaction. The filtered list downloads as a workbook
(:mod:`reports.findings_inbox`), recorded in ``audit.export_log`` in the transaction of the read.
"""

from __future__ import annotations

import hmac
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from hub.api.deps import log_in
from hub.workbench.pages import HEADERS, Forbidden, now_cst, page
from hub.workbench.session import User, UserDep
from reports.finding_view import ROLE_LABELS, WITHHELD, department_view
from warehouse.finding_lifecycle import (
    ACTION_LABELS,
    NOT_CLOSED,
    STATUS_LABELS,
    STATUSES,
    TRANSITIONS,
    TransitionRefused,
    finding_rules,
    get_finding,
    history,
    hours_between,
    record_download,
    transition,
)
from warehouse.findings import GATE_EXPECTATION, INBOX_KINDS, KIND_LABELS, list_findings
from warehouse.gate_findings import DATA_OFFICE, DATA_OFFICE_TITLE

router = APIRouter(include_in_schema=False)

SHOWN = 500  # rows on the page; the export holds them all
AGES = {"1": ("1 天以上", "1 day or more"), "7": ("7 天以上", "a week or more"), "30": ("30 天以上", "30 days or more"),
        "90": ("90 天以上", "90 days or more")}
STATUS_FILTERS = {"active": ("未关闭", "not closed"), "overdue": ("已逾期", "overdue"),
                  **STATUS_LABELS, "all": ("全部", "all")}
_FINDING_ID = re.compile(r"^F[0-9A-F]{15}$")


def _titles(request: Request) -> dict[str, str]:
    """The owner departments: the sharing configuration's, and the hub's data office (the master index's gate
    expectations are its own)."""
    sharing = request.app.state.sharing
    return {**{name: getattr(d, "title", None) or name for name, d in sharing.items()}, DATA_OFFICE: DATA_OFFICE_TITLE}


def _shown(request: Request, user: User, findings: list[dict]) -> list[dict]:
    """The findings as ``user`` may read them: as stored for an auditor, a department's view for anyone else."""
    if user.is_auditor:
        return findings
    from connectors.registry import source_departments

    departments, titles = source_departments(), _titles(request)
    return [department_view(f, user.department, departments=departments, titles=titles) for f in findings]


def _filters(request: Request, user: User) -> dict[str, str]:
    """The inbox's filters from the query, checked (422 naming the filter); a non-auditor's department is its own."""
    q = request.query_params
    chosen = {"department": q.get("department", ""), "kind": q.get("kind", ""),
              "status": q.get("status", "") or "active", "age": q.get("age", "")}
    known = {"department": set(_titles(request)), "kind": set(INBOX_KINDS), "status": set(STATUS_FILTERS), "age": set(AGES)}
    for name, value in chosen.items():
        if value and value not in known[name]:
            raise HTTPException(422, f"{name}: unknown value; choose one of {', '.join(sorted(known[name]))}")
    if not user.is_auditor:
        chosen["department"] = user.department
    return chosen


def _select(conn, chosen: dict[str, str], limit: int | None) -> list[dict]:
    status = chosen["status"]
    return list_findings(conn, department=chosen["department"] or None, kind=chosen["kind"] or None,
                         status=None if status in ("all", "overdue") else NOT_CLOSED if status == "active" else status,
                         overdue=True if status == "overdue" else None,
                         opened_days_ago=int(chosen["age"]) if chosen["age"] else None, limit=limit)


def _filter_words(chosen: dict[str, str], titles: dict[str, str]) -> list[str]:
    words = []
    if chosen["department"]:
        words.append(f"部门 department: {titles.get(chosen['department'], chosen['department'])}")
    if chosen["kind"]:
        words.append(f"类型 kind: {' '.join(KIND_LABELS[chosen['kind']])}")
    words.append(f"状态 status: {' '.join(STATUS_FILTERS[chosen['status']])}")
    if chosen["age"]:
        words.append(f"发现至今 age: {' '.join(AGES[chosen['age']])}")
    return words


def duration(hours: float | None) -> str:
    """A response or resolution time for people: minutes, hours or days."""
    if hours is None:
        return "—"
    if hours < 1:
        return f"{max(1, round(hours * 60))} 分钟 min"
    if hours < 48:
        return f"{hours:.1f} 小时 h"
    return f"{hours / 24:.1f} 天 d"


def _times(finding: dict) -> dict:
    return {"response": duration(hours_between(finding["opened_at"], finding["acknowledged_at"])),
            "resolution": duration(hours_between(finding["opened_at"], finding["closed_at"]))}


@router.get("/workbench/findings")
def inbox(request: Request, user: UserDep):
    chosen = _filters(request, user)
    with request.app.state.engine.connect() as conn:
        rows = _select(conn, chosen, SHOWN + 1)
    more, rows = len(rows) > SHOWN, _shown(request, user, rows[:SHOWN])
    request.state.access.results = len(rows)
    titles = _titles(request)
    query = "&".join(f"{k}={v}" for k, v in chosen.items() if v and not (k == "department" and not user.is_auditor))
    return page(request, "findings.html.j2", title="问题清单 Findings inbox", rows=rows, more=more, shown=SHOWN,
                chosen=chosen, titles=titles, kinds=INBOX_KINDS, kind_labels=KIND_LABELS, ages=AGES,
                status_filters=STATUS_FILTERS, status_labels=STATUS_LABELS, times=_times, query=query,
                filter_words=_filter_words(chosen, titles))


@router.get("/workbench/findings/export.xlsx")
def export(request: Request, user: UserDep):
    """The filtered inbox as a workbook, recorded in audit.export_log with the access-log row, then sent."""
    from hub.exports import describe
    from reports.findings_inbox import inbox_workbook

    chosen = _filters(request, user)
    titles = _titles(request)
    generated = now_cst()
    with request.app.state.engine.begin() as conn:
        rows = _shown(request, user, _select(conn, chosen, None))
        data = inbox_workbook(rows, titles=titles, filters=_filter_words(chosen, titles), generated=generated,
                              auditor=user.is_auditor)
        record_download(conn, actor=user.key.key_id, department=chosen["department"] or None,
                        what=describe("findings", {"page": "workbench inbox", **{k: v for k, v in chosen.items() if v}}),
                        rows=len(rows))
        request.state.access.results = len(rows)
        log_in(conn, request, 200)
    name = f"findings-{generated:%Y%m%d-%H%M}.xlsx"
    return Response(data, 200, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})


def _log_finding_id(request: Request) -> None:
    """The access log keeps a finding's id in the path (an id, no personal data; the guard masks what it does not
    know)."""
    finding_id, action = request.path_params.get("finding_id", ""), request.path_params.get("action")
    if _FINDING_ID.match(finding_id) and (action is None or action in TRANSITIONS):
        request.state.access.endpoint = f"{request.method} /workbench/findings/{finding_id}" + (
            f"/{action}" if action else "")


def _visible(request: Request, user: User, finding_id: str) -> dict:
    """The finding, if the user may see it (an auditor: any; another key: its own department's), else 404."""
    if not _FINDING_ID.match(finding_id):
        raise HTTPException(404)
    _log_finding_id(request)
    with request.app.state.engine.connect() as conn:
        finding = get_finding(conn, finding_id)
    if finding is None or not (user.is_auditor or finding["department"] == user.department):
        raise HTTPException(404)
    return _shown(request, user, [finding])[0]


def _detail(request: Request, user: User, finding: dict, *, status: int = 200, error: str | None = None,
            done: str | None = None):
    with request.app.state.engine.connect() as conn:
        events = history(conn, finding["finding_id"])
    masters = sorted({m for m in [finding["master_id"], *(e.get("master_id") for e in finding["evidence"] or [])] if m})
    request.state.access.master_ids, request.state.access.results = masters, 1
    rules = finding_rules()
    actions = [a for a, (starts, _, _) in TRANSITIONS.items() if finding["status"] in starts] if user.is_auditor else []
    return page(request, "finding.html.j2", status=status, title=f"问题 Finding {finding['finding_id']}",
                f=finding, events=events, actions=actions, error=error, done=done, titles=_titles(request),
                kind_labels=KIND_LABELS, status_labels=STATUS_LABELS, action_labels=ACTION_LABELS,
                resolve_reasons=rules.reasons("resolve", offered=True),
                dismiss_reasons=rules.reasons("dismiss", offered=True), reason_label=rules.reason_label,
                times=_times(finding), statuses=STATUSES, gate_kind=GATE_EXPECTATION, role_labels=ROLE_LABELS,
                withheld=WITHHELD)


@router.get("/workbench/findings/{finding_id}")
def finding_page(request: Request, user: UserDep, finding_id: str, done: str | None = None):
    finding = _visible(request, user, finding_id)
    return _detail(request, user, finding, done=TRANSITIONS[done][2] if done in TRANSITIONS else None)


def acting_auditor(request: Request, user: UserDep, csrf: Annotated[str, Form(max_length=100)] = "") -> User:
    """An auditor whose form carried its session's token; anyone else is refused (403) before anything is read."""
    _log_finding_id(request)
    if not user.is_auditor:
        raise Forbidden("auditor", "Working the findings inbox")
    if not csrf or not hmac.compare_digest(csrf, user.csrf):
        raise Forbidden("session", "This form is out of date or was not sent from the workbench: reload the page")
    return user


@router.post("/workbench/findings/{finding_id}/{action}")
def act(request: Request, user: Annotated[User, Depends(acting_auditor)], finding_id: str, action: str,
        reason: Annotated[str, Form(max_length=60)] = "", assigned_to: Annotated[str, Form(max_length=60)] = "",
        comment: Annotated[str, Form(max_length=4000)] = ""):
    """One step of the finding's lifecycle, its history event and the access-log row in one transaction."""
    if action not in TRANSITIONS:
        raise HTTPException(404)
    finding = _visible(request, user, finding_id)
    request.state.access.master_ids = [finding["master_id"]] if finding["master_id"] else []
    try:
        with request.app.state.engine.begin() as conn:
            transition(conn, finding_id, action, actor=user.key.key_id, reason=reason or None,
                       assigned_to=assigned_to or None, comment=comment, departments=_titles(request))
            log_in(conn, request, 303)
    except TransitionRefused as refused:
        with request.app.state.engine.connect() as conn:
            finding = _shown(request, user, [get_finding(conn, finding_id)])[0]
        return _detail(request, user, finding, status=409, error=str(refused))
    return RedirectResponse(f"/workbench/findings/{finding_id}?done={action}", 303, headers=HEADERS)

