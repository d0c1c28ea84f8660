"""Failed gate expectations in the auditors' inbox, against the session's real PostgreSQL: gate runs recorded as
the gate records them (audit.validation_run/suite/result), then refreshed as the gate step does after each run
(hub.audits.refresh_gate_findings, the call hub.pipeline.run_gate makes in the run's transaction). The audits'
refresh and the gate's each move only their own kinds; the reports count every finding not closed."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from hub.audits import refresh_gate_findings
from warehouse.audit import record_gate_run
from warehouse.finding_lifecycle import AUTO_REASON, finding_rules, get_finding, history, transition
from warehouse.findings import GATE_EXPECTATION, SEX_CONFLICT, Finding, list_findings, refresh_findings
from warehouse.gate_findings import DATA_OFFICE, gate_finding_id
from warehouse.releases import publish

DEPARTMENTS = ("civil_affairs", "health", "social_security")
SOURCE = "source.mz_dibao"
TABLE = "std.resident[mz_dibao]"

# (suite, expectation, table, column, unexpected_count, unexpected_percent, observed)
RIC = (SOURCE, "expect_column_values_to_be_valid_cn_ric", TABLE, "id_number", 37, 1.234, "37 unexpected rows")
BLANK = (SOURCE, "expect_id_numbers_to_be_mostly_valid", TABLE, "id_number_status", 900, 31.0, "900 unexpected rows")
MASTERS = ("master_index", "expect_table_row_count_to_be_between", "mpi.golden", None, None, None, "observed 12")
PASSING = ("source.wj_chusheng", "expect_column_values_to_not_be_null", "std.resident[wj_chusheng]", "source_record_id",
           0, 0.0, "0 unexpected rows")


def _id(o: tuple) -> str:
    return gate_finding_id(o[0], o[1], o[2], o[3])


def _gate(engine, *failing: tuple) -> tuple[int, dict]:
    """Record one gate run with ``failing`` expectations failed (and one passing), then refresh the inbox in the
    same transaction, as the gate step does. Returns the run id and the refresh's counts."""
    outcomes = [(PASSING, True), *((o, False) for o in failing)]
    suites = {}
    for (suite, expectation, table, column, count, percent, observed), ok in outcomes:
        suites.setdefault(suite, []).append({
            "expectation": expectation, "table": table, "column": column, "success": ok, "observed": observed,
            "unexpected_count": count if not ok else 0, "unexpected_percent": percent if not ok else 0.0})
    with engine.begin() as conn:
        run_id = record_gate_run(conn, [{"suite": s, "success": all(o["success"] for o in outs), "row_count": 3000,
                                         "outcomes": outs} for s, outs in suites.items()], docs_path=None)
        return run_id, refresh_gate_findings(conn, run_id)


def _step(engine, fid: str, action: str, **kw) -> dict:
    with engine.begin() as conn:
        return transition(conn, fid, action, actor="ak_auditor", departments=(*DEPARTMENTS, DATA_OFFICE), **kw)


def _events(engine, fid: str) -> list[tuple]:
    with engine.connect() as conn:
        return [(e["action"], e["to_status"], e["release_no"], e["comment"]) for e in history(conn, fid)]


def _publish_tiny_release(engine) -> int:
    """Release 1 from ten surrogate golden rows (no personal data), published from a gate run that passed."""
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO mpi.master (master_id, anchor) SELECT 'M' || lpad(i::text, 8, '0'),"
                             " 'rec:t/' || i FROM generate_series(1, 10) i ON CONFLICT DO NOTHING"))
        conn.execute(sa.text(
            "INSERT INTO mpi.golden (master_id, name, id_number_status, sex, record_count, sources, status)"
            " SELECT 'M' || lpad(i::text, 8, '0'), 'person ' || i, 'missing', 1, 1, ARRAY['mz_dibao'], 'alive'"
            " FROM generate_series(1, 10) i"))
        run = record_gate_run(conn, [{"suite": "master_index", "success": True, "row_count": 10, "outcomes": []}],
                              docs_path=None)
        return publish(conn, run).release_no


