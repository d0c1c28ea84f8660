"""``hub release``, ``hub audit``, ``hub grants`` and ``hub api-key``: what is published and who may read it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hub.cli_common import TIME_HEADER, JsonOption, console, local_time, print_json, user_errors

release_app = typer.Typer(help="Published releases of the master index.", no_args_is_help=True)
grants_app = typer.Typer(help="Department roles, views and row-level security in the warehouse.",
                         no_args_is_help=True)
audit_app = typer.Typer(help="Cross-department consistency audits of the published index.", no_args_is_help=True)
key_app = typer.Typer(help="API keys of the read API (one or more per department).", no_args_is_help=True)



@release_app.command("list")
def release_list(as_json: JsonOption = False) -> None:
    """List the published releases; the current one is marked. A last attempt that published nothing
    (the gate held it, or nothing changed) is shown below with its reason. Times in China Standard Time
    (北京时间, UTC+8)."""
    from hub import settings
    from warehouse.releases import last_publish_attempt, list_releases

    with user_errors(), settings.engine().connect() as conn:
        rows = list_releases(conn)
        attempt = last_publish_attempt(conn)
    if as_json:
        current = next((r["release_no"] for r in rows if r["is_current"]), None)
        print_json({"current": current, "releases": rows, "last_attempt": attempt})
        return
    table = Table("release", f"发布 published{TIME_HEADER}", "masters", "records", "validation run", "current",
                  f"撤回 withdrawn{TIME_HEADER}")
    for r in rows:
        table.add_row(str(r["release_no"]), local_time(r["published_at"], labelled=False), str(r["master_count"]),
                      str(r["record_count"]), str(r["validation_run_id"]), "✓" if r["is_current"] else "",
                      local_time(r["withdrawn_at"], labelled=False))
    console.print(table if rows else "no release has been published yet")
    if attempt and attempt["outcome"] in ("blocked", "unchanged"):
        console.print(f"last attempt {local_time(attempt['attempted_at'])}: {attempt['outcome']}"
                      f" — {attempt['reason']}", highlight=False, markup=False, soft_wrap=True)


@release_app.command("show")
def release_show(release_no: Annotated[int, typer.Argument(help="The release number (see 'hub release list').")],
                 as_json: JsonOption = False) -> None:
    """Show one release: figures, the gate run that let it through, what changed since the one before, and
    its manifest: the model, rules and code it was made with and the source batches its records came from
    (times in China Standard Time, 北京时间)."""
    from hub import settings
    from hub.errors import HubError
    from warehouse.releases import show_release

    with user_errors(), settings.engine().connect() as conn:
        try:
            r = show_release(conn, release_no)
        except LookupError as exc:
            raise HubError(str(exc)) from None
    if as_json:
        print_json(r)
        return
    state = "current" if r["is_current"] else (
        f"withdrawn {local_time(r['withdrawn_at'])} ({r['withdrawn_reason']})" if r["withdrawn_at"] else "earlier")
    console.print(f"release {r['release_no']} — {state}", highlight=False)
    console.print(f"published at:   {local_time(r['published_at'])}", highlight=False)
    console.print(f"masters:        {r['master_count']:,}  (records {r['record_count']:,})")
    console.print(f"content hash:   {r['content_hash']}")
    if r.get("ran_with_lines"):
        console.print("made with:      " + "\n                ".join(r["ran_with_lines"]), highlight=False, markup=False)
    if r["previous"] is not None:
        c = r["changes"]
        console.print(f"since release {r['previous']}: {c['added']:,} masters added, {c['removed']:,} removed,"
                      f" {c['changed']:,} changed")
        e = r["enrolment_changes"]
        console.print(f"{'':15} {e['added']:,} enrolments added, {e['removed']:,} removed,"
                      f" {e['changed']:,} changed (status, dates, address or fields)")
    gate = r["gate"]
    if gate:
        console.print(f"gate run {gate['run_id']} at {local_time(gate['started_at'])}: "
                      f"{gate['successful']} of {gate['evaluated']} expectations passed")
        if gate["docs_path"]:
            console.print(f"Data Docs:      {gate['docs_path']}", highlight=False)
    if r["suites"]:
        table = Table("suite", "rows", "expectations", "passed", "outcome")
        for s in r["suites"]:
            table.add_row(s["suite"], f"{s['row_count']:,}" if s["row_count"] is not None else "",
                          str(s["evaluated"]), str(s["successful"]), "passed" if s["success"] else "FAILED")
        console.print(table)
    if r["by_source"]:
        console.print("masters holding records of each source: "
                      + ", ".join(f"{k} {v:,}" for k, v in r["by_source"].items()), highlight=False)
    _print_manifest(r["manifest"])


def _print_manifest(m: dict) -> None:
    """The release's manifest: full checksums, the code, and the source batches its records came from."""
    from hub.cli_access import print_table

    console.print("清单 manifest:", highlight=False)
    model = m.get("model") or {}
    console.print(f"  模型 model:     {model.get('version') or 'not recorded'}  {model.get('file') or ''}"
                  f"  sha256 {model.get('sha256') or 'not recorded'}", highlight=False, markup=False)
    for name, digest in m["rules"].items():
        console.print(f"  规则 rules:     {name:<13} sha256 {digest or 'not recorded'}", highlight=False, markup=False)
    code = m.get("code") or {}
    console.print(f"  代码 code:      {code.get('version') or 'not recorded'}"
                  f"  commit {code.get('commit') or 'unknown'}", highlight=False, markup=False)
    if m["redirect_count"]:
        console.print(f"  跳转 redirects: {m['redirect_count']:,} retired master ids answer with their survivor",
                      highlight=False)
    batches = m.get("source_batches")
    if batches is None:
        console.print("  来源批次 source batches: not recorded (published before the hub recorded them)")
        return
    table = Table("来源 source", "批次 batch", "方式 mode", f"开始接收 started{TIME_HEADER}", f"完成 finished{TIME_HEADER}",
                  "收到 received", "入库 landed", "隔离 quarantined", "本版记录 records in release")
    for source, s in batches.items():
        for b in s["batches"]:
            table.add_row(source, str(b["batch_id"]), b["mode"] or "",
                          *(local_time(b[k], labelled=False) for k in ("started_at", "finished_at")),
                          *(f"{b[k]:,}" if b[k] is not None else "" for k in ("received", "landed", "quarantined")),
                          f"{b['records']:,}")
    console.print(f"  来源批次 source batches (records of the release by the batch that landed them;"
                  f" {sum(s['records'] for s in batches.values()):,} records):", highlight=False)
    print_table(table)


