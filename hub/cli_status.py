"""``hub status``: what ran and where things stand."""

from __future__ import annotations

from rich.table import Table

from hub.cli_common import TIME_HEADER, JsonOption, console, err, local_time, print_json, user_errors


def status(as_json: JsonOption = False) -> None:
    """What ran and where things stand: per source the last load, its cursor and the last complete extract;
    the current release and the last publish attempt; the last gate and master-index runs; the open review
    pairs and audit findings; and where Airflow keeps its home and metadata (passwords hidden). Times in China
    Standard Time (北京时间, UTC+8)."""
    from hub.status import hub_status

    with user_errors():
        s = hub_status()
    if as_json:
        print_json(s)
        return
    w, a = s["warehouse"], s["airflow"]
    console.print(f"warehouse:       {w['url']} (schema revision {w['revision']})", highlight=False, markup=False)
    from rich import box

    table = Table(title="Sources", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("source", no_wrap=True)
    table.add_column(f"last load{TIME_HEADER}", min_width=10)
    table.add_column("outcome", min_width=9)
    for name in ("received", "landed", "quarantined", "duplicates"):
        table.add_column(name, justify="right")
    table.add_column("cursor / last file", overflow="fold", min_width=12)
    table.add_column(f"last full extract{TIME_HEADER}", min_width=10)
    failed = []
    for name, src in s["sources"].items():
        last = src["last_load"]
        label = name if src["registered"] else f"{name} (not in the registry)"
        position = src["cursor"] or src["last_file"] or ""
        if last is None:
            table.add_row(label, "never loaded", "", "", "", "", "", position, "")
            continue
        # a batch still running has no mode yet: it is set when the batch closes
        outcome = "running" if last["status"] == "running" else f"{last['status']}\n{last['mode']}"
        if last["status"] == "failed":
            failed.append((name, last["error"] or ""))
            if src["failures_since_success"] > 1:
                outcome += f"\n{src['failures_since_success']} failed loads in a row"
        table.add_row(label, local_time(last["finished_at"] or last["started_at"], labelled=False, sep="\n"), outcome,
                      f"{last['received']:,}", f"{last['landed']:,}", f"{last['quarantined']:,}", f"{last['duplicates']:,}",
                      position,
                      local_time(src["last_full_extract"], labelled=False, sep="\n") or "never")
    # piped into a file or another program, the table keeps its columns whole
    console.print(table, width=None if console.is_terminal else max(console.width, 160))
    for name, error in failed:
        err.print(f"{name}: last load failed: {error}", highlight=False, markup=False, soft_wrap=True)
    current = s["release"]["current"]
    if current:
        console.print(f"release:         {current['release_no']} (current), published {local_time(current['published_at'])},"
                      f" {current['master_count']:,} masters, {current['record_count']:,} records"
                      f" ({s['release']['count']} {'release' if s['release']['count'] == 1 else 'releases'} in all)",
                      highlight=False)
    else:
        console.print("release:         none published yet", highlight=False)
    attempt = s["last_publish_attempt"]
    if attempt:
        console.print(f"last attempt:    {local_time(attempt['attempted_at'])} {attempt['outcome']} — {attempt['reason']}",
                      highlight=False, markup=False, soft_wrap=True)
    gate = s["last_gate_run"]
    if gate:
        console.print(f"last gate run:   run {gate['run_id']} at {local_time(gate['started_at'])}: "
                      f"{'passed' if gate['success'] else 'FAILED'}, {gate['successful']} expectations passed,"
                      f" {gate['failed']} failed", highlight=False)
    else:
        console.print("last gate run:   never", highlight=False)
    run = s["last_match_run"]
    if run:
        ran = run.get("ran_with") or {}
        code = ran.get("code") or {}
        versions = ", ".join(part for part in (
            " ".join(filter(None, ("model", (ran.get("model") or {}).get("version"), f"({run['model_version']})"))),
            f"code {code['version']}" if code.get("version") else "",
            f"commit {code['commit'][:12]}" if code.get("commit") else "",
            f"Airflow run {ran['airflow']['run_id']}" if ran.get("airflow") else "") if part)
        state = (f"finished {local_time(run['finished_at'])}" if run["finished_at"]
                 else f"started {local_time(run['started_at'])}, not finished")
        console.print(f"last match run:  run {run['run_id']} ({run['mode']}) {state}, {run['records'] or 0:,} records"
                      + (f"; {versions}" if versions else ""), highlight=False, markup=False)
    else:
        console.print("last match run:  never", highlight=False)
    console.print(f"open reviews:    {s['open_reviews']:,}  (hub review list)", highlight=False)
    console.print(f"open findings:   {s['open_findings']:,}  (hub audit run)", highlight=False)
    console.print(f"airflow:         AIRFLOW_HOME={a['home']}", highlight=False, markup=False)
    console.print(f"                 metadata {a['metadata_database']}", highlight=False, markup=False)
