"""``hub changes``, ``hub release diff`` and ``hub webhook``: what changed between releases, per department."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from hub.cli_common import JsonOption, console, print_json, user_errors
from hub.cli_publish import release_app

webhook_app = typer.Typer(help="Webhooks: a department's system is sent its change events after each publish.",
                          no_args_is_help=True)
_MASKED = {"name": "mask_name", "id_number": "mask_id_number", "phone": "mask_phone"}


def _department(name: str):
    from hub.errors import HubError
    from warehouse.sharing import load_sharing

    sharing = load_sharing()
    if name not in sharing:
        raise HubError(f"--department {name!r}: not a department of the sharing configuration"
                       f" (departments: {', '.join(sorted(sharing))})")
    return sharing[name]


def _masked(values: dict | None) -> dict | None:
    """Names, ID numbers and phones masked, house numbers of addresses too: what a terminal may show."""
    from schemas import masking

    if not isinstance(values, dict):
        return values
    out = dict(values)
    for field, helper in _MASKED.items():
        if out.get(field) is not None:
            out[field] = getattr(masking, helper)(out[field])
    if out.get("address") is not None:
        out["address"] = masking.mask_house_no(out["address"])
    return out


def _masked_event(event: dict) -> dict:
    return {k: _masked(v) if k in ("person", "fields") else v for k, v in event.items()}


def _what(e: dict) -> str:
    kind = e["kind"]
    if kind == "merged":
        return f"retired, merged into {e['survivor']}"
    if kind == "split":
        return "records went to " + ", ".join(e["into"])
    if kind == "added":
        return ", ".join(f"{k}={v}" for k, v in e["person"].items() if k != "master_id" and v not in (None, []))
    if kind in ("changed", "deceased"):
        return ", ".join(f"{k}={v}" for k, v in e["fields"].items())
    if kind == "enrolment_added":
        row = e["enrolment"]
        return f"{row['source']}/{row['source_record_id']} {row.get('program') or ''} {row.get('status_raw') or ''}"
    if kind == "enrolment_moved":
        return f"{e['source']}/{e['source_record_id']} from {e['from']} to {e['to']}"
    if kind == "enrolment_removed":
        return f"{e['source']}/{e['source_record_id']}" + (f" (its master merged into {e['survivor']})"
                                                          if e.get("survivor") else "")
    if kind == "enrolment_changed":
        return f"{e['source']}/{e['source_record_id']} " + ", ".join(f"{k}={v}" for k, v in e["fields"].items())
    return ""


def changes(
    department: Annotated[str, typer.Option(help="The department (a key of warehouse/sharing.yaml).")],
    since: Annotated[int, typer.Option(help="The release the department's copy holds (0: from the first).")],
    cursor: Annotated[str | None, typer.Option(help="Resume after this event id (the last one read).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 500,
    as_json: JsonOption = False,
) -> None:
    """What changed in the index after release SINCE, as the department sees it (its view's columns):
    masters added, changed, merged, split, deceased and removed, and its enrolments. Names, ID numbers,
    phones and house numbers are masked here; departments read the full values through the read API
    (GET /v1/changes) or their webhook."""
    from hub import settings
    from hub.errors import HubError
    from warehouse.changes import FeedError, ensure_changes, read_changes

    with user_errors():
        _department(department)
        with settings.engine().begin() as conn:
            ensure_changes(conn)  # releases published before the feed existed
        with settings.engine().connect() as conn:
            try:
                page = read_changes(conn, department, since, cursor=cursor, limit=limit)
            except FeedError as exc:
                raise HubError(str(exc).replace("since_release:", "--since:").replace("cursor:", "--cursor:")
                               .replace("limit:", "--limit:")) from None
    page["events"] = [_masked_event(e) for e in page["events"]]
    if as_json:
        print_json(page)
        return
    table = Table("event", "kind", "master id", "what")
    for e in page["events"]:
        table.add_row(e["event_id"], e["kind"], e["master_id"], _what(e))
    console.print(f"{department}: changes after release {since} up to release {page['current_release']}"
                  f" — {len(page['events'])} events", highlight=False)
    if page["events"]:
        console.print(table)
    if page["next_cursor"]:
        console.print(f"more: hub changes --department {department} --since {since} --cursor {page['next_cursor']}",
                      highlight=False, markup=False)


@release_app.command("diff")
def release_diff(
    old: Annotated[int, typer.Argument(help="The earlier release.")],
    new: Annotated[int, typer.Argument(help="The later release.")],
    as_json: JsonOption = False,
) -> None:
    """The masters whose published row differs between two releases: added, removed, merged (retired id →
    survivor), split, deceased, and changed with the fields that changed (names of fields only)."""
    from hub import settings
    from hub.errors import HubError
    from warehouse.release_diff import release_diff as diff

    with user_errors(), settings.engine().connect() as conn:
        try:
            d = diff(conn, old, new)
        except LookupError as exc:
            raise HubError(str(exc)) from None
    if as_json:
        print_json(d)
        return
    c = d["counts"]
    console.print(f"release {old} → {new}: {c['differing']:,} masters differ — {c['added']:,} added,"
                  f" {c['removed']:,} removed, {c['merged']:,} merged, {c['split']:,} split,"
                  f" {c['changed']:,} changed (of which {c['deceased']:,} deceased)", highlight=False)
    table = Table("master id", "change", "detail")
    for m in d["added"]:
        table.add_row(m, "added", "")
    for m in d["removed"]:
        table.add_row(m, "removed", "")
    for m in d["merged"]:
        table.add_row(m["master_id"], "merged", f"into {m['survivor']}")
    for m in d["split"]:
        table.add_row(m["master_id"], "split", "records went to " + ", ".join(m["into"]))
    deceased = set(d["deceased"])
    for m in d["changed"]:
        table.add_row(m["master_id"], "deceased" if m["master_id"] in deceased else "changed", ", ".join(m["fields"]))
    if c["differing"]:
        console.print(table)


@webhook_app.command("add")
def webhook_add(
    department: Annotated[str, typer.Option(help="The department (a key of warehouse/sharing.yaml).")],
    url: Annotated[str, typer.Option(help="Where its events are posted: https, a public address (hosts on loopback,"
                                          " link-local, private networks and plain http only when listed in"
                                          " HUB_WEBHOOK_ALLOW_HOSTS).")],
    secret: Annotated[str, typer.Option(envvar="HUB_WEBHOOK_SECRET", prompt=True, hide_input=True,
                                        help="The signing secret agreed with the department (asked for when not"
                                             " in HUB_WEBHOOK_SECRET; never shown).")],
    purpose: Annotated[str | None, typer.Option(help="A purpose code of the department releasing 有条件 fields.")]
    = None,
) -> None:
    """Subscribe a department's system: the events of every release published from now on are posted to
    URL, signed with the secret (X-Hub-Signature-256). A second subscription replaces the first."""
    from hub import settings
    from hub.errors import HubError
    from hub.webhooks import WebhookURLError, check_url, shown_url
    from warehouse.changes import add_webhook

    with user_errors():
        sharing = _department(department)
        try:
            warnings = check_url(url)
        except WebhookURLError as exc:
            raise HubError(str(exc)) from None
        if len(secret) < 16:
            raise HubError("--secret: at least 16 characters (a random string agreed with the department)")
        if purpose is not None and sharing.purpose(purpose) is None:
            raise HubError(f"--purpose {purpose!r}: not a purpose of {department} (see warehouse/purposes.yaml)")
        with settings.engine().begin() as conn:
            row = add_webhook(conn, department, url, secret, purpose=purpose, created_by=os.environ.get("USER"))
    for warning in warnings:
        console.print(f"note: {warning}", highlight=False, markup=False)
    console.print(f"webhook of {department} → {shown_url(url)}: the events of releases after"
                  f" {row['from_release']} will be posted", highlight=False, markup=False)


@webhook_app.command("list")
def webhook_list(as_json: JsonOption = False) -> None:
    """The webhooks with their queues: events pending and delivered, and the first pending one's last try."""
    from hub import settings
    from hub.webhooks import shown_url
    from warehouse.changes import list_webhooks

    with user_errors(), settings.engine().connect() as conn:
        rows = [{**r, "url": shown_url(r["url"])} for r in list_webhooks(conn)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no webhook: departments read the feed with GET /v1/changes")
        return
    table = Table("department", "url", "purpose", "after release", "pending", "delivered", "first pending")
    for r in rows:
        head = r["head"]
        state = "" if head is None else (
            f"{head['event_id']}: {head['attempts']} attempts"
            + (f", last {('HTTP ' + str(head['last_status'])) if head['last_status'] else head['last_error']}"
               if head["attempts"] else ""))
        table.add_row(r["department"], r["url"], r["purpose"] or "", str(r["from_release"]), str(r["pending"]),
                      str(r["delivered"]), state)
    console.print(table)


@webhook_app.command("remove")
def webhook_remove(department: Annotated[str, typer.Option(help="The department whose webhook goes.")]) -> None:
    """Remove a department's webhook and the events still queued for it (the feed keeps them)."""
    from hub import settings
    from hub.errors import HubError
    from warehouse.changes import remove_webhook

    with user_errors(), settings.engine().begin() as conn:
        if not remove_webhook(conn, department):
            raise HubError(f"{department} has no webhook (see hub webhook list)")
    console.print(f"webhook of {department} removed", highlight=False)


@webhook_app.command("deliver")
def webhook_deliver(
    department: Annotated[str | None, typer.Option(help="Only this department's webhook.")] = None,
    now: Annotated[bool, typer.Option("--now", help="Try an event waiting out its backoff at once.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Post the queued events, in order, retrying failures with backoff; exits 1 when some stay queued."""
    from hub import settings
    from hub.webhooks import deliver

    with user_errors():
        results = deliver(settings.engine(), department, now=now)
    if as_json:
        print_json(results)
    else:
        for r in results:
            console.print(f"{r['department']} → {r['url']}: {r['delivered']} delivered, {r['pending']} pending"
                          + (f" — {r['problem']}" if r["problem"] else ""), highlight=False, markup=False)
        if not results:
            console.print("no webhook to deliver to")
    if any(r["pending"] for r in results):
        raise typer.Exit(1)
