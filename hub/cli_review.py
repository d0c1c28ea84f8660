"""``hub review``, ``hub history``, ``hub explain`` and ``hub train``: the steward's and the model's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hub.cli_common import TIME_HEADER, JsonOption, console, err, local_time, print_json, user_errors

review_app = typer.Typer(help="The review queue: pairs a steward decides.", no_args_is_help=True)


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
    """Show a review pair: both records (masked) and the weight of each comparison (a decision's time in China
    Standard Time, 北京时间)."""
    from hub import settings
    from hub.stewardship import show_review

    with user_errors(), settings.engine().connect() as conn:
        r = show_review(conn, review_id)
    if as_json:
        print_json(r)
        return
    console.print(f"review {r['review_id']}: {r['review_reason']}, match probability {r['match_probability']:.4f}"
                  + (f" — decided {r['decision']} by {r['reviewer']} at {local_time(r['decided_at'])}"
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


def history(master_id: Annotated[str, typer.Argument(help="A master id (a retired one redirects).")],
            as_json: JsonOption = False) -> None:
    """The timeline of a master id: its records, its events with their causes, its review pairs and every
    steward decision touching it (superseded ones marked); times in China Standard Time (北京时间, UTC+8)."""
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
    console.print(f"master {m['master_id']} ({m['status']}), created {local_time(m['created_at'])}, "
                  f"anchor {m['anchor']}, {len(h['records'])} records")
    records = Table("source", "record", "match rule", f"since{TIME_HEADER}")
    for r in h["records"]:
        records.add_row(r["source"], r["source_record_id"], r["match_rule"], local_time(r["updated_at"], labelled=False))
    console.print(records)
    events = Table(f"when{TIME_HEADER}", "run", "event", "cause", "other id", "record")
    for e in h["events"]:
        record = f"{e['source']}/{e['source_record_id']}" if e["source"] else ""
        other = e["other_master_id"] if e["master_id"] in (h["master_id"], *h["redirected_from"]) else e["master_id"]
        events.add_row(local_time(e["created_at"], labelled=False), str(e["run_id"]), e["event"], e["cause"], other or "", record)
    console.print(events)
    if h["reviews"]:
        reviews = Table("review", "pair", "reason", "decision", "reviewer", "comment")
        for r in h["reviews"]:
            reviews.add_row(str(r["review_id"]), f"{r['record_key_l']} / {r['record_key_r']}", r["review_reason"],
                            r["decision"] or "open", r["reviewer"] or "", r["comment"] or "")
        console.print(reviews)
    if h["decisions"]:
        decisions = Table("decision", f"when{TIME_HEADER}", "kind", "records", "reviewer", "comment", "in force",
                          title="steward decisions")
        for d in h["decisions"]:
            apart = f" (apart from {', '.join(d['other_keys'])})" if d["other_keys"] else ""
            decisions.add_row(str(d["decision_id"]), local_time(d["decided_at"], labelled=False), d["kind"],
                              " / ".join(d["record_keys"]) + apart, d["reviewer"], d["comment"] or "",
                              f"superseded by {d['superseded_by']}" if d["superseded_by"] else "yes")
        console.print(decisions)


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
    from hub.exports import write_export
    from mpi.explain import waterfall_page
    from schemas.masking import mask_name
    from warehouse.stewardship import master_records, resident_record

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
            names = {key: (resident_record(conn, *key.split("/", 1)) or {}).get("name") for key in keys}
        first = keys[0]
        if as_json:
            def _side(key: str) -> dict:
                return {"record": key, "name": mask_name(names[key])}

            print_json({"master_id": master_id, "first": _side(first), "note": note, "pairs": [
                {"other": _side(right), **s.explain().to_dict()} for _, right, s in scored]})
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
            page = waterfall_page(s, title=f"{left} vs {right}: why they match / 两条记录为何匹配",
                                  note="Names, ID numbers, phones and house numbers are masked; birth dates"
                                       " and villages are not. 姓名、身份证号、电话、门牌已遮蔽，出生日期和村（社区）未遮蔽。")
            # owner-only, and recorded in audit.export_log like every file with personal data, under the
            # department of the two records' sources when they share one
            from connectors.registry import source_departments

            owners = {source_departments().get(key.split("/", 1)[0]) for key in (left, right)}
            html = write_export("explain", html.name, page, out=html, rows=2,
                                department=owners.pop() if len(owners) == 1 else None,
                                arguments={"left": left, "right": right, "master_id": master_id})
            err.print(f"waterfall chart written to {html} — it shows birth dates and villages: "
                      "keep it where personal data may be seen")


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
