"""Consistency findings on hand-built releases, against the session's real PostgreSQL.

Each test writes a few masters straight into raw.record / std.resident and a release into
publish.release / publish.master_person / publish.enrolment, then detects and stores the findings.
ID numbers here are made up (right shape, no real person).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
import sqlalchemy as sa

from warehouse.findings import (
    BIRTH_DATE_CONFLICT,
    DECEASED_ACTIVE,
    EXCLUSIVE_PROGRAMS,
    KINDS,
    SEX_CONFLICT,
    SHARED_ID_NUMBER,
    AuditRules,
    AuditRulesError,
    ExclusivePair,
    detect_findings,
    finding_id,
    list_findings,
    refresh_findings,
)

DEPARTMENTS = {"mz_dibao": "civil_affairs", "mz_gaoling": "civil_affairs", "mz_canji": "civil_affairs",
               "wj_liudong": "health", "rs_yanglao": "social_security", "rs_yiliao": "social_security"}
RULES = AuditRules(
    departments=DEPARTMENTS,
    deceased_codes={"mz_gaoling": ["停发"]},
    active_codes={"mz_dibao": ["在保"], "mz_gaoling": ["正常发放"], "rs_yanglao": ["1"]},
    exclusive=(ExclusivePair("medical", "职工医保 / 居民医保", ("rs_yiliao", ("职工基本医疗保险",)),
                             ("rs_yiliao", ("城乡居民基本医疗保险",)), owner="social_security"),),
)
# made-up numbers: region 110105, birth date, sequence (odd male / even female), any check character
N_OLD_MAN = "110105194001010011"      # male, 1940-01-01
N_MAN = "110105196002020031"          # male, 1960-02-02
N_WIFE = "110105196203030042"         # female, 1962-03-03
N_SINGLE = "110105197004040062"       # female, 1970-04-04
ALL_NUMBERS = (N_OLD_MAN, N_MAN, N_WIFE, N_SINGLE)


def rec(source, srid, *, status=None, sex=None, birth=None, number=None, name="甲乙"):
    """A standardized record; the ID number's birth date and sex are derived from the made-up number."""
    values = {"source": source, "source_record_id": srid, "status_raw": status, "name": name, "name_key": name,
              "name_pinyin": name, "name_status": "valid",
              "sex": sex, "sex_status": "valid" if sex else "missing",
              "birth_date": birth, "birth_date_status": "valid" if birth else "missing",
              "id_number": number, "id_number_raw": number, "id_number_status": "valid" if number else "missing"}
    if number:
        values["id_birth_date"] = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
        values["id_sex"] = 1 if int(number[16]) % 2 else 2
        if sex and sex != values["id_sex"]:
            values["sex_status"] = "conflict_with_id"
    return values


def master(master_id, records, *, number=None, sex=None, birth=None, status="alive", status_date=None):
    return {"master_id": master_id, "records": records, "id_number": number, "sex": sex, "birth_date": birth,
            "status": status, "status_date": status_date}


def _write_std(conn, records: list[dict]) -> None:
    batch = conn.execute(sa.text("INSERT INTO raw.load_batch (source) VALUES ('test') RETURNING batch_id")).scalar_one()
    for r in records:
        conn.execute(sa.text("DELETE FROM std.resident WHERE source = :source AND source_record_id = :source_record_id"),
                     r)
        raw_id = conn.execute(sa.text(
            "INSERT INTO raw.record (source, source_record_id, content_hash, payload, batch_id, fetched_at)"
            " VALUES (:s, :r, :h, '{}', :b, now()) RETURNING record_id"),
            {"s": r["source"], "r": r["source_record_id"], "h": uuid.uuid4().hex, "b": batch}).scalar_one()
        columns = {**r, "raw_record_id": raw_id, "batch_id": batch}
        conn.execute(sa.text(f"INSERT INTO std.resident ({', '.join(columns)})"
                             f" VALUES ({', '.join(':' + c for c in columns)})"), columns)


