"""``hub report``: statistical reports (统计报表) as XLSX forms from the published master index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hub.cli_common import console, user_errors


def _date(option: str, value: str | None):
    import datetime as dt

    from hub.errors import HubError

    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        raise HubError(f"{option} {value!r} is not a date: write YYYY-MM-DD") from None


def report(
    kind: Annotated[str | None, typer.Argument(
        help="The report kind (hub report --list shows them): dibao, gaoling, canji, yuling, liudong, births, "
             "deaths, pyramid, overlaps; see reports/statistics.yaml.")] = None,
    community: Annotated[str | None, typer.Option(
        help="A town (城关镇) or a village named with its town (城关镇东湖村); default: the whole county.")] = None,
    town: Annotated[str | None, typer.Option(help="A town: its villages with the town's 合计.")] = None,
    as_of: Annotated[str | None, typer.Option(
        help="统计时点, YYYY-MM-DD: ages are counted at it (default: the release's date).")] = None,
    since: Annotated[str | None, typer.Option(
        help="For deaths since the previous report: count after this date, YYYY-MM-DD (default: the previous "
             "release's date).")] = None,
    release: Annotated[int | None, typer.Option(help="Release to count (default: the current one).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="The XLSX file (ending in .xlsx) or a folder to write it in (default: the hub's export folder, "
             "HUB_EXPORT_DIR, where the same report made again replaces the earlier one). A file named here is "
             "not written over without --force.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", "--overwrite", help="Replace the file (and its CSV) when it exists already.")] = False,
    with_csv: Annotated[bool, typer.Option(
        "--csv", help="Write a CSV of the same lines beside the XLSX (same name, ending in .csv).")] = False,
    compare: Annotated[int | None, typer.Option(
        help="Another release to show beside this one, with the change per cell.")] = None,
    for_department: Annotated[str | None, typer.Option(
        help="The department the copy is for: the owner's copy is complete, another department's has small "
             "cells suppressed.")] = None,
    suppress: Annotated[bool | None, typer.Option(
        "--suppress/--no-suppress",
        help="Without --for-department: suppress small cells (the default) or give the owner's complete copy.")]
    = None,
    purpose: Annotated[str | None, typer.Option(help="Why the report is made (kept in the export log).")] = None,
    list_kinds: Annotated[bool, typer.Option("--list", help="List the kinds (id, title, owner) and stop.")] = False,
) -> None:
    """Write a statistical report (统计报表) as a government form (XLSX) counted from the published master
    index: title, 填报单位, 统计时点, release, header rows, 小计 per town, 合计 and the sign-off lines.
    A copy for a department other than the kind's owner has its small cells suppressed. The file is
    written into the hub's export folder unless --out says otherwise, and recorded in the export log."""
    from connectors.registry import load_registry
    from hub import exports
    from hub.errors import HubError
    from reports import statistics

    with user_errors():
        if list_kinds or kind is None:
            for name, title, owner in statistics.list_kinds():
                console.print(f"{name:<10} {title}　{owner}", highlight=False)
            if kind is None and not list_kinds:
                raise HubError("name a report kind (the choices are listed above)")
            return
        day, after = _date("--as-of", as_of), _date("--since", since)
        statistics.shipped_statistics().check_sources(load_registry())
        with exports.recorded(purpose=purpose) as export:
            result = statistics.make_report(
                export.conn, kind, out or exports.private_dir(), community=community, town=town, release_no=release,
                as_of=day, since=after, compare=compare, for_department=for_department, suppress=suppress,
                with_csv=with_csv, overwrite=force or out is None)  # the hub's own export folder: the same
            # report made again replaces the earlier one; a file named with --out is never replaced unasked
            # the department the copy is for: the one named, the owner for its complete copy, else nobody named
            recipient = for_department or (None if result.suppressed else result.owner)
            for path in result.paths:
                export.record("report", path, rows=result.total, department=recipient,
                              arguments={"kind": kind, "community": community or town or "全县",
                                         "release": result.release_no, "as_of": result.as_of.isoformat(),
                                         "compare": compare, "suppressed": result.suppressed, "owner": result.owner,
                                         "for_department": recipient or "未指定(unnamed)"})
    console.print(result.summary(), highlight=False)