def test_failed_expectations_become_items_that_the_next_run_resolves_or_reopens(clean_warehouse):
    engine = clean_warehouse
    run1, first = _gate(engine, RIC, MASTERS)
    assert (first["failed"], first["new"], first["resolved"], first["open"], first["release_no"]) == (2, 2, 0, 2, 0)
    with engine.connect() as conn:
        ric, masters = get_finding(conn, _id(RIC)), get_finding(conn, _id(MASTERS))
        assert get_finding(conn, _id(PASSING)) is None  # a passing expectation is no item
    # owner: the source's department (the registry's); the master index's suites: the hub's data office
    assert (ric["kind"], ric["department"], ric["status"], ric["master_id"]) == (GATE_EXPECTATION, "civil_affairs",
                                                                                 "open", None)
    assert masters["department"] == DATA_OFFICE
    assert (ric["first_release"], ric["last_release"]) == (0, 0)  # no release in force yet
    assert ric["summary"] == ("发布前校验 source.mz_dibao：expect_column_values_to_be_valid_cn_ric"
                              "（std.resident[mz_dibao].id_number）未通过，37 行（1.2%）"
                              " · suite source.mz_dibao: expect_column_values_to_be_valid_cn_ric on id_number"
                              " — 37 rows (1.2%)")
    assert masters["summary"].endswith("expect_table_row_count_to_be_between on mpi.golden — observed 12")
    assert ric["evidence"] == [{"role": "gate_expectation", "run_id": run1, "suite": SOURCE, "table": TABLE,
                                "column": "id_number", "expectation": RIC[1], "unexpected_count": 37,
                                "unexpected_percent": 1.234, "observed": "37 unexpected rows"}]
    sla = dt.timedelta(days=finding_rules().sla_days[GATE_EXPECTATION])
    assert abs(ric["due_at"] - ric["opened_at"] - sla) < dt.timedelta(minutes=1)
    assert _events(engine, _id(RIC)) == [("opened", "open", None, f"发布前校验运行 {run1} · gate run {run1}")]

    # the same expectation fails again on a later run: the same item, its evidence now the new run's, no event
    release = _publish_tiny_release(engine)
    run2, second = _gate(engine, RIC, MASTERS, BLANK)
    assert (second["new"], second["seen_again"], second["resolved"], second["release_no"]) == (1, 2, 0, release)
    with engine.connect() as conn:
        ric = get_finding(conn, _id(RIC))
    assert (ric["first_release"], ric["last_release"], ric["evidence"][0]["run_id"]) == (0, release, run2)
    assert len(_events(engine, _id(RIC))) == 1

    # an auditor dismisses the row-count item and resolves the ID-number item by hand
    _step(engine, _id(MASTERS), "dismiss", reason="legal_exception")
    _step(engine, _id(RIC), "acknowledge")
    _step(engine, _id(RIC), "resolve", reason="fixed_at_source")
    # run 3 passes the blank-ID expectation (auto-resolved), fails RIC again (reopens), MASTERS again (stays dismissed)
    run3, third = _gate(engine, RIC, MASTERS)
    assert (third["new"], third["reopened"], third["resolved"], third["open"]) == (0, 1, 1, 1)
    with engine.connect() as conn:
        ric, masters, blank = (get_finding(conn, _id(o)) for o in (RIC, MASTERS, BLANK))
    note = f"发布前校验运行 {run3} · gate run {run3}"
    assert (blank["status"], blank["closed_by"], blank["close_reason"]) == ("resolved", f"gate run {run3}", AUTO_REASON)
    assert _events(engine, _id(BLANK))[-1] == ("auto_resolved", "resolved", None, note)
    assert (ric["status"], ric["acknowledged_at"], ric["closed_by"]) == ("open", None, None)
    assert [e[0] for e in _events(engine, _id(RIC))] == ["opened", "acknowledged", "resolved", "reopened"]
    assert _events(engine, _id(RIC))[-1] == ("reopened", "open", None, note)
    assert masters["status"] == "dismissed" and masters["evidence"][0]["run_id"] == run3

    # a run that passes everything resolves what is not closed and leaves the dismissed one dismissed
    run4, fourth = _gate(engine)
    assert (fourth["failed"], fourth["resolved"], fourth["open"]) == (0, 1, 0)
    with engine.connect() as conn:
        assert get_finding(conn, _id(RIC))["closed_by"] == f"gate run {run4}"
        assert get_finding(conn, _id(MASTERS))["status"] == "dismissed"
        # gate items are not counted per release (audit.finding_count is the audits' trend)
        assert conn.execute(sa.text("SELECT count(*) FROM audit.finding_count WHERE kind = :k"),
                            {"k": GATE_EXPECTATION}).scalar_one() == 0
        # and the inbox filter by kind finds them
        assert {f["finding_id"] for f in list_findings(conn, kind=GATE_EXPECTATION, status=None)} == {
            _id(RIC), _id(MASTERS), _id(BLANK)}