def publish_release(engine, release_no: int, masters: list[dict]) -> None:
    """Write ``masters`` (their std records and a release of them) and make the release current."""
    with engine.begin() as conn:
        _write_std(conn, [r for m in masters for r in m["records"]])
        conn.execute(sa.text(
            "INSERT INTO publish.release (release_no, master_count, record_count, content_hash, validation_run_id)"
            " VALUES (:n, :m, :r, :h, 0)"),
            {"n": release_no, "m": len(masters), "r": sum(len(m["records"]) for m in masters), "h": uuid.uuid4().hex})
        for m in masters:
            conn.execute(sa.text(
                "INSERT INTO publish.master_person (release_no, master_id, id_number, id_number_status, sex, birth_date,"
                " status, status_date, record_count, sources)"
                " VALUES (:n, :master_id, :id_number, :st, :sex, :birth_date, :status, :status_date, :rc, :sources)"),
                {**m, "n": release_no, "st": "valid" if m["id_number"] else "missing", "rc": len(m["records"]),
                 "sources": sorted({r["source"] for r in m["records"]})})
            for r in m["records"]:
                conn.execute(sa.text(
                    "INSERT INTO publish.enrolment (release_no, master_id, source, source_record_id, department,"
                    " program, status_raw) VALUES (:n, :m, :source, :source_record_id, :d, :source, :status_raw)"),
                    {**r, "n": release_no, "m": m["master_id"], "d": DEPARTMENTS[r["source"]]})
        conn.execute(sa.text(
            "INSERT INTO publish.current_release (release_no) VALUES (:n)"
            " ON CONFLICT (singleton) DO UPDATE SET release_no = EXCLUDED.release_no"), {"n": release_no})


def day_zero() -> list[dict]:
    """One example of every kind, and a clean master."""
    return [
        # died (civil affairs' death registration) yet still on the pension and the allowance rolls
        master("M1", [rec("mz_gaoling", "GL1", status="停发", sex=1, number=N_OLD_MAN),
                      rec("rs_yanglao", "RS1", status="1", sex=1, number=N_OLD_MAN),
                      rec("mz_dibao", "DB1", status="在保", sex=1, number=N_OLD_MAN)],
               number=N_OLD_MAN, sex=1, status="deceased", status_date=dt.date(2025, 3, 9)),
        # both medical insurance schemes; and a sex code at odds with the ID number in the floating-population roll
        master("M2", [rec("rs_yiliao", "YB2a", status="职工基本医疗保险", sex=1, number=N_MAN),
                      rec("rs_yiliao", "YB2b", status="城乡居民基本医疗保险", sex=1, number=N_MAN),
                      rec("wj_liudong", "LD2", sex=2, number=N_MAN)],
               number=N_MAN, sex=1),
        # the wife; her husband's record in the disability ledger carries her number (its birth date differs)
        master("M3", [rec("rs_yanglao", "RS3", status="0", sex=2, birth=dt.date(1962, 3, 3), number=N_WIFE)],
               number=N_WIFE, sex=2, birth=dt.date(1962, 3, 3)),
        master("M4", [rec("mz_canji", "CJ4", sex=1, birth=dt.date(1960, 2, 2), number=N_WIFE, name="丙丁")],
               sex=1, birth=dt.date(1960, 2, 2)),
        # a birth date another department wrote differently (the master's comes from the ID number)
        master("M5", [rec("rs_yanglao", "RS5", status="0", sex=1, birth=dt.date(1960, 2, 2)),
                      rec("mz_canji", "CJ5", sex=1, birth=dt.date(1960, 3, 4))],
               sex=1, birth=dt.date(1960, 2, 2)),
        # alone, her own number, a wrong sex code: the matcher does not trust the number, no golden sex
        master("M6", [rec("rs_yiliao", "YB6", status="城乡居民基本医疗保险", sex=1, birth=dt.date(1970, 4, 4),
                          number=N_SINGLE)]),
        # nothing wrong: alive, one scheme, values agree
        master("M7", [rec("mz_dibao", "DB7", status="在保", sex=2), rec("rs_yanglao", "RS7", status="1", sex=2)],
               sex=2),
    ]


def _by_kind(findings):
    out = {}
    for f in findings:
        out.setdefault(f.kind, []).append(f)
    return out


def test_finding_ids_hash_kind_and_sorted_references():
    a = finding_id("sex_conflict", [("rs_yiliao", "YB1"), ("mz_dibao", "DB2")])
    assert a == finding_id("sex_conflict", [("mz_dibao", "DB2"), ("rs_yiliao", "YB1"), ("rs_yiliao", "YB1")])
    assert a != finding_id("birth_date_conflict", [("rs_yiliao", "YB1"), ("mz_dibao", "DB2")])
    assert a != finding_id("sex_conflict", [("rs_yiliao", "YB1")])
    assert a.startswith("F") and len(a) == 16
    with pytest.raises(ValueError):
        finding_id("sex_conflict", [])


