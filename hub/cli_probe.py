"""``hub probe``: probe search from the command line — the same code as ``POST /v1/persons/probe``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hub.cli_common import JsonOption, console, print_json, user_errors


def probe(
    name: Annotated[str, typer.Option(help="The person's name.")],
    birth_date: Annotated[str, typer.Option(help="Birth date: 1990-03-07, 19900307, 1990/3/7, 1990年03月07日.")],
    sex: Annotated[str | None, typer.Option(help="男/女, 1/2 or M/F (leave out when not known).")] = None,
    phone: Annotated[str | None, typer.Option(help="A phone number of the person.")] = None,
    address: Annotated[str | None, typer.Option(help="The person's address.")] = None,
    id_number: Annotated[str | None, typer.Option(
        help="The ID number as given: it may be mistyped or partial (6 to 16 digits).")] = None,
    department: Annotated[str | None, typer.Option(
        help="Answer as this department (warehouse/sharing.yaml): its fields only, read through its views.")] = None,
    purpose: Annotated[str | None, typer.Option(
        help="Required with --department: the code of an approved purpose of the department in force; the probe"
             " uses the fields it releases to the department only.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=20, help="How many candidate masters at most.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Probe search (match without create): does the index know this person? Candidate masters with the match
    probability and the comparisons that agreed; nothing is created.

    Without --department, the hub's operator's view: master ids, probabilities and every comparison, no
    person fields. With it, --purpose is required and the probe is searched, scored and answered with the
    department's fields for that purpose, as the read API answers; the probe is logged in the access log
    either way (never its values)."""
    from hub import settings
    from hub.api.deps import logged_purpose
    from hub.errors import HubError
    from hub.exports import os_user
    from hub.probe import ProbeQuery
    from hub.probe import probe as run_probe
    from warehouse.access_log import Access, log_access
    from warehouse.serving import DepartmentViewsMissing
    from warehouse.sharing import load_sharing

    with user_errors():
        sharing = None
        if department is not None:
            known = load_sharing()
            if department not in known:
                raise HubError(f"--department {department!r} is not in the sharing configuration; the departments:"
                               f" {', '.join(sorted(known))}")
            sharing = known[department]
            if purpose is None:
                raise HubError("--purpose: required with --department (the code of an approved purpose of the"
                               " department in force, warehouse/purposes.yaml)")
        elif purpose is not None:
            raise HubError("--purpose goes with --department: a purpose is a department's")
        query = ProbeQuery(name=name, birth_date=birth_date, sex=sex, phone=phone, address=address, id_number=id_number)
        with settings.engine().begin() as conn:
            try:
                answer = run_probe(conn, query, sharing=sharing, purpose=purpose, limit=limit)
            except DepartmentViewsMissing as missing:
                raise HubError(str(missing)) from None
            ids = [c["master_id"] for c in answer["candidates"]]
            log_access(conn, Access(endpoint="CLI hub probe", client=os_user(), department=department,
                                    purpose=logged_purpose(sharing, purpose), requested=1, results=len(ids),
                                    master_ids=ids), 200)
    if as_json:
        print_json(answer)
        return
    _print(answer, sharing is not None)


def _print(answer: dict, with_person: bool) -> None:
    console.print(f"release 第{answer['release_no']}版: {len(answer['candidates'])} candidate(s) 候选人"
                  " — nothing was created 未新建任何记录", highlight=False)
    table = Table(show_header=True)
    for header in ("#", "master id 主索引号", "probability 匹配概率", "agreed 一致的比较"):
        table.add_column(header)
    if with_person:
        table.add_column("fields 字段")
    for c in answer["candidates"]:
        agreed = "; ".join(f"{a['comparison_zh']} {a['level_zh']}" for a in c["agreed"])
        row = [str(c["rank"]), c["master_id"], f"{c['match_probability']:.4f}", agreed]
        if with_person:
            row.append(", ".join(f"{k}={v}" for k, v in c["person"].items() if v is not None))
        table.add_row(*row)
    console.print(table)
    if answer["withheld"]:
        console.print(f"withheld 未提供 (no purpose releases them 无用途授权): {', '.join(answer['withheld'])}",
                      highlight=False)
    if answer["fields_not_used"]:
        console.print(f"not used 未使用 (not released for the purpose 用途未授权): {', '.join(answer['fields_not_used'])}",
                      highlight=False)
    if answer["comparisons_withheld"]:
        console.print(f"comparisons not shown 未显示的比较: {', '.join(answer['comparisons_withheld'])}", highlight=False)
