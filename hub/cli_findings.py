"""``hub findings``: the auditors' inbox on the command line — the same findings and the same steps as the
workbench's ``/workbench/findings`` (:mod:`warehouse.finding_lifecycle`), taken as the operating-system user."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hub.cli_common import TIME_HEADER, JsonOption, console, local_time, print_json, user_errors

findings_app = typer.Typer(help="The findings inbox: list, show and move findings through their lifecycle.",
                           no_args_is_help=True)

CommentOption = Annotated[str | None, typer.Option("--comment", "-m", help="A comment kept in the finding's history.")]
FindingArg = Annotated[str, typer.Argument(help="The finding's id (see 'hub findings list').")]


def _hours(start, end) -> str:
    from warehouse.finding_lifecycle import hours_between

    hours = hours_between(start, end)
    return "" if hours is None else f"{hours:.1f}h"


@findings_app.command("list")
def findings_list(
    department: Annotated[str | None, typer.Option(help="Only this owner department.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind, e.g. deceased_active.")] = None,
    status: Annotated[str, typer.Option(
        help="active (not closed), all, overdue, or one of open, acknowledged, assigned, resolved, dismissed.")
    ] = "active",
    age: Annotated[int | None, typer.Option(min=0, help="Only findings opened at least this many days ago.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 200,
    as_json: JsonOption = False,
) -> None:
    """List findings with their step, owner, due date (北京时间) and response and resolution times."""
    from hub import settings
    from hub.errors import HubError
    from warehouse.finding_lifecycle import NOT_CLOSED, STATUSES
    from warehouse.findings import INBOX_KINDS, list_findings

    with user_errors():
        if status not in (*STATUSES, "active", "all", "overdue"):
            raise HubError(f"--status {status}: choose active, all, overdue or one of {', '.join(STATUSES)}")
        if kind is not None and kind not in INBOX_KINDS:
            raise HubError(f"--kind {kind}: unknown kind; choose one of {', '.join(INBOX_KINDS)}")
        with settings.engine().connect() as conn:
            rows = list_findings(conn, department=department, kind=kind, opened_days_ago=age, limit=limit,
                                 status=None if status in ("all", "overdue") else NOT_CLOSED if status == "active"
                                 else status, overdue=True if status == "overdue" else None)
    if as_json:
        print_json({"status": status, "findings": [{k: v for k, v in r.items() if k != "evidence"} for r in rows]})
        return
    table = Table("finding", "kind", "department", "status", f"due{TIME_HEADER}", "response", "resolution", "summary")
    for r in rows:
        table.add_row(r["finding_id"], r["kind"], r["department"],
                      r["status"] + (f" → {r['assigned_to']}" if r["assigned_to"] else ""),
                      local_time(r["due_at"], labelled=False) + (" overdue" if r["overdue"] else ""),
                      _hours(r["opened_at"], r["acknowledged_at"]), _hours(r["opened_at"], r["closed_at"]),
                      r["summary"])
    console.print(table if rows else "no findings match")


@findings_app.command("show")
def findings_show(finding_id: FindingArg, as_json: JsonOption = False) -> None:
    """Show a finding: its summary, masked evidence and history (times in China Standard Time, 北京时间)."""
    from hub import settings
    from hub.errors import HubError
    from warehouse.finding_lifecycle import get_finding, history

    with user_errors(), settings.engine().connect() as conn:
        finding = get_finding(conn, finding_id)
        if finding is None:
            raise HubError(f"there is no finding {finding_id}")
        events = history(conn, finding_id)
    if as_json:
        print_json({"finding": finding, "history": events})
        return
    console.print(f"{finding['finding_id']} {finding['kind']} — {finding['status']}, owner {finding['department']},"
                  f" due {local_time(finding['due_at'])}", highlight=False, markup=False)
    console.print(finding["summary"], highlight=False, markup=False, soft_wrap=True)
    table = Table(f"when{TIME_HEADER}", "step", "status", "by", "assigned / reason", "comment")
    for e in events:
        table.add_row(local_time(e["at"], labelled=False), e["action"] + (f" (release {e['release_no']})"
                      if e["release_no"] else ""), f"{e['from_status'] or ''} → {e['to_status']}", e["actor"],
                      e["assigned_to"] or e["reason"] or "", e["comment"] or "")
    console.print(table)


def _step(finding_id: str, action: str, *, comment: str | None, reason: str | None = None,
          assigned_to: str | None = None) -> None:
    from hub import settings
    from hub.errors import HubError
    from hub.exports import os_user
    from warehouse.finding_lifecycle import TransitionRefused, transition
    from warehouse.gate_findings import DATA_OFFICE
    from warehouse.sharing import department_titles

    with user_errors():
        try:
            with settings.engine().begin() as conn:
                f = transition(conn, finding_id, action, actor=os_user(), reason=reason, assigned_to=assigned_to,
                               comment=comment, departments=[*department_titles(), DATA_OFFICE])
        except (TransitionRefused, LookupError) as exc:
            raise HubError(str(exc).strip("'\"")) from None
    console.print(f"{f['finding_id']}: {f['status']}" + (f" → {f['assigned_to']}" if f["assigned_to"] else "")
                  + (f" ({f['close_reason']})" if f["close_reason"] else ""), highlight=False, markup=False)


@findings_app.command("acknowledge")
def findings_acknowledge(finding_id: FindingArg, comment: CommentOption = None) -> None:
    """Acknowledge an open finding (its response time ends here)."""
    _step(finding_id, "acknowledge", comment=comment)


@findings_app.command("assign")
def findings_assign(finding_id: FindingArg,
                    to: Annotated[str, typer.Option("--to", help="The department to fix it (see warehouse/sharing.yaml).")],
                    comment: CommentOption = None) -> None:
    """Assign an acknowledged finding to the department that must fix it (again: to another one)."""
    _step(finding_id, "assign", comment=comment, assigned_to=to)


@findings_app.command("resolve")
def findings_resolve(finding_id: FindingArg,
                     reason: Annotated[str, typer.Option(help="A resolve reason of warehouse/finding_rules.yaml.")],
                     comment: CommentOption = None) -> None:
    """Resolve an acknowledged or assigned finding with a reason from the list."""
    _step(finding_id, "resolve", comment=comment, reason=reason)


@findings_app.command("dismiss")
def findings_dismiss(finding_id: FindingArg,
                     reason: Annotated[str, typer.Option(help="A dismiss reason of warehouse/finding_rules.yaml.")],
                     comment: CommentOption = None) -> None:
    """Dismiss a finding that is not closed, with a reason from the list; later releases leave it dismissed."""
    _step(finding_id, "dismiss", comment=comment, reason=reason)


@findings_app.command("reopen")
def findings_reopen(finding_id: FindingArg, comment: CommentOption = None) -> None:
    """Reopen a resolved or dismissed finding (a new due date)."""
    _step(finding_id, "reopen", comment=comment)


@findings_app.command("comment")
def findings_comment(finding_id: FindingArg,
                     text: Annotated[str, typer.Argument(help="The comment (ID and phone numbers are masked).")]) -> None:
    """Add a comment to a finding's history without moving it."""
    _step(finding_id, "comment", comment=text)
