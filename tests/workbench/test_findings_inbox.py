"""The auditors' inbox of the workbench on a published simulated county, the app as the API's own database role.

One county published and audited for the module; one browser launch with every request outside 127.0.0.1
blocked: an auditor filters the inbox, acknowledges, assigns and resolves a finding with a reason; the next
release (one pension struck off at its source, run through the pipeline as every night) still shows that
finding — it reopens — and no longer shows the struck-off one — it resolves itself. Over HTTP: a key without
the auditor scope sees its own department's findings only and cannot act (403, nothing written); a refused
step says why; every page view is in the access log; the filtered export opens with openpyxl.
"""

from __future__ import annotations

import io
import re
import secrets
from contextlib import closing

import httpx
import pytest
import sqlalchemy as sa

from hub.api_keys import create_key
from hub.audits import run_audits
from tests.helpers import empty_warehouse, publish_day0, publish_served_county
from tests.workbench.browser import artefact_path, open_browser, served_as_api_role, sign_in
from warehouse.findings import DECEASED_ACTIVE, SEX_CONFLICT, finding_id, list_findings
from warehouse.sharing import load_sharing

PREFIX = f"hub_f{secrets.token_hex(4)}_"


def _struck_off(county):
    """The next day with nothing else changing: one dead pensioner's pension stopped at the source."""
    from simulators.county import DeltaSpec

    day1 = county.next_day(DeltaSpec(births=0, deaths=0, moves=0, corrections=0, deletions=0))
    planted = county.planted_inconsistencies()
    dead = planted[(planted["kind"] == DECEASED_ACTIVE) & (planted["source"] == "rs_yanglao")].iloc[0]
    pension = day1.rolls["rs_yanglao"]
    hit = pension["record_id"] == dead["source_record_id"]
    pension.loc[hit, ["pension", "_updated"]] = ["0", day1.as_of]
    return day1, finding_id(DECEASED_ACTIVE, [("rs_yanglao", dead["source_record_id"])])


@pytest.fixture(scope="module")
def hub(engine, database_url, _served_platforms, county):
    """The day-0 county published and audited; grants of this module; the app on loopback as the API's role;
    an auditor's key and a plain key of the department owning the finding the auditor will work."""
    release = publish_day0(engine, _served_platforms, county)
    run_audits(engine, release["release_no"])
    day1, struck = _struck_off(county)
    with engine.connect() as conn:
        stored = list_findings(conn, status=None)
    assert struck in {f["finding_id"] for f in stored}
    worked = next(f for f in stored if f["kind"] == SEX_CONFLICT)
    with engine.begin() as conn:
        keys = {"auditor": create_key(conn, "civil_affairs", "county audit office", scopes=["auditor"]),
                "plain": create_key(conn, worked["department"], "a department without the auditor scope")}
    try:
        with served_as_api_role(engine, database_url, PREFIX) as base:
            yield {"base": base, "keys": keys, "engine": engine, "worked": worked, "struck": struck,
                   "day1": day1, "platforms": _served_platforms}
    finally:
        _served_platforms.advance(county)
        empty_warehouse(engine)


def _client(hub, which: str) -> httpx.Client:
    client = httpx.Client(base_url=hub["base"], timeout=30, follow_redirects=False)
    answer = client.post("/workbench/login", data={"key": hub["keys"][which], "next": "/workbench/"})
    assert answer.status_code == 303
    return client


def _csrf(html: str) -> str:
    return html.split('name="csrf" value="')[1].split('"')[0]


def _events(engine, fid: str | None = None) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT finding_id, action, to_status, actor FROM audit.finding_event"
            " WHERE :f IS NULL OR finding_id = :f ORDER BY event_id"), {"f": fid})]


def _log_since(engine, since: int) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT endpoint, key_id, status, results FROM audit.access_log WHERE access_id > :a ORDER BY access_id"),
            {"a": since})]