@release_app.command("rollback")
def release_rollback(
    release_no: Annotated[int, typer.Argument(help="The release to make current again.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")],
    actor: Annotated[str, typer.Option(help="Who asks for the rollback.")] = "",
) -> None:
    """Make an earlier release current again; the releases after it are withdrawn.

    Readers switch in one transaction. Content equal to a withdrawn release is not published again
    until the index changes.
    """
    from hub import settings
    from hub.errors import HubError
    from warehouse.releases import rollback

    with user_errors(), settings.engine().begin() as conn:
        try:
            outcome = rollback(conn, release_no, reason=reason, actor=actor or os.environ.get("USER") or None)
        except (LookupError, ValueError) as exc:
            raise HubError(str(exc)) from None
    console.print(outcome.reason, highlight=False)


@audit_app.command("run")
def audit_run(release: Annotated[int | None, typer.Option(help="Release to audit (default: the current one).")] = None,
              ) -> None:
    """Find deceased persons still paid, persons in mutually exclusive programmes, sex and birth-date
    conflicts between departments and ID numbers used by different persons; write the findings
    workbooks (one per department) and the audit report, and refresh the scorecards."""
    from hub.pipeline import audit_release, build_reports

    with user_errors():
        try:
            r = audit_release(release)
        except LookupError as exc:
            from hub.errors import HubError

            raise HubError(str(exc)) from None
        built = build_reports()
    console.print(f"release {r['release_no']}: {r['open']} open findings ({r['new']} new, {r['resolved']} resolved)")
    for kind, n in sorted(r["by_kind"].items()):
        console.print(f"  {kind:<22} {n}")
    console.print(f"report: {built['audit_report']}", highlight=False)
    forms = built["statistical_reports"]
    if forms:
        from hub import settings

        console.print(f"statistical reports: {forms} forms in {settings.hub_home() / 'reports' / str(r['release_no'])}",
                      highlight=False)
    else:
        console.print("statistical reports: none due for this release (the reporting calendar, HUB_REPORTS and "
                      "HUB_REPORTS_DUE; `hub report KIND` makes any form now)", highlight=False)