@pytest.mark.parametrize(("rules", "key"), [
    (AuditRules(DEPARTMENTS, {"mz_nowhere": ["停发"]}, {}), "deceased_codes.mz_nowhere"),
    (AuditRules(DEPARTMENTS, {}, {"rs_yanglao": "1"}), "active_codes.rs_yanglao"),
    (AuditRules(DEPARTMENTS, {}, {}, (ExclusivePair("x", "x", ("rs_yiliao", ("A",)), ("rs_yiliao", ("A", "B"))),)),
     "exclusive.x"),
    (AuditRules(DEPARTMENTS, {}, {}, (ExclusivePair("x", "x", ("rs_yiliao", ("A",)), ("rs_yiliao", ("B",)),
                                                    owner="police"),)), "exclusive.x.owner"),
])
def test_rules_name_the_rule_at_fault(rules, key):
    with pytest.raises(AuditRulesError, match=key.replace(".", r"\.")):
        rules.check()


def test_detects_each_kind_with_its_owner_and_masked_evidence(clean_warehouse):
    publish_release(clean_warehouse, 1, day_zero())
    with clean_warehouse.begin() as conn:
        found = detect_findings(conn, 1, RULES)
    kinds = _by_kind(found)
    got = {(f.kind, f.department, f.master_id, f.subjects) for f in found}
    assert got == {
        (DECEASED_ACTIVE, "social_security", "M1", (("rs_yanglao", "RS1"),)),
        (DECEASED_ACTIVE, "civil_affairs", "M1", (("mz_dibao", "DB1"),)),
        (EXCLUSIVE_PROGRAMS, "social_security", "M2", (("rs_yiliao", "YB2a"), ("rs_yiliao", "YB2b"))),
        (SEX_CONFLICT, "health", "M2", (("wj_liudong", "LD2"),)),
        (SHARED_ID_NUMBER, "civil_affairs", "M4", (("mz_canji", "CJ4"),)),
        (BIRTH_DATE_CONFLICT, "civil_affairs", "M5", (("mz_canji", "CJ5"),)),
        (SEX_CONFLICT, "social_security", "M6", (("rs_yiliao", "YB6"),)),
    }, got

    dead = next(f for f in kinds[DECEASED_ACTIVE] if f.department == "social_security")
    assert [(e["role"], e.get("source_record_id")) for e in dead.evidence] == [
        ("active_record", "RS1"), ("master_status", None), ("death_registration", "GL1")]
    assert dead.evidence[1]["death_month"] == "2025-03" and "2025-03" in dead.summary
    shared = kinds[SHARED_ID_NUMBER][0]
    assert shared.evidence[0]["id_number_masked"] == "110105************"
    assert shared.evidence[0]["contradicts"] == ["birth_date", "sex"]
    assert [(e["role"], e.get("master_id"), e.get("source_record_id")) for e in shared.evidence[1:]] == [
        ("number_owner", "M3", None), ("owner_record", None, "RS3")]
    birth = kinds[BIRTH_DATE_CONFLICT][0]
    assert birth.evidence[0]["days_apart"] == 31 and birth.evidence[0]["value"] == "1960-03-**"
    lone = next(f for f in kinds[SEX_CONFLICT] if f.master_id == "M6")
    assert lone.evidence[1] == {"role": "id_number_value", "value": "女 female", "decided_by": "id_number"}

    text = json.dumps([[f.summary, list(f.evidence)] for f in found], ensure_ascii=False)
    for number in ALL_NUMBERS:
        assert number not in text and number[:17] not in text
    for name in ("甲乙", "丙丁"):
        assert name not in text