def _last_access(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT coalesce(max(access_id), 0) FROM audit.access_log")).scalar_one()


def test_a_key_without_the_auditor_scope_sees_its_department_only_and_cannot_act(hub):
    engine, worked = hub["engine"], hub["worked"]
    own = worked["department"]
    key_id = hub["keys"]["plain"].split(".")[0]
    with engine.connect() as conn:
        mine = {f["finding_id"] for f in list_findings(conn, department=own, status=("open", "acknowledged", "assigned"))}
        other = next(f["finding_id"] for f in list_findings(conn, status=None) if f["department"] != own)
    since, events = _last_access(engine), _events(engine)
    with closing(_client(hub, "plain")) as client:
        for query in ("", f"?department={next(iter({'civil_affairs', 'health', 'social_security'} - {own}))}"):
            answer = client.get(f"/workbench/findings{query}")
            assert answer.status_code == 200 and "只读" in answer.text
            assert set(re.findall(r'data-finding="(F[0-9A-F]{15})"', answer.text)) == mine
            assert 'name="department"' not in answer.text  # no department filter to choose another's
        detail = client.get(f"/workbench/findings/{worked['finding_id']}")
        assert detail.status_code == 200 and "<form class=\"card\"" not in detail.text and "证据" in detail.text
        assert client.get(f"/workbench/findings/{other}").status_code == 404
        token = _csrf(detail.text)
        refused = client.post(f"/workbench/findings/{worked['finding_id']}/acknowledge", data={"csrf": token})
        assert refused.status_code == 403 and "auditor" in refused.text
    assert _events(engine) == events  # nothing written
    fid = worked["finding_id"]
    assert _log_since(engine, since) == [
        ("POST /workbench/login", key_id, 303, 0), ("GET /workbench/findings", key_id, 200, len(mine)),
        ("GET /workbench/findings", key_id, 200, len(mine)), (f"GET /workbench/findings/{fid}", key_id, 200, 1),
        (f"GET /workbench/findings/{other}", key_id, 404, 0), (f"POST /workbench/findings/{fid}/acknowledge", key_id,
                                                                403, 0)]


def _key_of(hub, department: str) -> str:
    """A plain key of ``department`` (made once for the module)."""
    name = f"plain:{department}"
    if name not in hub["keys"]:
        with hub["engine"].begin() as conn:
            hub["keys"][name] = create_key(conn, department, f"{department} without the auditor scope")
    return name


def _sheet_text(content: bytes) -> str:
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(content))
    return "\n".join(str(v) for sheet in book for row in sheet.iter_rows(values_only=True) for v in row if v is not None)


def test_a_department_sees_another_departments_records_by_department_and_role_and_birth_dates_by_year(hub):
    """A death registered by another department: the roll's department sees that department's title and the role
    (死亡登记), never its source, record id or status code, on the finding's page, in the list and in the export;
    the auditor sees them. A birth-date conflict: the department sees the year, the auditor the month."""
    from connectors.registry import source_departments
    from warehouse.findings import BIRTH_DATE_CONFLICT

    departments = source_departments()
    with hub["engine"].connect() as conn:
        stored = list_findings(conn, status=None)
    finding = next(f for f in stored if f["kind"] == DECEASED_ACTIVE and any(
        e.get("role") == "death_registration" and e.get("department") != f["department"] for e in f["evidence"]))
    own = finding["department"]
    theirs = [e for f in stored if f["department"] == own for e in f["evidence"]
              if "source" in e and (e.get("department") or departments[e["source"]]) != own]
    registration = next(e for e in finding["evidence"] if e["role"] == "death_registration" and e["department"] != own)
    secrets_shown = {e["source"] for e in theirs} | {e["source_record_id"] for e in theirs}
    assert registration["source"] in finding["summary"]  # the stored summary names it: the department's is rewritten
    title = load_sharing()[registration["department"]].title
    with closing(_client(hub, _key_of(hub, own))) as client:
        page = client.get(f"/workbench/findings/{finding['finding_id']}").text
        listed = client.get("/workbench/findings?status=all").text
        export = client.get("/workbench/findings/export.xlsx?status=all")
    assert export.status_code == 200
    evidence = page.split('<table id="evidence">')[1].split("</table>")[0]
    withheld = [row for row in re.findall(r"<tr data-withheld>.*?</tr>", evidence, re.DOTALL) if title in row]
    assert withheld and "死亡登记" in withheld[0] and "death registration" in withheld[0]
    assert f"registered by {title}" in page and "其他部门的记录只显示部门" in page
    for text in (page, listed, _sheet_text(export.content)):
        assert not [s for s in secrets_shown if s in text], "another department's record is named"
    assert registration["status_raw"] not in evidence
    with closing(_client(hub, "auditor")) as client:
        audited = client.get(f"/workbench/findings/{finding['finding_id']}").text
    assert f"{registration['source']} / {registration['source_record_id']}" in audited
    assert "data-withheld" not in audited and registration["source"] in audited.split('<table id="evidence">')[0]

    conflict = next(f for f in stored if f["kind"] == BIRTH_DATE_CONFLICT)
    month = re.compile(r"\b(?:19|20)\d\d-\d\d-\*\*")
    with closing(_client(hub, _key_of(hub, conflict["department"]))) as client:
        page = client.get(f"/workbench/findings/{conflict['finding_id']}").text
        export = client.get(f"/workbench/findings/export.xlsx?kind={BIRTH_DATE_CONFLICT}&status=all")
    assert re.search(r"value=(?:19|20)\d\d-\*\*-\*\*", page) and not month.search(page)
    assert "出生日期只显示年份" in page
    sheet = _sheet_text(export.content)
    assert re.search(r"(?:19|20)\d\d-\*\*-\*\*", sheet) and not month.search(sheet)
    with closing(_client(hub, "auditor")) as client:
        audited = client.get(f"/workbench/findings/{conflict['finding_id']}").text
    assert len(month.findall(audited)) >= 2  # the record's and the master's, to the month