@audit_app.command("export")
def audit_export(
    department: Annotated[str, typer.Argument(help="The department whose findings to export (see warehouse/sharing.yaml).")],
    out: Annotated[Path | None, typer.Option(
        help="The XLSX file or a folder to write it in (default: the hub's export folder, HUB_EXPORT_DIR).")] = None,
    purpose: Annotated[str | None, typer.Option(help="Why (kept in the export log, audit.export_log).")] = None,
    all_findings: Annotated[bool, typer.Option("--all", help="Resolved findings too (default: open ones).")] = False,
) -> None:
    """Write one department's findings workbook (record references and masked values) for handing
    over: readable by its owner only, into the hub's export folder unless --out says otherwise, and
    recorded in the export log (who, what, why, where, how many findings)."""
    from connectors.registry import source_departments
    from hub import exports
    from hub.errors import HubError
    from reports.audit import workbook_name
    from reports.findings_workbook import write_findings_workbook
    from warehouse.sharing import department_titles

    with user_errors():
        known = department_titles()
        if department not in known:
            raise HubError(f"unknown department {department!r}; the departments are: {', '.join(sorted(known))}")
        status = None if all_findings else "open"
        with exports.recorded(purpose=purpose) as export:
            path = exports.target(out, workbook_name(department))
            path, rows = write_findings_workbook(export.conn, department, path, status=status,
                                                 sources=source_departments())
            export.record("findings", path, rows=rows, department=department,
                          arguments={"department": department, "status": status or "all"})
    console.print(f"{rows} {'' if all_findings else 'open '}findings of {department} -> {path}", highlight=False)


@grants_app.command("apply")
def grants_apply(
    sharing: Annotated[Path | None, typer.Option(help="Sharing configuration (default warehouse/sharing.yaml).")] = None,
    prefix: Annotated[str, typer.Option(help="Prefix of the roles the hub manages.")] = "hub_",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every statement run.")] = False,
) -> None:
    """Create or update each department's role, views (schema dept_<department>), column privileges and
    row-level security from the sharing configuration; what is no longer allowed is revoked."""
    from hub import settings
    from hub.errors import HubError
    from warehouse.grants import GrantsError, apply_grants
    from warehouse.sharing import SharingError, load_sharing

    with user_errors():
        try:
            with settings.engine().begin() as conn:
                report = apply_grants(conn, load_sharing(sharing), role_prefix=prefix)
        except (GrantsError, SharingError) as exc:
            raise HubError(str(exc)) from None
    for line in report.summary():
        console.print(line, highlight=False)
    if verbose:
        for statement in report.statements:
            console.print(statement, highlight=False, markup=False)


@grants_app.command("drop")
def grants_drop(prefix: Annotated[str, typer.Option(help="Prefix of the roles the hub manages.")] = "hub_") -> None:
    """Remove every role, department schema and policy the hub made under the prefix."""
    from hub import settings
    from hub.errors import HubError
    from warehouse.grants import GrantsError, drop_grants

    with user_errors():
        try:
            with settings.engine().begin() as conn:
                statements = drop_grants(conn, role_prefix=prefix)
        except GrantsError as exc:
            raise HubError(str(exc)) from None
    console.print(f"{len(statements)} statements run; the department roles under {prefix!r} are gone", highlight=False)


