"""The ``hub`` command."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hub.cli_airflow import airflow_app
from hub.cli_common import JsonOption, configure_logging, console, err, print_json, user_errors
from hub.cli_publish import audit_app, grants_app, key_app, release_app
from hub.cli_status import status

app = typer.Typer(help="Resident data hub: one master person index from the departmental platforms.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=True)
db_app = typer.Typer(help="The warehouse database.", no_args_is_help=True)
review_app = typer.Typer(help="The review queue: pairs a steward decides.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(review_app, name="review")
app.add_typer(release_app, name="release")
app.add_typer(grants_app, name="grants")
app.add_typer(audit_app, name="audit")
app.add_typer(key_app, name="api-key")
app.add_typer(airflow_app, name="airflow")

app.command()(status)


def _print_version(value: bool) -> None:
    if value:
        from hub.status import version_text

        print(version_text())
        raise typer.Exit()


@app.callback()
def hub_options(
    version: Annotated[bool, typer.Option("--version", help="Print the hub's version (and git commit) and stop.",
                                          callback=_print_version, is_eager=True)] = False,
) -> None:
    """Resident data hub: one master person index from the departmental platforms."""


@app.command()
def demo(
    persons: Annotated[int, typer.Option(help="Size of the simulated county population.", min=100)] = 5000,
    seed: Annotated[int, typer.Option(help="Seed of the simulated county.")] = 20261121,
) -> None:
    """Run the whole hub once: simulated platform → ingestion DAGs → master-index DAG → release."""
    from hub.demo import run_demo

    with user_errors():
        started = time.monotonic()
        s = run_demo(persons=persons, seed=seed, echo=lambda m: console.print(m, highlight=False))
    table = Table(title="Resident data hub — demo summary", show_header=True)
    table.add_column("source")
    table.add_column("raw records", justify="right")
    table.add_column("standardized", justify="right")
    for name, counts in s.records_per_source.items():
        table.add_row(name, str(counts["raw"]), str(counts["standardized"]))
    console.print(table)
    console.print(f"master persons:        {s.master_persons}")
    console.print(f"expectations:          {s.expectations_passed} passed, {s.expectations_failed} failed")
    console.print(f"release:               {s.release_no} ({s.release_outcome})")
    console.print(f"validation report:     {s.validation_report}")
    scorecard = Path(s.validation_report).parent / "scorecard.html" if s.validation_report else None
    if scorecard is not None and scorecard.is_file():
        console.print(f"quality scorecard:     {scorecard}")
    times = Table(title="Time per step", show_header=True)
    times.add_column("step")
    times.add_column("seconds", justify="right")
    for step in s.steps:
        times.add_row(f"  {step.name}" if step.part else step.name, f"{step.seconds:.1f}")
    console.print(times)
    console.print(f"finished in {time.monotonic() - started:.0f} s")
    if s.expectations_failed or s.release_no is None:
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the warehouse layers (raw, std, mpi, publish, audit)."""
    from hub.pipeline import prepare_warehouse

    with user_errors():
        rev = prepare_warehouse()
    console.print(f"warehouse at revision {rev}")


