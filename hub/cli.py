"""The ``hub`` command."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hub.cli_access import access_app
from hub.cli_airflow import airflow_app
from hub.cli_changes import changes, webhook_app
from hub.cli_common import JsonOption, configure_logging, console, err, print_json, user_errors
from hub.cli_findings import findings_app
from hub.cli_probe import probe
from hub.cli_publish import audit_app, grants_app, key_app, release_app
from hub.cli_report import report
from hub.cli_review import explain, history, review_app, train
from hub.cli_status import status

app = typer.Typer(help="Resident data hub: one master person index from the departmental platforms.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=True)
db_app = typer.Typer(help="The warehouse database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(review_app, name="review")
app.add_typer(release_app, name="release")
app.add_typer(grants_app, name="grants")
app.add_typer(audit_app, name="audit")
app.add_typer(findings_app, name="findings")
app.add_typer(key_app, name="api-key")
app.add_typer(airflow_app, name="airflow")
app.add_typer(access_app, name="access")
app.add_typer(webhook_app, name="webhook")

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
    backend: Annotated[str | None, typer.Option(
        "--backend", help="Where to match: duckdb (in this process) or spark (on HUB_SPARK_MASTER, needs the "
                          "spark extra and Java); the same clusters either way. Default: HUB_MATCH_BACKEND.")] = None,
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

        result = link_files(inputs, out, on_progress=on_progress, previous=previous, review_out=review_out,
                            backend=backend)
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
    backend: Annotated[str | None, typer.Option(
        "--backend", help="Where to match: duckdb (in this process) or spark (on HUB_SPARK_MASTER, needs the "
                          "spark extra and Java); the same master ids either way. Default: HUB_MATCH_BACKEND.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Match the warehouse's standardized records into the master index (the master-index DAG's step)."""
    from hub.errors import HubError
    from hub.link_files import matcher_backend
    from hub.pipeline import build_master_index

    configure_logging(verbose)
    with user_errors():
        if full and incremental:
            raise HubError("give --full or --incremental, not both")
        mode = "full" if full or refresh_frequencies else ("incremental" if incremental else "auto")
        backend, _ = matcher_backend(backend)  # no Spark here: say what to install before any work
        with err.status("matching …") as status:
            counts = build_master_index(lambda step, info: status.update(
                f"{step}: " + ", ".join(f"{k} {v}" for k, v in info.items())), mode=mode, model_path=model,
                refresh_frequencies=refresh_frequencies, backend=backend)
    console.print(f"{counts['mode']} run {counts['run_id']}: {counts['records']} records, {counts['affected']} "
                  f"re-clustered, {counts['masters']} masters; {counts['masters_created']} created, "
                  f"{counts.get('masters_retired', 0)} retired, {counts['events']} events, "
                  f"{counts['reviews']} pairs for review ({counts['seconds']} s)")


@app.command()
def ledger(
    kind: Annotated[str | None, typer.Argument(
        help="The ledger kind: dibao (低保户), canji (残疾人), yuling (育龄妇女), gaoling (高龄老人), liudong (流动人口);"
        " see reports/ledgers.yaml."
    )] = None,
    community: Annotated[str | None, typer.Option(
        help="A town (城关镇) or a village named with its town (城关镇东湖村).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="The XLSX file or a folder to write it in (default: the hub's export folder, HUB_EXPORT_DIR).")] = None,
    purpose: Annotated[str | None, typer.Option(
        help="Why the ledger is made (kept in the export log, audit.export_log).")] = None,
    release: Annotated[int | None, typer.Option(help="Release to read (default: the current one).")] = None,
    as_of: Annotated[str | None, typer.Option(help="The ledger date ages are counted at, YYYY-MM-DD (default: today).")] = None,
    list_communities: Annotated[bool, typer.Option("--list", help="List the kinds and the communities, and stop.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: print the kinds and communities as JSON.")]
    = False,
) -> None:
    """Write a community ledger (台账) as XLSX from the published master index: who is on the roll,
    with the base data from the index, so that nobody re-enters it. The file holds names and ID
    numbers: it is written readable by its owner only, into the hub's export folder unless --out
    says otherwise, and recorded in the export log (who, what, why, where, how many rows)."""
    import datetime as dt

    from connectors.registry import load_registry
    from hub import exports, settings
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
        with exports.recorded(purpose=purpose) as export:
            result = ledgers.generate_ledger(export.conn, kind, community, out or exports.private_dir(),
                                             sources=load_registry(), release_no=release, as_of=day)
            export.record("ledger", result.path, rows=result.rows,
                          department=",".join(result.departments) or None,
                          arguments={"kind": kind, "community": community, "release": result.release_no,
                                     "as_of": result.as_of.isoformat()})
    console.print(result.summary(), highlight=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    rate: Annotated[float, typer.Option(help="Requests per second allowed per key (sustained).")] = 5.0,
    burst: Annotated[int, typer.Option(help="Requests a key may make at once before the rate applies.")] = 60,
    max_batch: Annotated[int, typer.Option(help="Most residents one batch check (比对) may hold.")] = 1000,
    persons_per_key: Annotated[int, typer.Option(min=1,
        help="Persons one key may be answered per day (Asia/Shanghai), counted across every API process.")] = 2000,
    persons_per_department: Annotated[int, typer.Option(min=1,
        help="Persons one department's keys together may be answered per day.")] = 10000,
    sweep_ids: Annotated[int, typer.Option(min=1,
        help="Distinct master ids one key may look up one by one within --sweep-window before it is blocked.")]
    = 100,
    sweep_window: Annotated[float, typer.Option(min=1.0, help="Seconds of the sweep window.")] = 600.0,
) -> None:
    """Serve the read API (OpenAPI at /openapi.json, its documentation at /docs) and the workbench (/workbench/).

    The read API: lookups, batch checks, the review queue. The workbench: web pages for stewards (review queue,
    master view), auditors (findings inbox) and every department (quality pages), signed in with the
    department's API key. Both read as their own database role (hub_api, made by hub grants apply) and each
    department's views, and log every request in audit.access_log."""
    from hub.api import Quotas, RateLimit
    from hub.api import serve as run
    from hub.api_db import api_engine

    console.print(f"read API on http://{host}:{port} (OpenAPI: /openapi.json, documentation: /docs); workbench on"
                  f" http://{host}:{port}/workbench/ (sign in with a department's API key); every access is logged in"
                  " audit.access_log", highlight=False)
    with user_errors():
        quotas = Quotas(persons_per_key=persons_per_key, persons_per_department=persons_per_department,
                        sweep_ids=sweep_ids, sweep_window=sweep_window)
        run(host, port, engine=api_engine(), rate_limit=RateLimit(per_second=rate, burst=burst), max_batch=max_batch,
            quotas=quotas)


app.command()(history)
app.command()(explain)
app.command()(train)
app.command()(probe)
app.command()(changes)
app.command()(report)


def main() -> None:  # pragma: no cover - console entry point
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(app())