def test_refused_steps_say_why_bad_filters_are_named_and_the_export_holds_the_filtered_rows(hub):
    from openpyxl import load_workbook

    engine = hub["engine"]
    key_id = hub["keys"]["auditor"].split(".")[0]
    with engine.connect() as conn:
        target = next(f for f in list_findings(conn, status="open") if f["finding_id"] != hub["worked"]["finding_id"])
        expected = {f["finding_id"] for f in list_findings(conn, kind=SEX_CONFLICT, status=None)}
    events = _events(engine)
    with closing(_client(hub, "auditor")) as client:
        page = client.get(f"/workbench/findings/{target['finding_id']}")
        answer = client.post(f"/workbench/findings/{target['finding_id']}/resolve",
                             data={"csrf": _csrf(page.text), "reason": "fixed_at_source"})
        assert answer.status_code == 409 and "cannot be resolved" in answer.text and "acknowledge" in answer.text
        assert client.post(f"/workbench/findings/{target['finding_id']}/acknowledge", data={}).status_code == 403
        bad = client.get("/workbench/findings?kind=nonsense")
        assert bad.status_code == 422 and "kind: unknown value" in bad.text
        export = client.get(f"/workbench/findings/export.xlsx?kind={SEX_CONFLICT}&status=all")
    assert _events(engine) == events
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(export.content))["findings"]
    header = next(i for i, row in enumerate(sheet.iter_rows(values_only=True), 1) if row[0] == "编号 Finding id")
    ids = {row[0] for row in sheet.iter_rows(min_row=header + 1, values_only=True) if row[0]}
    assert ids == expected and len(ids) > 0
    assert all(row[1].startswith("性别不一致") for row in sheet.iter_rows(min_row=header + 1, values_only=True) if row[0])
    with engine.connect() as conn:
        logged = conn.execute(sa.text("SELECT actor, kind, rows, what FROM audit.export_log ORDER BY export_id DESC"
                                      " LIMIT 1")).one()
        access = conn.execute(sa.text("SELECT endpoint, status, results FROM audit.access_log WHERE key_id = :k"
                                      " ORDER BY access_id DESC LIMIT 1"), {"k": key_id}).one()
    assert (logged.actor, logged.kind, logged.rows) == (key_id, "findings", len(expected))
    assert "kind=sex_conflict" in logged.what
    assert tuple(access) == ("GET /workbench/findings/export.xlsx", 200, len(expected))


def test_an_auditor_works_a_finding_that_reopens_when_the_next_release_shows_it_again(hub):
    engine, worked, struck = hub["engine"], hub["worked"], hub["struck"]
    fid = worked["finding_id"]
    key_id = hub["keys"]["auditor"].split(".")[0]
    since = _last_access(engine)
    with open_browser() as browser:
        page = browser.new_page()
        sign_in(page, hub["base"], hub["keys"]["auditor"], "/workbench/findings")
        assert page.url.endswith("/workbench/findings")
        page.select_option("select[name=kind]", SEX_CONFLICT)
        with page.expect_navigation():
            page.click("form.filters button[type=submit]")
        assert "kind=sex_conflict" in page.url
        page.screenshot(path=str(artefact_path("findings.png")), full_page=True)
        with page.expect_navigation():
            page.click(f"a[href='/workbench/findings/{fid}']")

        def act(action: str, **selects):
            for name, value in selects.items():
                page.select_option(f"form[data-form={action}] select[name={name}]", value)
            page.fill(f"form[data-form={action}] textarea[name=comment]", f"{action} 备注 note")
            with page.expect_navigation():
                page.click(f"form[data-form={action}] button[type=submit]")
            assert f"done={action}" in page.url, page.inner_text("main")
            assert "已记录" in page.inner_text("p[role=status]")

        act("acknowledge")
        assert "已确认" in page.inner_text("#status")
        act("assign", assigned_to=worked["department"])
        assert "已分派" in page.inner_text("#status")
        act("resolve", reason="fixed_at_source")
        assert "已解决" in page.inner_text("#status") and "已在源系统更正" in page.inner_text("#reason")
        assert page.locator("form[data-form=reopen]").count() == 1  # closed: only reopen and comment are offered
        page.screenshot(path=str(artefact_path("finding.png")), full_page=True)

        # the next release, run as every night: the struck-off pension gone, the worked finding still there
        hub["platforms"].advance(hub["day1"])
        release = publish_served_county()
        result = run_audits(engine, release["release_no"])
        assert result["reopened"] == 1 and result["resolved"] >= 1

        page.goto(f"{hub['base']}/workbench/findings?kind={SEX_CONFLICT}")
        row = page.locator(f"tr[data-finding='{fid}']")
        assert "待处理" in row.inner_text()  # back in the inbox, open
        page.goto(f"{hub['base']}/workbench/findings/{fid}")
        assert page.locator("#history tr[data-action=reopened]").count() == 1
        assert "待处理" in page.inner_text("#status")
        page.goto(f"{hub['base']}/workbench/findings/{struck}")
        assert "已解决" in page.inner_text("#status")
        assert f"release {release['release_no']}" in page.inner_text("main")
        assert page.locator("#history tr[data-action=auto_resolved]").count() == 1
    assert browser.blocked == [] and browser.console_errors == []

    assert [(a, s, who) for f, a, s, who in _events(engine, fid)] == [
        ("opened", "open", "hub"), ("acknowledged", "acknowledged", key_id), ("assigned", "assigned", key_id),
        ("resolved", "resolved", key_id), ("reopened", "open", "hub")]
    with engine.connect() as conn:
        comments = conn.execute(sa.text("SELECT comment FROM audit.finding_event WHERE finding_id = :f"
                                        " AND actor = :k ORDER BY event_id"), {"f": fid, "k": key_id}).scalars().all()
    assert comments == ["acknowledge 备注 note", "assign 备注 note", "resolve 备注 note"]
    # every page view and step is in the access log, each step as its redirect
    logged = [(e, s) for e, k, s, _ in _log_since(engine, since) if k == key_id]
    for step in ("acknowledge", "assign", "resolve"):
        assert (f"POST /workbench/findings/{fid}/{step}", 303) in logged
    assert (f"GET /workbench/findings/{struck}", 200) in logged
    assert sum(1 for e, s in logged if e == "GET /workbench/findings" and s == 200) >= 3