@db_app.command("url")
def db_url(as_json: JsonOption = False) -> None:
    """Print the warehouse URL, password hidden (starting the embedded server if it is the one in use)."""
    from hub import settings

    with user_errors():
        from sqlalchemy.engine import make_url

        url = make_url(settings.database_url()).render_as_string(hide_password=True)
    if as_json:
        print_json({"url": url, "embedded": not os.environ.get("HUB_DATABASE_URL")})
        return
    console.print(url, highlight=False, soft_wrap=True)


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server, if it runs."""
    from hub import settings
    from warehouse.embedded import stop_embedded

    stopped = stop_embedded(settings.hub_home() / "pg")
    console.print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


def _source_names(incomplete: str) -> list[str]:
    """Shell completion of a source name: the registered sources starting with what was typed."""
    from connectors.registry import load_registry

    try:
        return [name for name in sorted(load_registry()) if name.startswith(incomplete)]
    except Exception:  # a broken registry file must not break the user's shell
        return []


@app.command()
def simulate(
    persons: Annotated[int, typer.Option(help="Size of the simulated county population.", min=100)] = 5000,
    seed: Annotated[int, typer.Option(help="Seed of the simulated county.")] = 20261121,
    days: Annotated[int, typer.Option(help="Serve the county as it is after this many days of change.", min=0)] = 0,
) -> None:
    """Serve the simulated departmental platforms on loopback until interrupted."""
    from hub import settings
    from hub.simulation import connection_env, days_in_the_future, start_simulation

    workdir = settings.hub_home() / "sim"
    platforms = start_simulation(persons=persons, seed=seed, workdir=workdir, days=days)
    ahead = days_in_the_future(platforms.county)
    if ahead:
        err.print(f"[yellow]note:[/] day {days} of the simulated county is {platforms.county.as_of:%Y-%m-%d}, after"
                  " today: the hub quarantines update times from the future (cursor_in_future); serve at most"
                  f" --days {max(0, days - ahead)} to ingest everything", highlight=False)
    table = Table("subsystem", "department", "protocol", title=f"Simulated county, day {days}")
    table.add_column("where", overflow="fold")
    for row in platforms.where():
        table.add_row(*row)
    console.print(table)
    console.print(f"ground truth (for tests and benchmarks only): {workdir / 'truth'}")
    console.print("to reach the REST platforms, export:")
    for key, value in connection_env(platforms).items():
        console.print(f"  {key}='{value}'", highlight=False)
    console.print("press Ctrl-C to stop")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        platforms.stop()


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="Source name from the registry, e.g. mz_dibao.",
                                          autocompletion=_source_names)],
    full: Annotated[bool, typer.Option("--full", help="Extract everything, not only what changed; finds deletions.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every page or file.")] = False,
) -> None:
    """Extract one source and land it in raw (the same code the ingestion DAG runs)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from hub.pipeline import ingest_source

    configure_logging(verbose)
    with user_errors(), Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=err) as progress:
        bar = progress.add_task(source, total=None)

        def on_chunk(chunk, counts):
            progress.update(bar, total=chunk.total, advance=counts.received, description=f"{source} {chunk.label}")

        r = ingest_source(source, full=full, on_chunk=on_chunk)
    console.print(f"{source}: batch {r['batch_id']} ({r['mode']}: {r['mode_reason']}): received {r['received']}, "
                  f"landed {r['landed']}, "
                  f"quarantined {r['quarantined']}, duplicates {r['duplicates']}, tombstones {r['tombstones']}")
    if r["schema_drift"]:
        err.print(f"[yellow]schema drift:[/] columns added {r['schema_drift']['added']}, "
                  f"declared but missing {r['schema_drift']['removed']}", highlight=False)


