"""The lifecycle of audit findings against the session's real PostgreSQL: the hub's own steps after each
release (open, auto-resolve, reopen, a dismissed one stays dismissed) and the auditors' steps, each an event
of the finding's append-only history; illegal steps refused with a message; the rules file checked."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from warehouse.finding_lifecycle import (
    AUTO_REASON,
    FindingRulesError,
    TransitionRefused,
    finding_rules,
    get_finding,
    history,
    load_finding_rules,
    transition,
)
from warehouse.findings import DECEASED_ACTIVE, INBOX_KINDS, SEX_CONFLICT, Finding, list_findings, refresh_findings

DEPARTMENTS = ("civil_affairs", "health", "social_security")


def _finding(kind: str, record: str, department: str = "social_security") -> Finding:
    return Finding(kind, department, "M" + record, (("rs_yanglao", record),), f"摘要 summary {record}",
                   ({"role": "active_record", "source": "rs_yanglao", "source_record_id": record},))


A, B, C = _finding(DECEASED_ACTIVE, "R1"), _finding(SEX_CONFLICT, "R2", "health"), _finding(SEX_CONFLICT, "R3")


def _refresh(engine, release_no: int, findings) -> dict:
    with engine.begin() as conn:
        return refresh_findings(conn, release_no, findings, DEPARTMENTS)


def _actions(engine, fid: str) -> list[tuple]:
    with engine.connect() as conn:
        return [(e["action"], e["from_status"], e["to_status"], e["actor"]) for e in history(conn, fid)]


def _step(engine, fid, action, **kw):
    with engine.begin() as conn:
        return transition(conn, fid, action, actor="ak_test", departments=DEPARTMENTS, **kw)


def test_the_hub_opens_resolves_reopens_and_leaves_dismissed_alone(clean_warehouse):
    engine = clean_warehouse
    first = _refresh(engine, 1, [A, B, C])
    assert (first["new"], first["seen_again"], first["reopened"], first["resolved"], first["open"]) == (3, 0, 0, 0, 3)
    with engine.connect() as conn:
        a = get_finding(conn, A.finding_id)
    sla = finding_rules().sla_days
    assert a["status"] == "open" and a["opened_at"] is not None
    assert abs((a["due_at"] - a["opened_at"]) - dt.timedelta(days=sla[DECEASED_ACTIVE])) < dt.timedelta(minutes=1)
    assert _actions(engine, A.finding_id) == [("opened", None, "open", "hub")]

    # an auditor works A to acknowledged and dismisses C; release 2 shows only C
    _step(engine, A.finding_id, "acknowledge", comment="看过了 seen, call 13912345678")
    _step(engine, C.finding_id, "acknowledge")
    _step(engine, C.finding_id, "dismiss", reason="false_positive")
    second = _refresh(engine, 2, [C])
    assert (second["new"], second["seen_again"], second["reopened"], second["resolved"], second["open"]) == (0, 0, 0, 2, 0)
    with engine.connect() as conn:
        a, b, c = (get_finding(conn, f.finding_id) for f in (A, B, C))
        comment = history(conn, A.finding_id)[1]["comment"]
    assert "13912345678" not in comment and comment.startswith("看过了")
    assert (a["status"], a["closed_by"], a["close_reason"]) == ("resolved", "release 2", AUTO_REASON)
    assert (b["status"], b["closed_by"]) == ("resolved", "release 2")
    assert (c["status"], c["last_release"], c["close_reason"]) == ("dismissed", 2, "false_positive")
    assert _actions(engine, A.finding_id)[-1] == ("auto_resolved", "acknowledged", "resolved", "hub")
    assert _actions(engine, B.finding_id)[-1] == ("auto_resolved", "open", "resolved", "hub")

    # release 3 shows A again: it reopens with a new due date and its earlier steps cleared; C stays dismissed
    third = _refresh(engine, 3, [A, C])
    assert (third["new"], third["reopened"], third["resolved"], third["open"]) == (0, 1, 0, 1)
    with engine.connect() as conn:
        a = get_finding(conn, A.finding_id)
        again = conn.execute(sa.text("SELECT release_no FROM audit.finding_event WHERE finding_id = :f"
                                     " AND action = 'reopened'"), {"f": A.finding_id}).scalars().all()
    assert (a["status"], a["acknowledged_at"], a["closed_at"], a["closed_by"]) == ("open", None, None, None)
    assert a["due_at"] > a["opened_at"] and again == [3]
    assert [e[0] for e in _actions(engine, A.finding_id)] == ["opened", "acknowledged", "auto_resolved", "reopened"]
    assert [e[0] for e in _actions(engine, C.finding_id)] == ["opened", "acknowledged", "dismissed"]
    # auditing the same release again changes nothing and writes no event
    with engine.connect() as conn:
        events = conn.execute(sa.text("SELECT count(*) FROM audit.finding_event")).scalar_one()
    _refresh(engine, 3, [A, C])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit.finding_event")).scalar_one() == events
    # the history is append-only
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit.finding_event"))


def test_an_auditor_works_a_finding_and_illegal_steps_are_refused(clean_warehouse):
    engine = clean_warehouse
    _refresh(engine, 1, [A, B])
    fid = A.finding_id
    with pytest.raises(TransitionRefused, match="cannot be assigned.*allowed from acknowledged or assigned"):
        _step(engine, fid, "assign", assigned_to="health")
    with pytest.raises(TransitionRefused, match="cannot be resolved"):
        _step(engine, fid, "resolve", reason="fixed_at_source")
    assert _actions(engine, fid) == [("opened", None, "open", "hub")]  # nothing written by a refusal
    acknowledged = _step(engine, fid, "acknowledge")
    assert acknowledged["status"] == "acknowledged" and acknowledged["acknowledged_at"] is not None
    with pytest.raises(TransitionRefused, match="assign to one of the departments"):
        _step(engine, fid, "assign", assigned_to="nobody")
    assigned = _step(engine, fid, "assign", assigned_to="social_security", comment="请人社核实")
    assert (assigned["status"], assigned["assigned_to"]) == ("assigned", "social_security")
    with pytest.raises(TransitionRefused, match="needs a reason from the list"):
        _step(engine, fid, "resolve", reason="because")
    with pytest.raises(TransitionRefused, match="needs a reason"):
        _step(engine, fid, "resolve", reason=AUTO_REASON)  # the hub's own reason is not offered
    with pytest.raises(TransitionRefused, match="comment needs its text"):
        _step(engine, fid, "comment", comment="  ")
    _step(engine, fid, "comment", comment="已联系 contacted")
    done = _step(engine, fid, "resolve", reason="payment_stopped")
    assert (done["status"], done["close_reason"], done["closed_by"]) == ("resolved", "payment_stopped", "ak_test")
    with pytest.raises(TransitionRefused, match="is resolved: it cannot be acknowledged"):
        _step(engine, fid, "acknowledge")
    with pytest.raises(LookupError, match="no finding"):
        _step(engine, "Fnothing", "acknowledge")
    assert _actions(engine, fid) == [
        ("opened", None, "open", "hub"), ("acknowledged", "open", "acknowledged", "ak_test"),
        ("assigned", "acknowledged", "assigned", "ak_test"), ("commented", "assigned", "assigned", "ak_test"),
        ("resolved", "assigned", "resolved", "ak_test")]
    reopened = _step(engine, fid, "reopen", comment="源系统又改回去了")
    assert (reopened["status"], reopened["assigned_to"], reopened["close_reason"]) == ("open", None, None)

    # the inbox's filters
    with engine.connect() as conn:
        assert {f["finding_id"] for f in list_findings(conn, status=("open", "acknowledged"))} == {fid, B.finding_id}
        assert [f["finding_id"] for f in list_findings(conn, status=None, department="health")] == [B.finding_id]
        assert [f["finding_id"] for f in list_findings(conn, status=None, kind=SEX_CONFLICT)] == [B.finding_id]
        assert list_findings(conn, status=None, opened_days_ago=1) == []
        assert list_findings(conn, status=None, overdue=True) == []
        conn.execute(sa.text("UPDATE audit.finding SET due_at = now() - interval '1 day' WHERE finding_id = :f"),
                     {"f": B.finding_id})
        late = list_findings(conn, status=None, overdue=True)
        assert [f["finding_id"] for f in late] == [B.finding_id] and late[0]["overdue"] is True


@pytest.mark.parametrize(("text", "message"), [
    ("sla_days: {deceased_active: 7}\n", "sla_days.exclusive_programs: missing"),
    ("sla_days: {deceased_active: 0}\n", "sla_days.deceased_active: expected a whole number"),
    ("sla_days: {nothing: 3}\n", "sla_days.nothing: unknown kind"),
    ("colour: red\n", "colour: unknown key"),
    ("{SLA}resolve_reasons: {fixed: [只有中文]}\ndismiss_reasons: {nope: [否, not so]}\n",
     "resolve_reasons.fixed: expected \\[中文, English\\]"),
    ("{SLA}resolve_reasons: {fixed: [改, fixed]}\ndismiss_reasons: {nope: [否, not so]}\n",
     "resolve_reasons.not_detected: missing"),
])
def test_the_rules_file_names_file_and_key_at_fault(tmp_path, text, message):
    sla = "sla_days: {" + ", ".join(f"{k}: 5" for k in INBOX_KINDS) + "}\n"
    path = tmp_path / "finding_rules.yaml"
    path.write_text(text.replace("{SLA}", sla), encoding="utf-8")
    with pytest.raises(FindingRulesError, match=f"finding_rules.yaml: {message}"):
        load_finding_rules(path)


def test_the_hubs_own_rules_load():
    rules = load_finding_rules()
    assert set(rules.sla_days) == set(INBOX_KINDS)  # the audits' kinds and the gate's
    assert AUTO_REASON in rules.resolve_reasons and AUTO_REASON not in rules.reasons("resolve", offered=True)