def test_failed_gate_expectations_are_in_the_inbox_with_their_kind_and_owner(hub):
    """A gate run (recorded as the gate records it) that fails a source's expectation and a master-index one: both
    are inbox items of kind gate_expectation, filterable by kind, owned by the source's department and the hub's
    data office; the owner's plain key sees its own, the item page links the suite's validation history."""
    from connectors.registry import source_departments
    from hub.audits import refresh_gate_findings
    from warehouse.audit import record_gate_run
    from warehouse.findings import GATE_EXPECTATION
    from warehouse.gate_findings import DATA_OFFICE, gate_finding_id

    engine, own = hub["engine"], hub["worked"]["department"]
    source = sorted(s for s, d in source_departments().items() if d == own)[0]
    suite, table = f"source.{source}", f"std.resident[{source}]"
    failed = {"expectation": "expect_column_values_to_be_valid_cn_ric", "table": table, "column": "id_number",
              "success": False, "observed": "5 unexpected rows", "unexpected_count": 5, "unexpected_percent": 0.5}
    counted = {"expectation": "expect_table_row_count_to_be_between", "table": "mpi.golden", "column": None,
               "success": False, "observed": "observed 0", "unexpected_count": None, "unexpected_percent": None}
    with engine.begin() as conn:
        run = record_gate_run(conn, [{"suite": suite, "success": False, "row_count": 100, "outcomes": [failed]},
                                     {"suite": "master_index", "success": False, "row_count": 0, "outcomes": [counted]}],
                              docs_path=None)
        assert refresh_gate_findings(conn, run)["new"] == 2
    mine = gate_finding_id(suite, failed["expectation"], table, "id_number")
    office = gate_finding_id("master_index", counted["expectation"], "mpi.golden", None)
    with closing(_client(hub, "auditor")) as client:
        listed = client.get(f"/workbench/findings?kind={GATE_EXPECTATION}")
        assert listed.status_code == 200 and f'<option value="{GATE_EXPECTATION}" selected>' in listed.text
        assert set(re.findall(r'data-finding="(F[0-9A-F]{15})"', listed.text)) == {mine, office}
        assert "发布前校验未通过" in listed.text and "数据中心 hub data office" in listed.text
        by_office = client.get(f"/workbench/findings?department={DATA_OFFICE}&status=all")
        assert set(re.findall(r'data-finding="(F[0-9A-F]{15})"', by_office.text)) == {office}
        page = client.get(f"/workbench/findings/{mine}")
        assert page.status_code == 200 and f'href="/workbench/quality/?suite={suite}"' in page.text
        assert f"last failing gate run</span>: {run}" in page.text and "5 rows (0.5%)" in page.text
    with closing(_client(hub, "plain")) as client:
        shown = set(re.findall(r'data-finding="(F[0-9A-F]{15})"', client.get("/workbench/findings").text))
        assert mine in shown and office not in shown
        assert client.get(f"/workbench/findings/{office}").status_code == 404