@app.command()
def standardize(
    input: Annotated[Path, typer.Argument(help="CSV (UTF-8, GBK, GB18030) or XLSX file of resident records.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the standardized CSV.")],
    source: Annotated[str | None, typer.Option(help="Use this registered source's code maps and date formats.",
                                               autocompletion=_source_names)] = None,
    default_county: Annotated[str | None, typer.Option(help="GB/T 2260 code assumed for addresses without a county.")]
    = None,
) -> None:
    """Standardize an ad-hoc file: clean values and status codes beside the raw ones (the pipeline's code).

    The file needs the columns source, source_record_id, name, id_number, sex, birth_date, phone,
    address; other columns are carried through. A file with a header row and no records gives an
    output with the header row only (exit 0). An ID number typed into a numeric cell has lost its
    last digits: its status is precision_lost. Text starting with = + - @ is written with a leading '
    so that a spreadsheet does not run it as a formula.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from connectors.registry import get_source
    from hub.errors import HubError
    from hub.standardize_file import standardize_file

    with user_errors():
        options = {}
        if source:
            s = get_source(source)
            options = {"sex_codes": s.codes.get("sex"), "date_formats": s.date_formats or None}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err) as progress:
            bar = progress.add_task(input.name, total=None)
            try:
                result = standardize_file(input, out, default_county=default_county,
                                          on_progress=lambda done, total: progress.update(bar, completed=done, total=total),
                                          **options)
            except ValueError as exc:
                raise HubError(str(exc)) from None
    console.print(f"{result['rows']} rows ({result['encoding']}) → {out}")
    table = Table("field", "status counts")
    for key, counts in result.items():
        if key.endswith("_status"):
            table.add_row(key.removesuffix("_status"), ", ".join(f"{k} {v}" for k, v in counts.items()))
    console.print(table)


@app.command()
def link(
    inputs: Annotated[list[Path], typer.Argument(help="CSV or XLSX files with source, source_record_id, name, "
                                                      "id_number, sex, birth_date, phone, address.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the crosswalk CSV.")],
    previous: Annotated[Path | None, typer.Option(help="A crosswalk written earlier: its master ids are kept.")]
    = None,
    review_out: Annotated[Path | None, typer.Option(
        "--review-out", help="Where to write the pairs left for review (CSV): grey-zone links and links a "
                             "constraint refused, with both records' keys, master ids, probability and reason.")]
    = None,
) -> None:
    """Link resident records into master ids (the master-index DAG's matching) and write a crosswalk.

    Files with a header row and no records are accepted; with no records at all the crosswalk has
    its header row only (exit 0). The crosswalk's id_number_status says why an ID number was not used
    (precision_lost: typed into a numeric cell, its last digits are lost). Text starting with
    = + - @ is written with a leading ' so that a spreadsheet does not run it as a formula.
    --review-out writes the pairs a person should decide: reason grey_zone (probable, not certain)
    or constraint:different_id / twins / parent_child (a hard rule kept them apart).
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from hub.link_files import link_files

    with user_errors(), Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                 console=err) as progress:
        task = progress.add_task("reading and standardizing", total=None)

        def on_progress(stage, info):
            progress.update(task, description=f"{stage}: " + ", ".join(f"{k} {v}" for k, v in info.items()))

        result = link_files(inputs, out, on_progress=on_progress, previous=previous, review_out=review_out)
    kept = f", {result['masters_kept']} kept from {previous}" if previous else ""
    pairs = result["reviews"]
    where = (f" → {review_out}" if review_out else
             " (write them with --review-out FILE)" if pairs else "")
    console.print(f"{result['records']} records → {result['masters']} master ids{kept} → {out}; "
                  f"{pairs} pair{'' if pairs == 1 else 's'} for review{where}", highlight=False)
    if result["precision_lost"]:
        err.print(f"[yellow]{result['precision_lost']} ID number(s) were stored as numbers and lost digits "
                  "(id_number_status precision_lost): not used for linking; ask for the file with the ID "
                  "column formatted as text[/]", highlight=False)