def test_refresh_keeps_ids_resolves_reopens_and_counts(clean_warehouse):
    engine = clean_warehouse

    def audit(release_no):
        with engine.begin() as conn:
            found = detect_findings(conn, release_no, RULES)
            result = refresh_findings(conn, release_no, found, set(DEPARTMENTS.values()))
        with engine.connect() as conn:
            stored = {f["finding_id"]: f for f in list_findings(conn, status=None)}
        return result, {f.finding_id: f for f in found}, stored

    masters = day_zero()
    publish_release(engine, 1, masters)
    first, found1, stored = audit(1)
    assert (first["detected"], first["new"], first["seen_again"], first["resolved"], first["open"]) == (7, 7, 0, 0, 7)
    assert all((f["status"], f["first_release"], f["last_release"]) == ("open", 1, 1) for f in stored.values())

    # release 2: the pension roll struck the dead man off; the rest stays
    masters[0]["records"][1]["status_raw"] = "0"
    publish_release(engine, 2, masters)
    second, found2, stored = audit(2)
    struck = finding_id(DECEASED_ACTIVE, [("rs_yanglao", "RS1")])
    assert set(found2) == set(found1) - {struck}
    assert (second["new"], second["seen_again"], second["resolved"], second["open"]) == (0, 6, 1, 6)
    assert (stored[struck]["status"], stored[struck]["last_release"]) == ("resolved", 1)
    assert all((f["first_release"], f["last_release"]) == (1, 2) for i, f in stored.items() if i != struck)

    # release 3: put back on the roll by mistake: the same finding reopens with its old id and history
    masters[0]["records"][1]["status_raw"] = "1"
    publish_release(engine, 3, masters)
    third, found3, stored = audit(3)
    assert set(found3) == set(found1)
    assert (third["new"], third["reopened"], third["resolved"], third["open"]) == (0, 1, 0, 7)
    assert (stored[struck]["status"], stored[struck]["first_release"], stored[struck]["last_release"]) == ("open", 1, 3)
    # auditing a release again changes nothing
    again, _, stored_again = audit(3)
    assert (again["new"], again["seen_again"], again["resolved"], again["open"]) == (0, 7, 0, 7)
    assert {i: f["status"] for i, f in stored_again.items()} == {i: f["status"] for i, f in stored.items()}

    with engine.connect() as conn:
        counts = conn.execute(sa.text(
            "SELECT release_no, kind, department, findings FROM audit.finding_count ORDER BY 1, 2, 3")).all()
    assert len(counts) == 3 * len(KINDS) * 3  # every kind and department of every release, zeros included
    per_release = {n: sum(c.findings for c in counts if c.release_no == n) for n in (1, 2, 3)}
    assert per_release == {1: 7, 2: 6, 3: 7}
    assert {(c.kind, c.department): c.findings for c in counts if c.release_no == 2}[
        DECEASED_ACTIVE, "social_security"] == 0


def test_unknown_release_is_refused(clean_warehouse):
    with clean_warehouse.begin() as conn, pytest.raises(LookupError, match="no release 9"):
        detect_findings(conn, 9, RULES)


def test_run_audits_and_exports_from_nothing_to_a_release(clean_warehouse, tmp_path):
    from openpyxl import load_workbook

    from hub.audits import run_audits
    from reports.audit import export_findings_xlsx, write_audit_report

    engine = clean_warehouse
    with pytest.raises(LookupError, match="nothing is published yet"):
        run_audits(engine, rules=RULES)
    empty = write_audit_report(engine, tmp_path / "empty")
    assert "No audited release yet" in empty.read_text(encoding="utf-8")
    book = load_workbook(export_findings_xlsx(engine, "health", tmp_path / "empty" / "health.xlsx"))
    assert book["findings"].max_row == 1  # the header only

    publish_release(engine, 1, day_zero())
    result = run_audits(engine, rules=RULES)  # the current release
    assert (result["release_no"], result["detected"], result["open"]) == (1, 7, 7)
    assert result["by_kind"] == {DECEASED_ACTIVE: 2, EXCLUSIVE_PROGRAMS: 1, SEX_CONFLICT: 2, BIRTH_DATE_CONFLICT: 1,
                                 SHARED_ID_NUMBER: 1}
    assert result["by_department"] == {"civil_affairs": 3, "health": 1, "social_security": 3}
    rows = list(load_workbook(export_findings_xlsx(engine, "civil_affairs", tmp_path / "ca.xlsx"))["findings"]
                .iter_rows(min_row=2, values_only=True))
    assert sorted(r[1] for r in rows) == [BIRTH_DATE_CONFLICT, DECEASED_ACTIVE, SHARED_ID_NUMBER]
    shared = next(r for r in rows if r[1] == SHARED_ID_NUMBER)
    assert shared[4] == "M4" and "mz_canji/CJ4 (carrying_record)" in shared[5] and "110105************" in shared[6]
    page = write_audit_report(engine, tmp_path / "report").read_text(encoding="utf-8")
    assert 'id="release-1"' in page and page.count("<tr><td><code>") >= 7
    for value in (*ALL_NUMBERS, *(n[:17] for n in ALL_NUMBERS), "甲乙", "丙丁"):
        assert value not in page