@key_app.command("create")
def api_key_create(
    department: Annotated[str, typer.Argument(help="The department the key reads for (see warehouse/sharing.yaml).")],
    label: Annotated[str, typer.Option(help="Who holds the key (team or system).")],
    steward: Annotated[bool, typer.Option(help="Also allow reading and deciding the review queue (API and workbench).")]
    = False,
    auditor: Annotated[bool, typer.Option(help="Also allow the workbench's findings inbox: acknowledge, assign, resolve"
                                               " or dismiss findings of every department.")] = False,
) -> None:
    """Create a key; its secret is shown this once. It also signs in to the workbench (/workbench/ of hub serve)."""
    from hub import settings
    from hub.api_keys import create_key

    scopes = [s for s, wanted in (("steward", steward), ("auditor", auditor)) if wanted]
    with user_errors(), settings.engine().begin() as conn:
        key = create_key(conn, department, label, scopes=scopes)
    console.print(f"key id {key.split('.', 1)[0]} for {department}; the key (shown only now):", highlight=False)
    print(key)


@key_app.command("list")
def api_key_list(include_revoked: Annotated[bool, typer.Option(help="Show revoked keys too.")] = False,
                 as_json: JsonOption = False) -> None:
    """List the keys (never their secrets), times in China Standard Time (北京时间). Printed in full when stdout
    is not a terminal (a file, a mail)."""
    from hub import settings
    from hub.api_keys import list_keys

    with user_errors(), settings.engine().connect() as conn:
        rows = list_keys(conn, include_revoked=include_revoked)
    if as_json:
        print_json({"keys": rows})
        return
    from hub.cli_access import print_table

    table = Table()
    table.add_column("key id", no_wrap=True)
    for name in ("department", "label", "scopes", f"created{TIME_HEADER}", f"revoked{TIME_HEADER}",
                 f"blocked{TIME_HEADER}"):
        table.add_column(name, overflow="fold")
    for r in rows:
        table.add_row(r["key_id"], r["department"], r["label"], ", ".join(r["scopes"]),
                      *(local_time(r.get(k), labelled=False) for k in ("created_at", "revoked_at", "blocked_at")))
    if rows:
        print_table(table)  # in full when not printed to a terminal: nothing cut
    else:
        console.print("no API keys")


@key_app.command("revoke")
def api_key_revoke(key_id: Annotated[str, typer.Argument(help="The key id (ak_…).")]) -> None:
    """Revoke a key at once."""
    from hub import settings
    from hub.api_keys import revoke_key

    with user_errors(), settings.engine().begin() as conn:
        revoke_key(conn, key_id)
    console.print(f"revoked {key_id}")


@key_app.command("rotate")
def api_key_rotate(key_id: Annotated[str, typer.Argument(help="The key id (ak_…).")]) -> None:
    """Replace a key with a new one (same department, label and scopes); the old one stops working."""
    from hub import settings
    from hub.api_keys import rotate_key

    with user_errors(), settings.engine().begin() as conn:
        key = rotate_key(conn, key_id)
    console.print(f"{key_id} revoked; the new key (shown only now):", highlight=False)
    print(key)


@key_app.command("unblock")
def api_key_unblock(key_id: Annotated[str, typer.Argument(help="The key id (ak_…).")]) -> None:
    """Lift the block of a key stopped for sweeping master ids (see audit.access_alert, kind sweep)."""
    from hub import settings
    from hub.api_keys import unblock_key

    with user_errors(), settings.engine().begin() as conn:
        row = unblock_key(conn, key_id)
    console.print(f"unblocked {key_id} ({row['department']}); it was blocked at {local_time(row['blocked_at'])}:"
                  f" {row['blocked_reason'] or 'no reason recorded'}", highlight=False)