@app.command()
def match(
    full: Annotated[bool, typer.Option("--full", help="Rebuild the whole index (default: incremental when possible).")]
    = False,
    incremental: Annotated[bool, typer.Option("--incremental", help="Fail rather than fall back to a full rebuild.")]
    = False,
    model: Annotated[Path | None, typer.Option(help="A model file (default: the repository's).")] = None,
    refresh_frequencies: Annotated[bool, typer.Option(
        "--refresh-frequencies", help="Recompute the name/phone/address frequencies (implies --full).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Match the warehouse's standardized records into the master index (the master-index DAG's step)."""
    from hub.errors import HubError
    from hub.pipeline import build_master_index

    configure_logging(verbose)
    with user_errors():
        if full and incremental:
            raise HubError("give --full or --incremental, not both")
        mode = "full" if full or refresh_frequencies else ("incremental" if incremental else "auto")
        with err.status("matching …") as status:
            counts = build_master_index(lambda step, info: status.update(
                f"{step}: " + ", ".join(f"{k} {v}" for k, v in info.items())), mode=mode, model_path=model,
                refresh_frequencies=refresh_frequencies)
    console.print(f"{counts['mode']} run {counts['run_id']}: {counts['records']} records, {counts['affected']} "
                  f"re-clustered, {counts['masters']} masters; {counts['masters_created']} created, "
                  f"{counts.get('masters_retired', 0)} retired, {counts['events']} events, "
                  f"{counts['reviews']} pairs for review ({counts['seconds']} s)")


@review_app.command("list")
def review_list(
    status: Annotated[str, typer.Option(help="open, decided or all.")] = "open",
    limit: Annotated[int, typer.Option(min=1)] = 50,
    reason: Annotated[str | None, typer.Option(help="Only this reason, e.g. grey_zone or constraint.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List review pairs, strongest first."""
    from hub import settings
    from hub.stewardship import list_reviews

    with user_errors(), settings.engine().connect() as conn:
        rows = list_reviews(conn, status=status, limit=limit, reason=reason)
    if as_json:
        print_json({"status": status, "reason": reason, "limit": limit, "reviews": rows})
        return
    table = Table("id", "left record", "right record", "masters", "probability", "reason", "decision")
    for r in rows:
        masters = r["master_l"] if r["master_l"] == r["master_r"] else f"{r['master_l']} / {r['master_r']}"
        table.add_row(str(r["review_id"]), r["record_key_l"], r["record_key_r"], masters or "",
                      f"{r['match_probability']:.4f}", r["review_reason"],
                      f"{r['decision']} ({r['reviewer']})" if r["decision"] else "")
    console.print(table if rows else f"no {status} review pairs")


@review_app.command("show")
def review_show(review_id: Annotated[int, typer.Argument(help="The review pair's id.")],
                as_json: JsonOption = False) -> None:
    """Show a review pair: both records (masked) and the weight of each comparison."""
    from hub import settings
    from hub.stewardship import show_review

    with user_errors(), settings.engine().connect() as conn:
        r = show_review(conn, review_id)
    if as_json:
        print_json(r)
        return
    console.print(f"review {r['review_id']}: {r['review_reason']}, match probability {r['match_probability']:.4f}"
                  + (f" — decided {r['decision']} by {r['reviewer']} at {r['decided_at']:%Y-%m-%d %H:%M}"
                     if r["decision"] else " — open"))
    table = Table("field", r["record_key_l"], r["record_key_r"])
    for field in ("master_id", "name", "id_number", "id_number_status", "sex", "birth_date", "phone",
                  "address_village", "address_house_no", "status_raw"):
        table.add_row(field, *(str(side.get(field) if side.get("present") else "(gone)") for side in (r["left"], r["right"])))
    console.print(table)
    if r["explanation"] is None:
        console.print("no per-comparison evidence is stored for this pair; hub explain --pair "
                      f"{r['record_key_l']} --pair {r['record_key_r']} scores it again")
        return
    from hub.explanation import TABLE_HEADER, table_rows
    from mpi.explain import ComparisonRow, Explanation

    e = r["explanation"]
    explained = Explanation(e["match_probability"], e["match_weight"], e["prior"]["weight"],
                            [ComparisonRow(**c) for c in e["comparisons"]])
    weights = Table(*TABLE_HEADER)
    for row in table_rows(explained):
        weights.add_row(*row)
    console.print(weights)


@review_app.command("decide")
def review_decide(
    review_id: Annotated[int, typer.Argument(help="The review pair's id.")],
    decision: Annotated[str, typer.Argument(help="match or not_a_match.")],
    reviewer: Annotated[str, typer.Option(help="Who decides (kept with the decision).")],
    comment: Annotated[str, typer.Option(help="Why.")] = "",
) -> None:
    """Decide a review pair; every later matching run honours the decision.

    A new decision on the same pair supersedes the earlier one, which stays in the history (hub history).
    A "match" that would put two people in one master (two different valid ID numbers, a parent and
    child, twins) is refused with what to do instead."""
    from hub import settings
    from hub.stewardship import decide

    with user_errors(), settings.engine().begin() as conn:
        r = decide(conn, review_id, decision.replace("-", "_"), reviewer=reviewer, comment=comment)
    replaced = f"; supersedes decision {', '.join(map(str, r['supersedes']))}" if r["supersedes"] else ""
    console.print(f"review {r['review_id']}: {r['decision']} ({r['record_key_l']} / {r['record_key_r']}), "
                  f"decision {r['decision_id']}{replaced}; the next matching run applies it")


def _decided(r: dict) -> None:
    replaced = f"; supersedes decision {', '.join(map(str, r['supersedes']))}" if r["supersedes"] else ""
    apart = f" apart from {len(r['other_keys'])} other record(s)" if r["other_keys"] else ""
    console.print(f"decision {r['decision_id']}: {r['kind']} {', '.join(r['record_keys'])}"
                  f"{' of ' + r['master_id'] if r['master_id'] else ''}{apart}{replaced}; "
                  "the next matching run applies it")


ReasonOption = Annotated[str, typer.Option(help="Why (kept in the master's history).")]
ReviewerOption = Annotated[str, typer.Option(help="Who decides (kept with the decision).")]


@review_app.command("split")
def review_split(
    master_id: Annotated[str, typer.Argument(help="The master id to split.")],
    records: Annotated[str, typer.Option(help="The records that become a master apart: SOURCE/RECORD[,SOURCE/RECORD…].")],
    reviewer: ReviewerOption,
    reason: ReasonOption,
) -> None:
    """Split a master: the listed records become a master apart from the rest, which keeps the id."""
    from hub import settings
    from hub.stewardship import split

    with user_errors(), settings.engine().begin() as conn:
        r = split(conn, master_id, records.split(","), reviewer=reviewer, reason=reason)
    _decided(r)


@review_app.command("move-out")
def review_move_out(
    record: Annotated[str, typer.Argument(help="SOURCE/RECORD, as hub history lists it.")],
    reviewer: ReviewerOption,
    reason: ReasonOption,
) -> None:
    """Move one record out of its master, on its own."""
    from hub import settings
    from hub.stewardship import move_out

    with user_errors(), settings.engine().begin() as conn:
        r = move_out(conn, record, reviewer=reviewer, reason=reason)
    _decided(r)


@review_app.command("detach-id")
def review_detach_id(
    record: Annotated[str, typer.Argument(help="SOURCE/RECORD, as hub history lists it.")],
    reviewer: ReviewerOption,
    reason: ReasonOption,
) -> None:
    """Detach a record's ID number: it belongs to someone else (matching then uses the record's other fields)."""
    from hub import settings
    from hub.stewardship import detach_id

    with user_errors(), settings.engine().begin() as conn:
        r = detach_id(conn, record, reviewer=reviewer, reason=reason)
    _decided(r)


@app.command()
def history(master_id: Annotated[str, typer.Argument(help="A master id (a retired one redirects).")],
            as_json: JsonOption = False) -> None:
    """The timeline of a master id: its records, its events with their causes, its review pairs and every
    steward decision touching it (superseded ones marked)."""
    from hub import settings
    from hub.stewardship import history as master_history

    with user_errors(), settings.engine().connect() as conn:
        h = master_history(conn, master_id)
    if as_json:
        print_json(h)
        return
    if h["redirected_from"]:
        console.print(f"{master_id} was retired: it redirects to {h['master_id']} "
                      f"(via {' → '.join(h['redirected_from'] + [h['master_id']])})")
    m = h["master"]
    console.print(f"master {m['master_id']} ({m['status']}), created {m['created_at']:%Y-%m-%d %H:%M}, "
                  f"anchor {m['anchor']}, {len(h['records'])} records")
    records = Table("source", "record", "match rule", "since")
    for r in h["records"]:
        records.add_row(r["source"], r["source_record_id"], r["match_rule"], f"{r['updated_at']:%Y-%m-%d %H:%M}")
    console.print(records)
    events = Table("when", "run", "event", "cause", "other id", "record")
    for e in h["events"]:
        record = f"{e['source']}/{e['source_record_id']}" if e["source"] else ""
        other = e["other_master_id"] if e["master_id"] in (h["master_id"], *h["redirected_from"]) else e["master_id"]
        events.add_row(f"{e['created_at']:%Y-%m-%d %H:%M}", str(e["run_id"]), e["event"], e["cause"], other or "", record)
    console.print(events)
    if h["reviews"]:
        reviews = Table("review", "pair", "reason", "decision", "reviewer", "comment")
        for r in h["reviews"]:
            reviews.add_row(str(r["review_id"]), f"{r['record_key_l']} / {r['record_key_r']}", r["review_reason"],
                            r["decision"] or "open", r["reviewer"] or "", r["comment"] or "")
        console.print(reviews)
    if h["decisions"]:
        decisions = Table("decision", "when", "kind", "records", "reviewer", "comment", "in force",
                          title="steward decisions")
        for d in h["decisions"]:
            apart = f" (apart from {', '.join(d['other_keys'])})" if d["other_keys"] else ""
            decisions.add_row(str(d["decision_id"]), f"{d['decided_at']:%Y-%m-%d %H:%M}", d["kind"],
                              " / ".join(d["record_keys"]) + apart, d["reviewer"], d["comment"] or "",
                              f"superseded by {d['superseded_by']}" if d["superseded_by"] else "yes")
        console.print(decisions)


@app.command()
def explain(
    master_id: Annotated[str | None, typer.Argument(help="A master id: explain each of its records against the first.")]
    = None,
    pair: Annotated[list[str] | None, typer.Option("--pair", help="SOURCE/RECORD_ID; give it twice.")] = None,
    html: Annotated[Path | None, typer.Option(
        help="Also write the waterfall chart of the (first) pair: a page that loads nothing; names and ID numbers"
             " masked, birth dates shown.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Why records matched: the level and weight of each comparison, for a pair of records or a master id.

    Scored as the last matching run scored them (its term-frequency snapshot), so the numbers equal
    those of hub review show and the crosswalk."""

    from hub import settings
    from hub.errors import HubError
    from hub.explanation import TABLE_HEADER, model_note, score_records, table_rows
    from mpi.explain import waterfall_page
    from warehouse.stewardship import master_records

    with user_errors():
        with settings.engine().connect() as conn:
            if pair:
                if len(pair) != 2 or not all("/" in p for p in pair):
                    raise HubError("give --pair twice, as SOURCE/RECORD_ID")
                keys = list(pair)
            elif master_id:
                keys = [f"{r['source']}/{r['source_record_id']}" for r in master_records(conn, master_id)]
                if not keys:
                    raise HubError(f"no records under master id {master_id!r}")
            else:
                raise HubError("give a master id or --pair SOURCE/RECORD_ID --pair SOURCE/RECORD_ID")
            note = model_note(conn)
            scored = [(keys[0], other, score_records(conn, keys[0], other)) for other in keys[1:]]
        first = keys[0]
        if as_json:
            print_json({"master_id": master_id, "first": first, "note": note, "pairs": [
                {"left": left, "right": right, **s.explain().to_dict()} for left, right, s in scored]})
        elif not scored:
            console.print(f"master {master_id} holds a single record: {first}")
            return
        else:
            if note:
                err.print(note)
            for left, right, s in scored:
                table = Table(*TABLE_HEADER, title=f"{left} vs {right}")
                for row in table_rows(s.explain()):
                    table.add_row(*row)
                console.print(table)
        if html and scored:
            left, right, s = scored[0]
            html.write_text(waterfall_page(s, title=f"{left} vs {right}: why they match / 两条记录为何匹配",
                                           note="Names, ID numbers, phones and house numbers are masked; birth dates"
                                                " and villages are not. 姓名、身份证号、电话、门牌已遮蔽，"
                                                "出生日期和村（社区）未遮蔽。"),
                            encoding="utf-8")
            err.print(f"waterfall chart written to {html} — it shows birth dates and villages: "
                      "keep it where personal data may be seen")


@app.command()
def train(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the candidate model (default: HUB_HOME/training/candidate_model.json).")]
    = None,
    model: Annotated[Path | None, typer.Option(
        help="The model in use, the one hub match runs with (default: the repository's).")] = None,
    accept: Annotated[bool, typer.Option(
        "--accept", help="Replace the model in use with the candidate, after the summary.")] = False,
    charts: Annotated[Path | None, typer.Option(
        help="Folder for model_charts.html, the m/u and match-weight charts (default: beside the candidate).")]
    = None,
    threshold: Annotated[float, typer.Option(
        min=0.0, help="List the levels whose match weight moved by more than this many bits.")] = 0.5,
    examples: Annotated[int, typer.Option(min=0, help="Examples of each change to show.")] = 3,
    max_u_pairs: Annotated[float, typer.Option(
        "--max-u-pairs", min=1e4, hidden=True, help="Random pairs sampled to estimate u.")] = 5e6,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print what Splink noted while training.")]
    = False,
    as_json: JsonOption = False,
) -> None:
    """Retrain the matching model into a candidate and judge it: the parameters that moved, a shadow
    run against the current index (masters that would merge, split or lose records, per department),
    and the charts as offline HTML. The model in use is replaced only with --accept (reproducible:
    fixed seeds)."""
    from hub.training import retrain

    with user_errors():
        if as_json:
            report = retrain(model=model, candidate=out, charts=charts, accept=accept, threshold=threshold,
                             max_u_pairs=max_u_pairs, examples=examples)
        else:
            with err.status("training …") as status:
                report = retrain(model=model, candidate=out, charts=charts, accept=accept, threshold=threshold,
                                 max_u_pairs=max_u_pairs, examples=examples, on_progress=status.update)
    if as_json:
        print_json(report)
        return
    _print_training(report, verbose)


def _num(value, spec: str = ".3g") -> str:
    return "—" if value is None else format(value, spec)


def _print_training(report: dict, verbose: bool) -> None:
    params, shadow = report["parameters"], report["shadow"]
    console.print(f"candidate trained on {report['records']} records → {report['candidate']}", highlight=False)
    notes = report["splink_notes"]
    if notes["not_estimated"]:
        by_comparison: dict[str, list[str]] = {}
        for n in notes["not_estimated"]:
            by_comparison.setdefault(n["comparison"], []).append(f"{n['level']} ({n['parameter']})")
        console.print(f"{len(notes['not_estimated'])} level(s) had no example among the training pairs, so Splink "
                      "left their parameter to the model's expert floors"
                      + (": " + "; ".join(f"{c}: {', '.join(v)}" for c, v in by_comparison.items()) if verbose
                         else " (--verbose lists them)"), highlight=False, markup=False)
    for note in notes["other"] if verbose else []:
        console.print(f"Splink: {note}", highlight=False, markup=False)
    if notes["other"] and not verbose:
        console.print(f"Splink noted {len(notes['other'])} other thing(s) (--verbose shows them)", highlight=False)
    console.print(f"prior (two random records match, at the warehouse's {report['records']} records): "
                  f"{_num(params['prior_old'])} → {_num(params['prior_new'])}", highlight=False)
    if params["moved"]:
        table = Table(title=f"levels whose match weight moved more than {params['threshold_bits']} bits "
                            f"({len(params['moved'])} of {params['levels_compared']})")
        for col in ("comparison", "level", "m", "u", "match weight", "change"):
            table.add_column(col, justify="right" if col in ("m", "u", "match weight", "change") else "left")
        for row in params["moved"]:
            table.add_row(row["comparison"], str(row["level"]), f"{_num(row['m_old'])} → {_num(row['m_new'])}",
                          f"{_num(row['u_old'])} → {_num(row['u_new'])}",
                          f"{_num(row['weight_old'], '.2f')} → {_num(row['weight_new'], '.2f')}",
                          _num(row["change"], "+.2f") if row["change"] is not None else row["status"])
        console.print(table)
    else:
        console.print(f"no level's match weight moved more than {params['threshold_bits']} bits "
                      f"({params['levels_compared']} levels compared)", highlight=False)
    if "skipped" in shadow:
        console.print(f"shadow run skipped: {shadow['skipped']}", highlight=False)
    else:
        console.print(f"shadow run against the current index ({shadow['records_in_index']} records, "
                      f"{shadow['masters_now']} masters → {shadow['masters_after']}): "
                      f"{shadow['masters_merging']} masters would merge ({shadow['masters_retired_by_merge']} retired), "
                      f"{shadow['masters_split']} would split ({shadow['records_split_off']} records to new masters), "
                      f"{shadow['masters_losing_records']} would lose records to another master "
                      f"({shadow['records_moved']} records); {shadow['records_not_in_index']} records not in the "
                      f"index yet; {shadow['reviews']} pairs for review", highlight=False)
        table = Table(title="per department (current masters with a record of the department)")
        table.add_column("department", no_wrap=True)
        for col in ("records", "masters", "merge", "split", "lose records", "records changing"):
            table.add_column(col, justify="right")
        for dept, c in shadow["per_department"].items():
            table.add_row(dept, str(c["records"]), str(c["masters"]), str(c["masters_merging"]),
                          str(c["masters_split"]), str(c["masters_losing_records"]), str(c["records_changing_master"]))
        console.print(table)
        ex = shadow["examples"]
        for e in ex["merge"]:
            console.print(f"  merge: {' + '.join(e['masters'])} → {e['into']}  records "
                          + "; ".join(f"{m}: {', '.join(keys)}" for m, keys in e["records"].items()), highlight=False)
        for e in ex["split"]:
            console.print(f"  split: {e['master']} keeps {', '.join(e['records_staying']) or '—'}; a new master "
                          f"takes {', '.join(e['records_leaving'])}", highlight=False)
        for e in ex["move"]:
            console.print(f"  move: {e['record']} {e['from']} → {e['to']}", highlight=False)
    console.print(f"charts (offline HTML): {report['charts']}", highlight=False)
    if report["accepted"]:
        if report["identical"]:
            console.print(f"the candidate is identical to the model in use {report['model']}: nothing replaced",
                          highlight=False)
        else:
            rebuild = ("the next hub match will be a full rebuild (the model version changes "
                       f"{report['version_in_use']} → {report['version_candidate']})"
                       if report["next_match_full_rebuild"] else "the next hub match will run with it")
            console.print(f"[green]accepted[/]: {report['model']} replaced by the candidate; {rebuild}",
                          highlight=False)
    else:
        console.print(f"the model in use {report['model']} is unchanged; hub train --accept puts the candidate "
                      "in use (training is reproducible: the same records give the same candidate)", highlight=False)


@app.command()
def ledger(
    kind: Annotated[str | None, typer.Argument(
        help="The ledger kind: dibao (低保户), canji (残疾人), yuling (育龄妇女), gaoling (高龄老人); see reports/ledgers.yaml."
    )] = None,
    community: Annotated[str | None, typer.Option(
        help="A town (城关镇) or a village named with its town (城关镇东湖村).")] = None,
    out: Annotated[Path | None, typer.Option(help="The XLSX file or a folder to write it in (default: this folder).")] = None,
    release: Annotated[int | None, typer.Option(help="Release to read (default: the current one).")] = None,
    as_of: Annotated[str | None, typer.Option(help="The ledger date ages are counted at, YYYY-MM-DD (default: today).")] = None,
    list_communities: Annotated[bool, typer.Option("--list", help="List the kinds and the communities, and stop.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: print the kinds and communities as JSON.")]
    = False,
) -> None:
    """Write a community ledger (台账) as XLSX from the published master index: who is on the roll,
    with the base data from the index, so that nobody re-enters it."""
    import datetime as dt

    from connectors.registry import load_registry
    from hub import settings
    from hub.errors import HubError
    from reports import ledgers
    from warehouse.releases import current_release

    with user_errors():
        if as_json and not list_communities:
            raise HubError("--json goes with --list: a ledger is written as XLSX")
        if list_communities and as_json:
            with settings.engine().connect() as conn:
                names = ledgers.communities(conn, release_no=release)
                current = release or (current_release(conn) or {}).get("release_no")
            print_json({"release": current, "kinds": ledgers.ledger_kinds(), "communities": names})
            return
        if list_communities or kind is None:
            for name, title in ledgers.ledger_kinds().items():
                console.print(f"{name:<10} {title}", highlight=False)
            with settings.engine().connect() as conn:
                names = ledgers.communities(conn, release_no=release)
            console.print(f"communities ({len(names)}): {' '.join(names)}", highlight=False)
            if kind is None and not list_communities:
                raise HubError("name a ledger kind and --community (the choices are listed above)")
            return
        if not community:
            raise HubError("--community is required: a town (城关镇) or a village with its town (城关镇东湖村); "
                           "'hub ledger --list' shows them")
        try:
            day = dt.date.fromisoformat(as_of) if as_of else None
        except ValueError:
            raise HubError(f"--as-of {as_of!r} is not a date: write YYYY-MM-DD") from None
        with settings.engine().connect() as conn:
            result = ledgers.generate_ledger(conn, kind, community, out, sources=load_registry(), release_no=release,
                                             as_of=day)
    console.print(result.summary(), highlight=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    rate: Annotated[float, typer.Option(help="Requests per second allowed per key (sustained).")] = 5.0,
    burst: Annotated[int, typer.Option(help="Requests a key may make at once before the rate applies.")] = 60,
    max_batch: Annotated[int, typer.Option(help="Most residents one batch check (比对) may hold.")] = 1000,
) -> None:
    """Serve the read API (OpenAPI at /openapi.json): lookups, batch checks and the review queue."""
    from hub.api import RateLimit
    from hub.api import serve as run

    console.print(f"read API on http://{host}:{port} (OpenAPI: /openapi.json); every access is logged in"
                  " audit.access_log", highlight=False)
    with user_errors():
        run(host, port, rate_limit=RateLimit(per_second=rate, burst=burst), max_batch=max_batch)


def main() -> None:  # pragma: no cover - console entry point
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(app())