def test_the_audits_and_the_gate_each_move_only_their_own_kinds(clean_warehouse):
    engine = clean_warehouse
    audit = Finding(SEX_CONFLICT, "health", "M00000001", (("wj_chusheng", "R1"),), "摘要 summary",
                    ({"role": "disagreeing_record", "source": "wj_chusheng", "source_record_id": "R1"},))
    with engine.begin() as conn:
        refresh_findings(conn, 1, [audit], DEPARTMENTS)
    _gate(engine, RIC)
    # a release whose audit finds nothing resolves the audit finding, not the gate item
    with engine.begin() as conn:
        audited = refresh_findings(conn, 2, [], DEPARTMENTS)
        assert audited["resolved"] == 1
        assert get_finding(conn, audit.finding_id)["status"] == "resolved"
        assert get_finding(conn, _id(RIC))["status"] == "open"
        assert audited["open"] == 1  # what is not closed, of every kind
    # the audit finding shows again; a gate run that passes everything resolves the gate item only
    with engine.begin() as conn:
        refresh_findings(conn, 3, [audit], DEPARTMENTS)
    _, gated = _gate(engine)
    assert gated["resolved"] == 1
    with engine.connect() as conn:
        assert get_finding(conn, audit.finding_id)["status"] == "open"
        assert get_finding(conn, _id(RIC))["status"] == "resolved"
    # the audits' refresh stores the audits' kinds only
    stray = Finding(GATE_EXPECTATION, "health", None, (("x", "y"),), "s", ())
    with pytest.raises(ValueError, match="audits' kinds only"), engine.begin() as conn:
        refresh_findings(conn, 4, [stray], DEPARTMENTS)


def test_reports_count_every_finding_not_closed(clean_warehouse, tmp_path):
    from openpyxl import load_workbook

    from hub.status import hub_status
    from reports.audit_report import write_audit_report
    from reports.findings_workbook import write_findings_workbook

    engine = clean_warehouse
    findings = [Finding(SEX_CONFLICT, "civil_affairs", f"M{i}", (("mz_dibao", f"R{i}"),), f"摘要 {i}", ())
                for i in range(4)]
    with engine.begin() as conn:
        refresh_findings(conn, 1, findings, DEPARTMENTS)
    _gate(engine, RIC)
    ids = [f.finding_id for f in findings]
    _step(engine, ids[0], "acknowledge")  # acknowledged
    _step(engine, ids[1], "acknowledge")
    _step(engine, ids[1], "assign", assigned_to="civil_affairs")  # assigned
    _step(engine, ids[2], "acknowledge")
    _step(engine, ids[2], "resolve", reason="fixed_at_source")  # closed
    # not closed: ids[0] acknowledged, ids[1] assigned, ids[3] open and the gate item (open)
    assert hub_status(engine)["open_findings"] == 4

    report = write_audit_report(engine, tmp_path).read_text(encoding="utf-8")
    assert "未解决 Open 4 · 已解决 Resolved 1" in report
    assert "<code>gate_expectation</code> 发布前校验未通过" in report

    path, rows = write_findings_workbook(engine, "civil_affairs", tmp_path / "ca.xlsx")
    book = load_workbook(path)
    listed = {r[0]: r for r in book["findings"].iter_rows(min_row=2, values_only=True)}
    assert rows == 4 and set(listed) == {ids[0], ids[1], ids[3], _id(RIC)}
    assert "gate_expectation" in [r[0] for r in book["about"].iter_rows(values_only=True)]
    _, everything = write_findings_workbook(engine, "civil_affairs", tmp_path / "all.xlsx", status=None)
    assert everything == 5
