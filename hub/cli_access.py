"""``hub access``: the read API's access log for the departments that own their use of it (谁使用谁负责).

``hub access report`` shows a department's month: per key and purpose the requests, the refused ones and
the persons returned, after saying whether the log's hash chain verifies (a report over a log changed
behind the read API's back starts with a warning). ``hub access verify`` checks the chain alone.

Tables are printed in full when stdout is not a terminal (a report sent by mail, a file): no column is
cut, however wide (:func:`print_table`).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from hub.cli_common import JsonOption, console, err, print_json, user_errors

access_app = typer.Typer(help="The read API's access log: a department's monthly report, the chain check.",
                         no_args_is_help=True)


def print_table(table: Table) -> None:
    """Print a table: fitted to a terminal, or in its full width when stdout is not one (nothing cut)."""
    if console.is_terminal:
        console.print(table)
        return
    wide = Console(width=100_000, soft_wrap=True, highlight=False)
    needed = Measurement.get(wide, wide.options, table).maximum
    Console(width=max(needed, 20), soft_wrap=True, highlight=False).print(table)


def _chain_line(ok: bool, first_bad: int | None, checked: int) -> str:
    if ok:
        return f"access log: the hash chain holds ({checked:,} rows checked); the figures below are as logged."
    return (f"WARNING: the access log's hash chain breaks at access {first_bad}: that row (or the one before it)"
            " was changed, removed or inserted outside the read API, so the figures below may not be what was"
            " logged. Keep the database as it is and tell the data office's security officer"
            " ('hub access verify' checks the chain again).")


@access_app.command("report")
def report(department: Annotated[str, typer.Option("--department", "-d", help="The department (e.g. civil_affairs).")],
           month: Annotated[str, typer.Option("--month", "-m", help="The month, YYYY-MM (China Standard Time).")],
           as_json: JsonOption = False) -> None:
    """What a department's keys read through the read API in a month: per key and purpose the requests, the
    refused ones, the answers that held persons and the distinct persons returned. The department answers
    for every use of its keys (谁使用谁负责): check that each purpose was the real reason. The report says
    first whether the access log's hash chain holds, and warns when it does not (``--json``: ``chain``)."""
    from hub import settings
    from hub.errors import HubError
    from warehouse.access_log import access_report, month_bounds, verify_chain
    from warehouse.sharing import load_sharing

    with user_errors():
        sharing = load_sharing()
        if department not in sharing:
            raise HubError(f"department {department!r} is not in the sharing configuration"
                           f" (departments: {', '.join(sorted(sharing))})")
        try:
            month_bounds(month)
        except ValueError as exc:
            raise HubError(str(exc)) from None
        with settings.engine().connect() as conn:
            ok, first_bad, checked = verify_chain(conn)
            figures = access_report(conn, department, month)
    if as_json:
        print_json({"chain": {"ok": ok, "first_bad_access_id": first_bad, "rows_checked": checked}, **figures})
        return
    console.print(_chain_line(ok, first_bad, checked), highlight=False, markup=False)
    titles = {code: p.title for code, p in sharing[department].purposes.items()}
    title = f"{sharing[department].title}: read API use in {month} (北京时间 China Standard Time)"
    rows = figures["by_key_and_purpose"]
    if not rows:
        console.print(f"{title}: no request with a key of this department.", highlight=False, markup=False)
        return
    table = Table(title=title, title_justify="left")
    table.add_column("key", no_wrap=True)
    table.add_column("key label", overflow="fold")
    table.add_column("purpose", no_wrap=True)
    for name in ("requests", "refused", "answers with persons", "persons"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(str(r["key_id"]), r["label"] or "", r["purpose"] or "(no purpose)", f"{r['requests']:,}",
                      f"{r['refused']:,}", f"{r['answers_with_persons']:,}", f"{r['persons']:,}")
    print_table(table)
    for code in sorted({r["purpose"] for r in rows if r["purpose"] in titles}):
        console.print(f"{code}: {titles[code]}", highlight=False, markup=False)
    t = figures["totals"]
    console.print(f"total: {t['requests']:,} requests, {t['refused']:,} refused, {t['persons']:,} distinct persons"
                  " returned.", highlight=False, markup=False)
    console.print("Each request was made with a key of this department, which answers for it (谁使用谁负责):"
                  " check that every purpose was the real reason, and revoke keys no longer in use"
                  " ('hub api-key revoke').", highlight=False, markup=False)


@access_app.command("verify")
def verify(as_json: JsonOption = False) -> None:
    """Check the access log's hash chain: every row must hold the hash of its content and of the row before.
    Exit code 1 names the first row that was changed, removed or inserted behind the log's back."""
    from hub import settings
    from warehouse.access_log import verify_chain

    with user_errors(), settings.engine().connect() as conn:
        ok, first_bad, checked = verify_chain(conn)
    if as_json:
        print_json({"ok": ok, "first_bad_access_id": first_bad, "rows_checked": checked})
    elif ok:
        console.print(f"access log: the hash chain holds ({checked:,} rows checked).", highlight=False)
    if not ok:
        if not as_json:
            err.print(f"access log: the hash chain breaks at access {first_bad}: that row (or the one before it)"
                      " was changed, removed or inserted outside the read API. Keep the database as it is and"
                      " tell the data office's security officer; compare with a backup to see what changed.",
                      highlight=False, markup=False)
        raise typer.Exit(1)
