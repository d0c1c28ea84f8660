"""Cross-department consistency findings on a published release (``audit.finding``, ``audit.finding_count``).

Detection is set-based SQL over one release: its enrolments (``publish.enrolment``: every source
record with its master id and department), its golden records (``publish.master_person``) and the
standardized values of its records (``std.resident``; run the audits right after the publish, as
the pipeline does, so that these are the values the release was built from). Kinds:

* ``deceased_active`` — the released golden status is ``deceased`` (civil affairs' death
  registration, by the survivorship rules) and a record of the same master is still active on a
  pension or allowance roll (the roll's own "active" codes, :attr:`AuditRules.active_codes`).
  One finding per active record; owner: the department of that roll.
* ``exclusive_programs`` — one master in both programmes of a declared mutually exclusive pair
  (:class:`ExclusivePair`, e.g. employees' and residents' basic medical insurance). One finding per
  master and pair; owner: the pair's declared owner.
* ``sex_conflict`` / ``birth_date_conflict`` — a record whose usable sex / birth date differs from
  the master's released golden value (which comes from the master's ID number first, then birth
  registration: ``mpi/survivorship.yaml``); and a record whose own valid ID number encodes its birth
  date but the other sex (the matcher does not trust such a number, so a record alone has no golden
  sex to compare with). One finding per disagreeing record; owner: its department.
* ``shared_id_number`` — a record carrying a checksum-valid ID number that is not its master's
  number and either is the number of another released master (the number's owner) or contradicts
  the record's own birth date or sex (the number cannot be this person's). One finding per record;
  owner: the department of the record carrying the number.

A finding's id is a hash of its kind and the sorted references (source, source_record_id) of the
records it is about, so the same finding keeps its id from release to release. Summaries and
evidence carry record references, codes and masked values only: never a name, never a full ID number.

:func:`refresh_findings` stores a release's findings: new ones open, those seen again get the
release and time, a resolved one seen again reopens, those not closed and not detected any more are
resolved (each step an event of the finding's history, :mod:`warehouse.finding_lifecycle`, where the
auditors' steps are too); and it writes the counts per kind and department for the release (the trend).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import sqlalchemy as sa

from schemas import dates, id_number, sex
from schemas.masking import mask_id_number
from warehouse.bulk import copy_rows, staging_table

DECEASED_ACTIVE = "deceased_active"
EXCLUSIVE_PROGRAMS = "exclusive_programs"
SEX_CONFLICT = "sex_conflict"
BIRTH_DATE_CONFLICT = "birth_date_conflict"
SHARED_ID_NUMBER = "shared_id_number"
KINDS = (DECEASED_ACTIVE, EXCLUSIVE_PROGRAMS, SEX_CONFLICT, BIRTH_DATE_CONFLICT, SHARED_ID_NUMBER)  # the audits'
#: a failed expectation of the publish gate, an item of the same inbox (:mod:`warehouse.gate_findings`)
GATE_EXPECTATION = "gate_expectation"
INBOX_KINDS = (*KINDS, GATE_EXPECTATION)  # every kind of ``audit.finding``

KIND_LABELS = {
    DECEASED_ACTIVE: ("死亡后仍在享受待遇", "deceased but still active on a roll"),
    EXCLUSIVE_PROGRAMS: ("同时参加互斥项目", "enrolled in mutually exclusive programmes"),
    SEX_CONFLICT: ("性别不一致", "sex conflicts between departments"),
    BIRTH_DATE_CONFLICT: ("出生日期不一致", "birth date conflicts between departments"),
    SHARED_ID_NUMBER: ("身份证号被他人使用", "ID number used by another person"),
    GATE_EXPECTATION: ("发布前校验未通过", "failed gate expectation"),
}
SEX_LABELS = {1: "男 male", 2: "女 female"}

FINDING_LOCK = 20261123  # one refresh of audit.finding at a time


class AuditRulesError(ValueError):
    """The audit rules name an unknown source or department, or declare a pair that cannot hold."""


@dataclass(frozen=True)
class ExclusivePair:
    """Two programmes one person may not be in at once: each side is (source, its raw status codes)."""

    name: str
    title: str
    first: tuple[str, tuple[str, ...]]
    second: tuple[str, tuple[str, ...]]
    owner: str | None = None  # the department that must fix it; default: the first side's source's department


@dataclass(frozen=True)
class AuditRules:
    """What the detection needs to know about the sources, as data.

    ``departments``: source → department (the registry's). ``deceased_codes``: source → raw status
    codes that register a death (the survivorship rules' ``vital_status``). ``active_codes``: source →
    raw status codes meaning "on the roll and receiving". ``exclusive``: mutually exclusive programmes.
    """

    departments: Mapping[str, str]
    deceased_codes: Mapping[str, Sequence[str]]
    active_codes: Mapping[str, Sequence[str]]
    exclusive: Sequence[ExclusivePair] = field(default_factory=tuple)

    def check(self) -> None:
        """Raise :class:`AuditRulesError` naming the rule at fault."""
        known = set(self.departments)
        for label, codes in (("deceased_codes", self.deceased_codes), ("active_codes", self.active_codes)):
            for source, values in codes.items():
                if source not in known:
                    raise AuditRulesError(f"audit rules: {label}.{source}: unknown source (known: {sorted(known)})")
                if isinstance(values, str) or not values:
                    raise AuditRulesError(f"audit rules: {label}.{source}: give a non-empty list of status codes")
        names = [p.name for p in self.exclusive]
        if len(set(names)) != len(names):
            raise AuditRulesError(f"audit rules: exclusive pairs named twice: {sorted(names)}")
        for pair in self.exclusive:
            for side_name, (source, codes) in (("first", pair.first), ("second", pair.second)):
                if source not in known:
                    raise AuditRulesError(f"audit rules: exclusive.{pair.name}.{side_name}: unknown source {source!r}")
                if isinstance(codes, str) or not codes:
                    raise AuditRulesError(f"audit rules: exclusive.{pair.name}.{side_name}: give a list of status codes")
            if pair.first[0] == pair.second[0] and set(pair.first[1]) & set(pair.second[1]):
                raise AuditRulesError(f"audit rules: exclusive.{pair.name}: a code is on both sides")
            if pair.owner is not None and pair.owner not in set(self.departments.values()):
                raise AuditRulesError(f"audit rules: exclusive.{pair.name}.owner: unknown department {pair.owner!r}")

    def department_of(self, source: str) -> str:
        return self.departments.get(source, "")


@dataclass(frozen=True)
class Finding:
    kind: str
    department: str
    master_id: str | None
    subjects: tuple[tuple[str, str], ...]  # the records the finding is about; its id hashes them
    summary: str
    evidence: tuple[dict, ...]

    @property
    def finding_id(self) -> str:
        return finding_id(self.kind, self.subjects)


def finding_id(kind: str, subjects: Iterable[tuple[str, str]]) -> str:
    """The stable id of a finding: its kind and the sorted (source, source_record_id) it is about."""
    refs = sorted({(str(s), str(r)) for s, r in subjects})
    if not refs:
        raise ValueError("a finding needs at least one record reference")
    text = kind + "\n" + "\n".join(f"{s}\t{r}" for s, r in refs)
    return "F" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:15].upper()


def _ref(source: str, record: str, role: str, **values) -> dict:
    return {"role": role, "source": source, "source_record_id": record,
            **{k: v for k, v in values.items() if v is not None}}


def _refs(items: Iterable[dict] | None, role: str) -> list[dict]:
    return [_ref(i["source"], i["source_record_id"], role, department=i.get("department") or None,
                 **{k: v for k, v in i.items() if k not in ("source", "source_record_id", "department")})
            for i in (items or [])]


def _month(value: dt.date | None) -> str | None:
    return value.strftime("%Y-%m") if value else None


def _masked_date(value: dt.date | None) -> str | None:
    """A date with its day hidden: enough to see a disagreement, not to re-identify."""
    return value.strftime("%Y-%m-**") if value else None


def _codes_table(conn: sa.Connection, rules: AuditRules) -> None:
    """The rules' status codes as a temporary table ``audit_code`` (kind, source, code, side)."""
    staging_table(conn, "audit_code", "kind text, name text, side smallint, source text, code text")
    rows = [("deceased", None, None, s, c.strip()) for s, codes in rules.deceased_codes.items() for c in codes]
    rows += [("active", None, None, s, c.strip()) for s, codes in rules.active_codes.items() for c in codes]
    for pair in rules.exclusive:
        for side, (source, codes) in enumerate((pair.first, pair.second)):
            rows += [("exclusive", pair.name, side, source, c.strip()) for c in codes]
    copy_rows(conn, "audit_code", ("kind", "name", "side", "source", "code"), rows)
    staging_table(conn, "audit_department", "source text PRIMARY KEY, department text")
    copy_rows(conn, "audit_department", ("source", "department"), sorted(rules.departments.items()))
    conn.execute(sa.text("ANALYZE audit_code; ANALYZE audit_department"))


# the release's records with their department (the registry's when the release did not record one), the fields of
# their standardized record (in_std: still in std.resident) and of their master's golden record in the release
# (in_golden), read once for every audit
_RECORD_COLUMNS = (
    "master_id text, source text, source_record_id text, status_raw text, department text,"
    " in_std boolean, sex smallint, sex_status text, birth_date date, birth_date_status text, id_number text,"
    " id_number_status text, id_sex smallint, id_birth_date date, name_key text, name_pinyin text,"
    " in_golden boolean, g_sex smallint, g_birth_date date, g_id_number text")
_RELEASE_RECORDS = (
    "SELECT e.master_id, e.source, e.source_record_id, btrim(e.status_raw) AS status_raw,"
    "       coalesce(nullif(e.department, ''), d.department, '') AS department,"
    "       r.source IS NOT NULL, r.sex, r.sex_status, r.birth_date, r.birth_date_status, r.id_number,"
    "       r.id_number_status, r.id_sex, r.id_birth_date, r.name_key, r.name_pinyin,"
    "       g.master_id IS NOT NULL, g.sex, g.birth_date, g.id_number"
    " FROM publish.enrolment e LEFT JOIN audit_department d USING (source)"
    " LEFT JOIN std.resident r ON r.source = e.source AND r.source_record_id = e.source_record_id"
    " LEFT JOIN publish.master_person g ON g.release_no = e.release_no AND g.master_id = e.master_id"
    " WHERE e.release_no = :n")


def detect_findings(conn: sa.Connection, release_no: int, rules: AuditRules) -> list[Finding]:
    """Every finding of release ``release_no`` (runs in the caller's transaction; writes nothing but temp tables)."""
    rules.check()
    exists = conn.execute(sa.text("SELECT 1 FROM publish.release WHERE release_no = :n"), {"n": release_no}).scalar()
    if not exists:
        raise LookupError(f"there is no release {release_no}")
    # the release's records are joined with their std and golden rows in memory (the default 4 MB spilled them)
    conn.execute(sa.text("SET LOCAL work_mem = '64MB'"))
    _codes_table(conn, rules)
    staging_table(conn, "audit_record", _RECORD_COLUMNS)
    conn.execute(sa.text(f"INSERT INTO audit_record {_RELEASE_RECORDS}"), {"n": release_no})
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS audit_record_master ON audit_record (master_id)"))
    conn.execute(sa.text("ANALYZE audit_record"))
    findings = [*_deceased_active(conn, release_no, rules), *_exclusive_programs(conn, rules),
                *_value_conflicts(conn, SEX_CONFLICT), *_value_conflicts(conn, BIRTH_DATE_CONFLICT),
                *_foreign_id_numbers(conn, release_no)]
    # one finding per id (a record listed twice by a rule gives one finding)
    unique: dict[str, Finding] = {}
    for f in findings:
        unique.setdefault(f.finding_id, f)
    return sorted(unique.values(), key=lambda f: (KINDS.index(f.kind), f.department, f.master_id or "", f.subjects))


def _deceased_active(conn: sa.Connection, release_no: int, rules: AuditRules) -> list[Finding]:
    rows = conn.execute(sa.text(
        "WITH dead AS (SELECT master_id, status_date FROM publish.master_person"
        "              WHERE release_no = :n AND status = 'deceased'),"
        " registration AS ("
        "   SELECT r.master_id, json_agg(json_build_object('source', r.source, 'source_record_id', r.source_record_id,"
        "            'department', r.department, 'status_raw', r.status_raw) ORDER BY r.source, r.source_record_id) AS refs"
        "   FROM audit_record r JOIN dead USING (master_id)"
        "   JOIN audit_code k ON k.kind = 'deceased' AND k.source = r.source AND k.code = r.status_raw"
        "   GROUP BY r.master_id)"
        " SELECT r.master_id, r.source, r.source_record_id, r.department, r.status_raw, dead.status_date, g.refs"
        " FROM audit_record r JOIN dead USING (master_id)"
        " JOIN audit_code k ON k.kind = 'active' AND k.source = r.source AND k.code = r.status_raw"
        " LEFT JOIN registration g USING (master_id)"
        " ORDER BY r.master_id, r.source, r.source_record_id"), {"n": release_no}).mappings().all()
    out = []
    for r in rows:
        registered_by = sorted({g["source"] for g in r["refs"] or []}) or ["?"]
        death = _month(r["status_date"])
        summary = (f"已登记死亡（{death or '日期不详'}，{'、'.join(registered_by)}）"
                   f"仍在 {r['source']} 享受待遇（{r['status_raw']}）"
                   f" · deceased ({death or 'date unknown'}, registered in {', '.join(registered_by)})"
                   f" but still active in {r['source']} (status {r['status_raw']})")
        evidence = [_ref(r["source"], r["source_record_id"], "active_record", department=r["department"],
                         status_raw=r["status_raw"]),
                    {"role": "master_status", "master_id": r["master_id"], "status": "deceased",
                     **({"death_month": death} if death else {})},
                    *_refs(r["refs"], "death_registration")]
        out.append(Finding(DECEASED_ACTIVE, r["department"], r["master_id"], ((r["source"], r["source_record_id"]),),
                           summary, tuple(evidence)))
    return out


def _exclusive_programs(conn: sa.Connection, rules: AuditRules) -> list[Finding]:
    if not rules.exclusive:
        return []
    pairs = {p.name: p for p in rules.exclusive}
    # the masters on both sides first (sides as bits, no sort); their enrolments' evidence for those alone
    rows = conn.execute(sa.text(
        "WITH enrolled AS (SELECT k.name, k.side, r.master_id, r.source, r.source_record_id, r.department,"
        "                         r.status_raw FROM audit_record r"
        "   JOIN audit_code k ON k.kind = 'exclusive' AND k.source = r.source AND k.code = r.status_raw),"
        " both_sides AS (SELECT name, master_id FROM enrolled GROUP BY name, master_id"
        "   HAVING bit_or(CAST(1 AS integer) << side) = 3)"
        " SELECT e.name, e.master_id, json_agg(json_build_object('source', e.source, 'source_record_id',"
        "        e.source_record_id, 'department', e.department, 'status_raw', e.status_raw, 'side', e.side)"
        "        ORDER BY e.source, e.source_record_id) AS refs"
        " FROM enrolled e JOIN both_sides b USING (name, master_id)"
        " GROUP BY e.name, e.master_id ORDER BY e.name, e.master_id")).mappings().all()
    out = []
    for r in rows:
        pair = pairs[r["name"]]
        owner = pair.owner or rules.department_of(pair.first[0])
        codes = " + ".join(sorted({i["status_raw"] for i in r["refs"]}))
        summary = (f"同时参加互斥项目「{pair.title}」：{codes} · in mutually exclusive programmes ({pair.name}): {codes}")
        refs = [{**i, "side": ("first", "second")[i["side"]]} for i in r["refs"]]
        out.append(Finding(EXCLUSIVE_PROGRAMS, owner, r["master_id"],
                           tuple((i["source"], i["source_record_id"]) for i in refs), summary,
                           tuple(_refs(refs, "enrolment"))))
    return out


_CONFLICT_FIELD = {
    # kind: (the record's value, usable statuses of the record's value, differs from the golden value,
    #        golden column, usable statuses)
    SEX_CONFLICT: ("a.sex", "a.sex_status = ANY(:ok) AND a.sex IN (1, 2)", "a.g_sex IN (1, 2) AND a.sex <> a.g_sex",
                   "g_sex", [sex.VALID, sex.CONFLICT_WITH_ID]),
    BIRTH_DATE_CONFLICT: ("a.birth_date", "a.birth_date_status = ANY(:ok) AND a.birth_date IS NOT NULL",
                          "a.g_birth_date IS NOT NULL AND a.birth_date <> a.g_birth_date", "g_birth_date",
                          list(dates.USABLE)),
}


def _value_conflicts(conn: sa.Connection, kind: str) -> list[Finding]:
    value, usable, differs, column, ok = _CONFLICT_FIELD[kind]
    rows = conn.execute(sa.text(
        "WITH v AS ("
        f"  SELECT a.master_id, a.source, a.source_record_id, a.status_raw, a.department, {value} AS value,"
        f"         a.{column} AS golden, (a.g_id_number IS NOT NULL) AS anchored, ({differs}) AS differs"
        f"  FROM audit_record a WHERE a.in_std AND a.in_golden AND {usable}),"
        " bad AS (SELECT * FROM v WHERE differs),"
        " agree AS (SELECT v.master_id, json_agg(json_build_object('source', v.source, 'source_record_id',"
        "             v.source_record_id, 'department', v.department) ORDER BY v.source, v.source_record_id) AS refs"
        "           FROM v WHERE NOT v.differs AND v.master_id IN (SELECT master_id FROM bad) GROUP BY v.master_id)"
        " SELECT bad.*, agree.refs FROM bad LEFT JOIN agree USING (master_id)"
        " ORDER BY bad.master_id, bad.source, bad.source_record_id"), {"ok": ok}).mappings().all()
    out = []
    for r in rows:
        reference = "身份证号 the master's ID number" if r["anchored"] else "其他记录 the master's other records"
        others = sorted({i["department"] or i["source"] for i in r["refs"] or []})
        where = f"{', '.join(others)}" if others else "-"
        if kind == SEX_CONFLICT:
            summary = (f"{r['source']} 记录的性别（{SEX_LABELS[r['value']]}）与主索引（{SEX_LABELS[r['golden']]}，依据"
                       f"{reference}）不一致 · sex in {r['source']} differs from the master's; agreeing: {where}")
            mine, theirs = SEX_LABELS[r["value"]], SEX_LABELS[r["golden"]]
            extra = {}
        else:
            apart = abs((r["value"] - r["golden"]).days)
            summary = (f"{r['source']} 记录的出生日期与主索引（依据{reference}）相差 {apart} 天"
                       f" · birth date in {r['source']} differs from the master's by {apart} days; agreeing: {where}")
            mine, theirs = _masked_date(r["value"]), _masked_date(r["golden"])
            extra = {"days_apart": apart}
        evidence = [_ref(r["source"], r["source_record_id"], "disagreeing_record", department=r["department"],
                         value=mine, **extra),
                    {"role": "master_value", "master_id": r["master_id"], "value": theirs,
                     "decided_by": "id_number" if r["anchored"] else "survivorship"},
                    *_refs(r["refs"], "agreeing_record")]
        out.append(Finding(kind, r["department"], r["master_id"], ((r["source"], r["source_record_id"]),),
                           summary, tuple(evidence)))
    return out


def _foreign_id_numbers(conn: sa.Connection, release_no: int) -> list[Finding]:
    """Records carrying a checksum-valid ID number that is not their master's.

    The number is another person's (``shared_id_number``) when it encodes another birth date than
    the record's, or when another master holds it and the record's name is not that master's. When
    only the sex disagrees and the name agrees with the number's owner (or nobody else holds the
    number), the number is the person's own and the sex code is wrong (``sex_conflict``: the matcher
    does not trust such a number, so the golden record may have no sex to compare with). A number held
    by another master whose name, birth date and sex all agree is a link the index missed, not a
    departmental inconsistency: no finding.
    """
    rows = conn.execute(sa.text(
        "WITH carriers AS ("
        "   SELECT a.master_id, a.source, a.source_record_id, a.department, a.id_number, a.id_sex, a.sex,"
        "          a.name_key, a.name_pinyin, o.master_id AS owner_master_id,"
        "          coalesce(a.birth_date_status = ANY(:date_ok) AND a.birth_date <> a.id_birth_date, false) AS date_differs,"
        "          coalesce(a.sex_status = ANY(:sex_ok) AND a.sex IN (1, 2) AND a.id_sex IN (1, 2)"
        "                   AND a.sex <> a.id_sex, false) AS sex_differs"
        "   FROM audit_record a"
        "   LEFT JOIN publish.master_person o"
        "     ON o.release_no = :n AND o.id_number = a.id_number AND o.master_id <> a.master_id"
        "   WHERE a.in_std AND a.in_golden AND a.id_number_status = ANY(:id_ok)"
        "     AND a.id_number IS DISTINCT FROM a.g_id_number),"
        " flagged AS (SELECT * FROM carriers WHERE owner_master_id IS NOT NULL OR date_differs OR sex_differs),"
        " owner_records AS ("
        "   SELECT f.source AS f_source, f.source_record_id AS f_record, a.source, a.source_record_id, a.department,"
        "          (a.name_key = f.name_key OR a.name_pinyin = f.name_pinyin) AS same_name"
        "   FROM flagged f JOIN audit_record a ON a.master_id = f.owner_master_id"
        "   WHERE a.in_std AND a.id_number = f.id_number)"
        " SELECT f.master_id, f.source, f.source_record_id, f.department, f.id_number, f.id_sex, f.sex,"
        "        f.owner_master_id, f.date_differs, f.sex_differs,"
        "        coalesce(bool_or(o.same_name), false) AS owner_name_agrees,"
        "        json_agg(json_build_object('source', o.source, 'source_record_id', o.source_record_id,"
        "                 'department', o.department) ORDER BY o.source, o.source_record_id)"
        "          FILTER (WHERE o.source IS NOT NULL) AS refs"
        " FROM flagged f LEFT JOIN owner_records o ON o.f_source = f.source AND o.f_record = f.source_record_id"
        " GROUP BY f.master_id, f.source, f.source_record_id, f.department, f.id_number, f.id_sex, f.sex,"
        "          f.owner_master_id, f.date_differs, f.sex_differs"
        " ORDER BY f.master_id, f.source, f.source_record_id"),
        {"n": release_no, "id_ok": list(id_number.USABLE), "date_ok": list(dates.USABLE),
         "sex_ok": [sex.VALID, sex.CONFLICT_WITH_ID]}).mappings().all()
    out = []
    for r in rows:
        owner = r["owner_master_id"]
        shared = r["date_differs"] or (owner is not None and not r["owner_name_agrees"])
        subject = ((r["source"], r["source_record_id"]),)
        if not shared and r["sex_differs"]:
            summary = (f"{r['source']} 记录的性别（{SEX_LABELS[r['sex']]}）与其身份证号（{SEX_LABELS[r['id_sex']]}）不一致"
                       f" · sex in {r['source']} differs from the sex its own ID number encodes")
            evidence = [_ref(r["source"], r["source_record_id"], "disagreeing_record", department=r["department"],
                             value=SEX_LABELS[r["sex"]]),
                        {"role": "id_number_value", "value": SEX_LABELS[r["id_sex"]], "decided_by": "id_number",
                         **({"master_id": owner} if owner else {})},
                        *_refs(r["refs"], "agreeing_record")]
            out.append(Finding(SEX_CONFLICT, r["department"], r["master_id"], subject, summary, tuple(evidence)))
            continue
        if not shared:
            continue  # the same person under two master ids: a link for the index's review queue
        masked = mask_id_number(r["id_number"])
        contradicts = [n for n, hit in (("birth_date", r["date_differs"]), ("sex", r["sex_differs"])) if hit]
        if owner:
            summary = (f"{r['source']} 记录的身份证号属于另一人（主索引 {owner}）"
                       f" · the ID number in {r['source']} is the number of another person (master {owner})")
        else:
            words = "、".join({"birth_date": "出生日期", "sex": "性别"}[c] for c in contradicts)
            summary = (f"{r['source']} 记录的身份证号与本人的{words}矛盾，应为他人号码"
                       f" · the ID number in {r['source']} contradicts the record's own"
                       f" {' and '.join(c.replace('_', ' ') for c in contradicts)}: another person's number")
        evidence = [_ref(r["source"], r["source_record_id"], "carrying_record", department=r["department"],
                         id_number_masked=masked, contradicts=contradicts or None)]
        if owner:
            evidence.append({"role": "number_owner", "master_id": owner, "id_number_masked": masked})
            evidence += _refs(r["refs"], "owner_record")
        out.append(Finding(SHARED_ID_NUMBER, r["department"], r["master_id"], subject, summary, tuple(evidence)))
    return out


def refresh_findings(conn: sa.Connection, release_no: int, findings: Sequence[Finding],
                     departments: Iterable[str] = ()) -> dict:
    """Store release ``release_no``'s findings and its counts (caller's transaction), set-based.

    New findings open (with the due date of their kind's SLA); findings seen again get ``last_release`` /
    ``last_seen_at`` and keep their step (a resolved one reopens with a new due date, a dismissed one stays
    dismissed); findings not closed that ``findings`` no longer holds are resolved, closed by ``release N``.
    Each of these steps is an ``audit.finding_event`` row by ``hub`` (:mod:`warehouse.finding_lifecycle`).
    ``audit.finding_count`` gets one row per kind and department (the ``departments`` given and those with
    findings), zeros included. Only the audits' kinds (:data:`KINDS`): a failed gate expectation is the gate
    run's to open and resolve (:mod:`warehouse.gate_findings`), and is not counted per release. Returns counts
    only; ``open`` counts the findings not closed, of every kind.
    """
    from warehouse.finding_lifecycle import NOT_CLOSED, open_and_reopen, resolve_gone

    foreign = sorted({f.kind for f in findings} - set(KINDS))
    if foreign:
        raise ValueError(f"refresh_findings stores the audits' kinds only, not {', '.join(foreign)}")
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": FINDING_LOCK})
    staging_table(conn, "audit_found", "finding_id text PRIMARY KEY, kind text, department text, master_id text,"
                                       " summary text, evidence jsonb")
    copy_rows(conn, "audit_found", ("finding_id", "kind", "department", "master_id", "summary", "evidence"),
              ((f.finding_id, f.kind, f.department, f.master_id, f.summary,
                json.dumps(list(f.evidence), ensure_ascii=False, sort_keys=True)) for f in findings))
    conn.execute(sa.text("ANALYZE audit_found"))
    before = open_and_reopen(conn, release_no)
    resolved = resolve_gone(conn, release_no, kinds=KINDS)
    conn.execute(sa.text(
        "INSERT INTO audit.finding_count (release_no, kind, department, findings)"
        " SELECT :n, k.kind, d.department, count(a.finding_id)"
        " FROM unnest(CAST(:kinds AS text[])) AS k (kind)"
        " CROSS JOIN (SELECT unnest(CAST(:departments AS text[])) UNION SELECT department FROM audit_found) AS d (department)"
        " LEFT JOIN audit_found a ON a.kind = k.kind AND a.department = d.department"
        " GROUP BY k.kind, d.department"
        " ON CONFLICT (release_no, kind, department) DO UPDATE SET findings = EXCLUDED.findings, counted_at = now()"),
        {"n": release_no, "kinds": list(KINDS), "departments": sorted(set(departments))})
    open_now = conn.execute(sa.text("SELECT count(*) FROM audit.finding WHERE status = ANY(CAST(:nc AS text[]))"),
                            {"nc": list(NOT_CLOSED)}).scalar_one()
    return {"release_no": release_no, "detected": len(findings), **before, "resolved": resolved, "open": open_now}


@contextmanager
def transaction(conn_or_engine: sa.Engine | sa.Connection) -> Iterator[sa.Connection]:
    """A connection in a transaction: a new one for an Engine, the caller's own (and its transaction) as is."""
    if isinstance(conn_or_engine, sa.Engine):
        with conn_or_engine.begin() as conn:
            yield conn
    else:
        yield conn_or_engine


def finding_departments(conn: sa.Connection) -> list[str]:
    """The departments that own a stored finding (open or resolved)."""
    return sorted(conn.execute(sa.text("SELECT DISTINCT department FROM audit.finding")).scalars())


def finding_counts(conn: sa.Connection) -> list[dict]:
    """audit.finding_count, oldest release first: the trend per kind and department."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT release_no, kind, department, findings FROM audit.finding_count"
        " ORDER BY release_no, department, kind")).mappings()]


def list_findings(conn: sa.Connection, *, department: str | None = None,
                  status: str | Sequence[str] | None = "open", kind: str | None = None,
                  opened_days_ago: int | None = None, overdue: bool | None = None,
                  assigned_to: str | None = None, limit: int | None = None) -> list[dict]:
    """Stored findings, by kind and id, each with ``opened_at`` (when it last opened) and ``overdue``.

    Filters (``None``: any): ``department`` (the owner), ``status`` (one or several), ``kind``,
    ``opened_days_ago`` (opened at least that many days ago), ``overdue`` (not closed and past its due date),
    ``assigned_to``; ``limit`` rows at most."""
    from warehouse.finding_lifecycle import NOT_CLOSED, OPENED_AT

    clauses, params = [], {"nc": list(NOT_CLOSED)}
    for column, value in (("department", department), ("kind", kind), ("assigned_to", assigned_to)):
        if value is not None:
            clauses.append(f"f.{column} = :{column}")
            params[column] = value
    if status is not None:
        clauses.append("f.status = ANY(CAST(:statuses AS text[]))")
        params["statuses"] = [status] if isinstance(status, str) else list(status)
    overdue_sql = "(f.status = ANY(CAST(:nc AS text[])) AND f.due_at < now())"
    if overdue is not None:
        clauses.append(overdue_sql if overdue else f"NOT coalesce({overdue_sql}, false)")
    if opened_days_ago is not None:
        clauses.append(f"{OPENED_AT} <= now() - make_interval(days => :age)")
        params["age"] = int(opened_days_ago)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(sa.text(
        f"SELECT f.*, {OPENED_AT} AS opened_at, coalesce({overdue_sql}, false) AS overdue FROM audit.finding f{where}"
        " ORDER BY array_position(CAST(:kinds AS text[]), f.kind), f.finding_id"
        + (" LIMIT :limit" if limit is not None else "")),
        {**params, "kinds": list(INBOX_KINDS), **({"limit": int(limit)} if limit is not None else {})}).mappings().all()
    return [dict(r) for r in rows]
